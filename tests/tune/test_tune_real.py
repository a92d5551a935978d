"""The real trial body (tier + Ray Train + DeepSpeed + benchmark) under Tune and in the ablation: slow.

Tiny data (40 synthetic scenes, 112 infrared caption train rows, score tables
from the ground truth: tune_data.py), one train worker, 3 optimizer steps per
trial, 4 evaluation rows of the val split, 8 new tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from irgpt.config import load_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
TINY = ["train.num_workers=1", "train.stage1.micro_batch_size=4", "train.stage1.global_batch_size=8",
        "train.stage2.micro_batch_size=4", "train.stage2.global_batch_size=8", "eval.batch_size=4",
        "eval.max_new_tokens=8", "train.checkpoint_every=1000"]


def test_a_small_tune_experiment_finishes(ray_local, tiny_run, tmp_path):
    """4 trials over M and lambda (tune_spaces/tiers.yaml) with the real trial body."""
    from irgpt.tune.driver import run_tune

    cfg = load_config(None, TINY + ["tune.num_samples=4"])
    out = tmp_path / "tune"
    summary = run_tune(cfg, tiny_run["data"], tiny_run["scores"], out, space=ROOT / "tune_spaces/tiers.yaml",
                       trial_steps=3, eval_limit=4)
    df = pd.read_csv(out / "trials.csv")
    assert len(df) == 4 and set(df["status"]) == {"done"}, df.to_string()
    assert np.isfinite(df["objective"]).all() and np.isfinite(df["final_val_loss"]).all()
    assert np.allclose(df["objective"], df["psum"] - df["nsum"])
    for row in df.to_dict("records"):
        trial = out / "trials" / row["trial_id"]
        tiers = json.loads((trial / "tiers" / "manifest.json").read_text())
        # Re-tiered from the stored scores with the trial's own M and lambda.
        assert tiers["num_tiers"] == row["curriculum.m"] and tiers["curriculum"]["lam"] == pytest.approx(row["curriculum.lam"])
        metrics = json.loads((trial / "metrics.json").read_text())
        assert metrics["steps"] == 3 and metrics["eval_rows"] == 4 and metrics["eval_split"] == "val"
    # The loop's reports (with checkpoints) reached Tune through the callback.
    results = [json.loads(line) for f in (out / "ray" / "tune").glob("*/result.json") for line in f.read_text().splitlines()]
    assert any(r.get("train_stage") == 1 and "global_step" in r for r in results)
    best = load_config(out / "best.yaml")
    assert best.curriculum.m == summary["best"]["curriculum.m"] and best.train.stage1.max_steps is None
    assert (out / "best.yaml").read_text().startswith(f"# irgpt train --config {out / 'best.yaml'}")


def test_a_tiny_ablation_runs(ray_local, tiny_run, tmp_path):
    """2 rows (no curriculum, full method), 1 seed, 3 steps: the table is written with the paper's numbers."""
    from irgpt.tune.ablate import run_ablation

    out = tmp_path / "ablation"
    result = run_ablation(load_config(None, TINY), tiny_run["data"], tiny_run["scores"], out, rows=["none", "full"],
                          seeds=[0], steps=3, split="val", eval_limit=4)
    rows = {r["name"]: r for r in result["rows"]}
    for name in ("none", "full"):
        assert rows[name]["psum"]["n"] == 1 and rows[name]["nsum"]["mean"] is not None
        assert rows[name]["seeds"]["0"]["steps"] == 3
    none_tiers = json.loads((out / "runs" / "none-seed0" / "tiers" / "manifest.json").read_text())
    full_tiers = json.loads((out / "runs" / "full-seed0" / "tiers" / "manifest.json").read_text())
    assert none_tiers["curriculum"]["schedule"] == "random" and none_tiers["weights"]["source"].startswith("constant")
    assert full_tiers["weights"]["source"].startswith("recomputed from alpha")
    md = (out / "ablation.md").read_text()
    assert "| no curriculum |" in md and "464.49" in md and "485.79" in md
    assert json.loads((out / "ablation.json").read_text())["rows"][0]["name"] == "none"
    # A second call reuses the finished runs (resume of an interrupted ablation).
    again = run_ablation(load_config(None, TINY), tiny_run["data"], tiny_run["scores"], out, rows=["none", "full"],
                         seeds=[0], steps=3, split="val", eval_limit=4)
    assert again["seconds"] < 30 and again["rows"][0]["psum"] == rows["none"]["psum"]
