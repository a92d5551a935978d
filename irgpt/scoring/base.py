"""The scorer contract shared by Lesson 1 and Lesson 2.

A scorer is a stateful callable class: Ray Data builds one instance per actor
(`__init__` loads the model once) and the pipeline (`irgpt.scoring.pipeline`)
calls `score(table, part)` on one input part at a time. The pipeline owns reading,
writing, resumption, rejects and provenance; the scorer owns the maths.

Determinism: scorers run their models through `irgpt.models.chunks.fixed_chunks`
(batch-invariant compute), so a sample's score does not depend on the batch,
the part layout or the number of actors.
"""

from __future__ import annotations

import pyarrow as pa


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


