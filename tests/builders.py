"""Small hand-made inputs for tiering tests and benchmarks (no scorer needed).

`write_samples` writes a samples dataset (SAMPLE_SCHEMA rows: infrared
caption rows to be tiered, plus visible and instruction rows that are not
scored); `write_l1_scores` / `write_l2_scores` write score tables with the
tracker's columns. Ranks are normalised to [0, 1] (rank / (n - 1)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from irgpt.data.io import base_manifest, shard_name, write_manifest, write_table
from irgpt.data.schema import SAMPLE_SCHEMA
from irgpt.scoring.weights import alpha as eq4_alpha
from irgpt.scoring.weights import eq5_weights

IR_BANDS = ("nir", "swir", "mwir", "lwir")


def sample_ids(n: int, prefix: str = "ir") -> list[str]:
    return [f"{prefix}-{i:07d}" for i in range(n)]


def write_samples(
    directory: str | Path,
    n_ir: int,
    *,
    n_visible: int = 0,
    n_instruction: int = 0,
    n_val: int = 0,
    image_bytes: int = 16,
    shard_rows: int = 100_000,
    seed: int = 0,
) -> list[str]:
    """Write a samples dataset; returns the ids of the infrared caption train rows."""
    rng = np.random.default_rng(seed)
    rows = []

    def add(sid, band, task, split):
        img = rng.integers(0, 256, image_bytes, dtype=np.uint8).tobytes() if image_bytes else None
        rows.append((sid, img, band, task, split))

    ir = sample_ids(n_ir)
    for i, sid in enumerate(ir):
        add(sid, IR_BANDS[i % len(IR_BANDS)], "caption", "train")
    for sid in sample_ids(n_val, "val"):
        add(sid, "lwir", "caption", "val")
    for sid in sample_ids(n_visible, "vis"):
        add(sid, "vis", "caption", "train")
    for sid in sample_ids(n_instruction, "ins"):
        add(sid, "lwir", "scene", "train")
    directory = Path(directory)
    for shard, start in enumerate(range(0, max(len(rows), 1), shard_rows)):
        chunk = rows[start : start + shard_rows]
        table = pa.table(
            {
                "sample_id": [r[0] for r in chunk],
                "image": pa.array([r[1] for r in chunk], pa.binary()),
                "image_path": pa.nulls(len(chunk), pa.string()),
                "band": [r[2] for r in chunk],
                "source": ["handmade"] * len(chunk),
                "task": [r[3] for r in chunk],
                "split": [r[4] for r in chunk],
                "conversations": [
                    [{"from": "human", "value": "<image>\nDescribe the scene."}, {"from": "gpt", "value": f"caption of {r[0]}"}]
                    for r in chunk
                ],
                "width": pa.array([64] * len(chunk), pa.int32()),
                "height": pa.array([64] * len(chunk), pa.int32()),
                "paired_vis_id": pa.nulls(len(chunk), pa.string()),
                "rule": pa.nulls(len(chunk), pa.string()),
            },
            schema=SAMPLE_SCHEMA,
        )
        write_table(directory / shard_name(shard), table)
    write_manifest(directory, base_manifest("dataset", num_rows=len(rows), source="handmade", config_hash="handmade",
                                            seed=seed))
    return ir


def ordinal_rank(values: np.ndarray, ids: list[str]) -> np.ndarray:
    """rank / (n - 1) of values ascending (ties by id); 0 for a single row. Unlike the
    library's `normalized_rank` it accepts repeated ids, so a test can write a broken table."""
    order = np.lexsort((np.asarray(ids), values))
    rank = np.empty(len(values), dtype=np.float64)
    rank[order] = np.arange(len(values)) / max(1, len(values) - 1)
    return rank


def write_l1_scores(directory: str | Path, ids: list[str], *, seed: int = 1, shard_rows: int = 100_000) -> pa.Table:
    rng = np.random.default_rng(seed)
    d = rng.normal(size=len(ids))
    table = pa.table(
        {
            "sample_id": pa.array(ids, pa.string()),
            "band": [IR_BANDS[i % len(IR_BANDS)] for i in range(len(ids))],
            "d_ir_vis": d,
            "rank_l1": ordinal_rank(d, ids),
        }
    )
    _write_scores(directory, table, "scores_l1", shard_rows, {"scorer": "handmade-l1", "estimator": "none"}, seed)
    return table


def write_l2_scores(directory: str | Path, ids: list[str], *, seed: int = 2, shard_rows: int = 100_000) -> pa.Table:
    rng = np.random.default_rng(seed)
    before = rng.uniform(0.5, 3.0, len(ids))
    after = before * rng.uniform(0.4, 1.4, len(ids))
    a = eq4_alpha(before, after)
    table = pa.table(
        {
            "sample_id": pa.array(ids, pa.string()),
            "loss_before": before,
            "loss_after": after,
            "alpha": a,
            "weight": eq5_weights(a),
            "rank_l2": ordinal_rank(after, ids),
        }
    )
    _write_scores(directory, table, "scores_l2", shard_rows, {"scorer": "handmade-l2", "rank_by": "loss_after"}, seed)
    return table


def _write_scores(directory, table: pa.Table, kind: str, shard_rows: int, provenance: dict, seed: int) -> None:
    directory = Path(directory)
    for shard, start in enumerate(range(0, max(table.num_rows, 1), shard_rows)):
        write_table(directory / shard_name(shard), table.slice(start, shard_rows))
    write_manifest(directory, base_manifest("scores", lesson=kind[-2:], num_rows=table.num_rows, rejected=0,
                                            columns=table.column_names, config_hash=f"{kind}-handmade",
                                            provenance=provenance, seed=seed))


def synthetic_tiers(root: str | Path, num_samples: int, seed: int, curriculum=None) -> dict:
    """A synthetic dataset (`root/S`), hand-made Lesson 1/2 scores of its infrared caption rows
    (`root/L1`, `root/L2`) and their tiers (`root/T`; `curriculum` or the default config's):
    training inputs without running a scorer. Returns {"root", "samples", "tiers"}."""
    import pyarrow.compute as pc

    from irgpt.config import load_config
    from irgpt.curriculum.tiers import build_tiers
    from irgpt.data.io import read_table
    from irgpt.data.synth import SynthConfig, synthesize

    root = Path(root)
    synthesize(SynthConfig(num_samples=num_samples, seed=seed, num_workers=1), root / "S", progress=False)
    t = read_table(root / "S", ["sample_id", "band", "task"])
    keep = pc.and_(pc.is_in(t["band"], value_set=pa.array(IR_BANDS)), pc.equal(t["task"], "caption"))
    ids = sorted(t.filter(keep)["sample_id"].to_pylist())
    write_l1_scores(root / "L1", ids)
    write_l2_scores(root / "L2", ids)
    build_tiers(root / "S", [root / "L1", root / "L2"], root / "T", curriculum or load_config(None, []).curriculum,
                overwrite=True)
    return {"root": root, "samples": root / "S", "tiers": root / "T"}
