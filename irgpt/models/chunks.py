"""Batch-invariant model compute: the same sample gets the same bits in any batch.

A float32 GEMM on the CPU may take another kernel (and another reduction
order) for a different number of rows, so the same sample can get different
bits in a batch of 3 than in a batch of 64. `fixed_chunks` always runs the
model on exactly `chunk` rows (the last chunk padded by repeating its last
row), which makes every sample's result independent of the batch it fell in,
of the part layout and of the number of actors. The feature extractors
(`irgpt.models.mae`) and the Lesson 2 CLIP scorer use it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

MODEL_CHUNK = 16
"""Rows per model call in `fixed_chunks` (the unit of batch invariance)."""


@torch.no_grad()
def fixed_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int = MODEL_CHUNK) -> torch.Tensor:
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
