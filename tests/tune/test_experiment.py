"""`make experiment`'s code path on a toy size (slow): the smoke config, 2 rows x 2 seeds,
stage 2 + benchmark for one row, the Markdown report with both parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from irgpt.config import load_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_toy_experiment_writes_the_tables_and_the_stage2_check(ray_local, tmp_path):
    from irgpt.tune.experiment import run_experiment

    cfg = load_config(ROOT / "configs/smoke.yaml", [
        f"run.root={tmp_path / 'runs'}", "experiment.rows=[none,l1]", "experiment.seeds=[0,1]",
        "experiment.stage2_rows=[none]", "experiment.eval_limit=16", "train.tiny_lm.steps=20",
        "train.stage1.max_steps=null", "train.stage2.max_steps=null", "train.val_retrieval=8", "train.val_every=2"])
    out = tmp_path / "experiments.md"
    result = run_experiment(cfg, out)
    md = out.read_text()
    assert md.startswith("# Does the curriculum help?") and "## Table 3" in md and "## Stage 2 and the benchmark" in md
    assert "| no curriculum |" in md and "| L1 only |" in md and "| none seed 0 |" in md
    assert "| prior (no image) |" in md and "| chance (uniform) |" in md
    rows = {r["name"]: r for r in result["ablation"]["rows"]}
    assert rows["l1"]["heldout_loss"]["n"] == 2 and rows["l1"]["heldout_loss"]["ci95"] is not None
    assert rows["l1"]["vs_none"]["heldout_loss"]["n"] == 2
    unigram = result["ablation"]["unigram_loss"]["mean"]
    assert unigram > 0 and rows["none"]["heldout_loss"]["mean"] < result["ablation"]["initial_heldout_loss"]["mean"]
    (check,) = result["stage2"]
    assert check["row"] == "none" and check["n"] == 16 and check["final_val_loss"] < check["initial_val_loss"]
    assert result["baseline"]["chance"]["scene"] == pytest.approx(25.0)
    saved = json.loads((tmp_path / "runs" / "smoke" / "experiment" / "experiment.json").read_text())
    assert saved["seconds"]["total"] > 0 and saved["stage2"][0]["tasks"]
    # Re-running reuses every finished part: no training, no scoring.
    again = run_experiment(cfg, out)
    assert again["seconds"]["stage1_rows"] < 30 and again["stage2"][0]["seconds"] == check["seconds"]
