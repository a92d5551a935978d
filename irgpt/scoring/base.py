"""The scorer contract shared by Lesson 1 and Lesson 2, and batch-invariant compute.

A scorer is a stateful callable class: Ray Data builds one instance per actor
(`__init__` loads the model once) and the pipeline (`irgpt.scoring.pipeline`)
calls `score(table, part)` on one input part at a time. The pipeline owns reading,
writing, resumption, rejects and provenance; the scorer owns the maths.

Determinism: a float32 GEMM on the CPU may take another kernel (and another
reduction order) for a different number of rows, so the same sample can get
different bits in a batch of 3 than in a batch of 64. `fixed_chunks` always
runs the model on exactly `chunk` rows (the last chunk padded by repeating its
last row), which makes every sample's result independent of the batch it fell
in, of the part layout and of the number of actors.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import torch

DEFAULT_CHUNK = 16


class Scorer:
    """Base class: subclasses set `input_columns` and implement `score`."""

    input_columns: tuple[str, ...] = ("sample_id",)
    """Columns the pipeline reads from the input for this scorer."""

    name: str = "scorer"
    """Name written to the manifest's provenance and the `scorer_version` column."""

    def provenance(self) -> dict:
        """Model name, weights hash, estimator... written into the manifest."""
        return {"scorer": self.name}

    def score(self, table: pa.Table, part: dict) -> tuple[pa.Table, list[dict]]:
        """Score one part. Returns (rows with `sample_id` first, rejects).

        `part` is the part's plan entry (`part` index, `file`, `start`, `stop`),
        so a scorer can find what an earlier pass committed for the same part.

        Every input row must come back either as an output row or as a reject
        `{"sample_id": ..., "reason": ...}`; the pipeline checks this.
        """
        raise NotImplementedError


@torch.no_grad()
def fixed_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Apply `fn` to `x` in chunks of exactly `chunk` rows (see module doc)."""
    if x.shape[0] == 0:
        raise ValueError("fixed_chunks: empty input")
    outputs = []
    for start in range(0, x.shape[0], chunk):
        piece = x[start : start + chunk]
        n = piece.shape[0]
        if n < chunk:
            pad = piece[-1:].expand(chunk - n, *piece.shape[1:])
            piece = torch.cat([piece, pad], dim=0)
        outputs.append(fn(piece)[:n])
    return torch.cat(outputs, dim=0)
