"""Normalised ranks with a stable tie-break, shared by both lessons and the curriculum.

`normalized_rank(values, ids)` maps scores to [0, 1] ascending: 0 is the
smallest value (= the easiest sample for Lesson 1's d_i and Lesson 2's loss),
1 the largest. Ties (equal values) are broken by
`irgpt.data.schema.stable_hash(sample_id)` and then by the id itself, so the
ranking is a total order that depends only on the (value, id) pairs, never on
row order, partitioning or the Python process (docs/method.md "Curriculum
schedule": "ties broken by a stable hash of the sample id").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from irgpt.data.schema import stable_hash


def rank_order(values: np.ndarray | Sequence[float], sample_ids: Sequence[str]) -> np.ndarray:
    """Indices that sort the rows ascending by (value, stable_hash(id), id)."""
    v = np.asarray(values, dtype=np.float64)
    ids = list(sample_ids)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {v.shape}")
    if len(ids) != v.shape[0]:
        raise ValueError(f"{v.shape[0]} values but {len(ids)} sample ids")
    if not np.isfinite(v).all():
        bad = [ids[i] for i in np.flatnonzero(~np.isfinite(v))[:5]]
        raise ValueError(f"non-finite values cannot be ranked (e.g. sample_id {bad})")
    if len(set(ids)) != len(ids):
        raise ValueError("sample_ids must be unique")
    hashes = np.array([stable_hash(str(s)) for s in ids], dtype=np.int64)
    id_arr = np.array([str(s) for s in ids], dtype=object)
    # Last key is primary: value, then hash, then the id string (hash collision).
    id_order = np.argsort(id_arr, kind="stable") if len(ids) else np.zeros(0, dtype=np.int64)
    id_pos = np.empty(len(ids), dtype=np.int64)
    id_pos[id_order] = np.arange(len(ids))
    return np.lexsort((id_pos, hashes, v))


def normalized_rank(values: np.ndarray | Sequence[float], sample_ids: Sequence[str]) -> np.ndarray:
    """Ascending normalised rank in [0, 1] (float64): position / (n - 1).

    0.0 = smallest value, 1.0 = largest; every sample gets a distinct rank
    (ordinal ranking with the stable tie-break above). n == 1 gives [0.0];
    n == 0 gives an empty array. Non-finite values or duplicate ids raise
    ValueError (the pipeline rejects such rows before ranking).
    """
    order = rank_order(values, sample_ids)
    n = order.shape[0]
    out = np.zeros(n, dtype=np.float64)
    if n > 1:
        out[order] = np.arange(n, dtype=np.float64) / (n - 1)
    return out
