"""A tiny real run directory for the Tune / ablation tests (no scorer needed).

40 synthetic scenes (`irgpt.data.synth`, 20% misaligned captions) and score
tables for the infrared caption rows of the train split, made from the data's
ground truth so the curriculum has something to find: Lesson 1's d grows with
the band's distance from visible (`gt_band_rank`), Lesson 2's loss falls
during "warm-up" for aligned captions and rises for misaligned ones (alpha > 0,
small Eq. 5 weight).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from irgpt.config import SynthConfig
from irgpt.data.io import base_manifest, read_table, shard_name, write_manifest, write_table
from irgpt.data.synth import synthesize
from irgpt.scoring.ranks import normalized_rank
from irgpt.scoring.weights import alpha as eq4_alpha
from irgpt.scoring.weights import eq5_weights

IR = ["nir", "swir", "mwir", "lwir"]


def _write(directory: Path, table: pa.Table, kind: str) -> None:
    write_table(directory / shard_name(0), table)
    write_manifest(directory, base_manifest("scores", lesson=kind[-2:], num_rows=table.num_rows, rejected=0,
                                            columns=table.column_names, config_hash=f"{kind}-test",
                                            provenance={"scorer": f"test-{kind}"}, seed=0))


def make_tiny_run(root: Path, num_samples: int = 40, seed: int = 0) -> dict:
    root = Path(root)
    synthesize(SynthConfig(num_samples=num_samples, seed=seed, num_workers=1, shard_scenes=num_samples),
               root / "data", progress=False)
    t = read_table(root / "data", ["sample_id", "band", "task", "split", "gt_band_rank", "gt_misaligned"])
    keep = pc.and_(pc.and_(pc.equal(t["task"], "caption"), pc.equal(t["split"], "train")), pc.is_in(t["band"], pa.array(IR)))
    t = t.filter(keep)
    ids = t["sample_id"].to_pylist()
    rng = np.random.default_rng(seed)
    d = np.asarray(t["gt_band_rank"].to_pylist(), dtype=np.float64) + rng.normal(0, 0.3, len(ids))
    _write(root / "scores_l1", pa.table({"sample_id": ids, "band": t["band"], "d_ir_vis": d,
                                          "rank_l1": normalized_rank(d, ids)}), "scores_l1")
    mis = np.asarray(t["gt_misaligned"].to_pylist(), dtype=bool)
    before = rng.uniform(2.0, 3.0, len(ids))
    after = before * np.where(mis, 1.3, 0.7) * rng.uniform(0.9, 1.1, len(ids))
    a = eq4_alpha(before, after)
    _write(root / "scores_l2", pa.table({"sample_id": ids, "loss_before": before, "loss_after": after, "alpha": a,
                                          "weight": eq5_weights(a), "rank_l2": normalized_rank(after, ids)}), "scores_l2")
    return {"root": root, "data": root / "data", "scores": [root / "scores_l1", root / "scores_l2"], "ir_ids": ids}
