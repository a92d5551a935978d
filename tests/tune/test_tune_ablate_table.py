"""Ablation rows, aggregation over seeds and the Markdown / JSON table (fake trial body, no Ray)."""

from __future__ import annotations

import json

import pytest

from irgpt.config import load_config
from irgpt.errors import CommandError
from irgpt.tune.ablate import BY_NAME, ROWS, ablation_rows, row_config, run_ablation

PAPER = {"none": (464.49, 26.85), "l1": (470.23, 17.29), "l2": (466.81, 19.33), "l1_l2": (481.36, 7.08),
         "full": (485.79, 4.39), "anti": (433.24, 26.50), "descending": (433.24, 26.50),
         "ascending": (474.29, 19.24), "random": (479.46, 12.94), "asc_strat_random": (485.79, 4.39)}


def test_rows_reproduce_the_papers_tables():
    assert {r.name: r.paper for r in ROWS} == PAPER
    assert [r.name for r in ROWS if r.table == 3] == ["none", "l1", "l2", "l1_l2", "full", "anti"]
    assert [r.name for r in ROWS if r.table == 4] == ["descending", "ascending", "random", "asc_strat_random"]


def test_rows_differ_only_in_curriculum_switches():
    base = load_config(None, ["curriculum.m=3", "train.stage1.lr=0.002"])
    cfgs = {r.name: row_config(base, r, seed=7) for r in ROWS}
    for name, c in cfgs.items():
        d, b = c.to_dict(), base.to_dict()
        assert c.train.seed == 7 and c.curriculum.seed == 7 and c.curriculum.m == 3
        d["curriculum"] = b["curriculum"] = None
        d["train"]["seed"] = b["train"]["seed"]
        assert d == b, name
    assert cfgs["full"] == cfgs["asc_strat_random"]
    assert not cfgs["none"].curriculum.weights and cfgs["none"].curriculum.schedule == "random"
    assert cfgs["l1"].curriculum.use_l2 is False and cfgs["l2"].curriculum.use_l1 is False
    assert cfgs["anti"].curriculum.anti_l1 and cfgs["anti"].curriculum.anti_l2 and cfgs["anti"].curriculum.weights
    assert cfgs["descending"].curriculum.schedule == "descending"


def test_select_rows():
    assert ablation_rows(None) == ROWS
    assert [r.name for r in ablation_rows(["full", "none"])] == ["full", "none"]
    with pytest.raises(CommandError, match="unknown ablation row"):
        ablation_rows(["fulll"])


def fake_trial(cfg, data_dir, score_dirs, trial_dir, **kw):
    """psum and the stage-1 held-out loss from the row's switches and the seed: deterministic, no training.
    The full method is 0.1 lower in held-out loss than no curriculum on every seed (beyond noise)."""
    c = cfg.curriculum
    psum = 100.0 + 10 * c.use_l1 + 5 * c.use_l2 + 3 * c.weights - 20 * c.anti_l1 + cfg.train.seed
    heldout = 3.0 + 0.5 * cfg.train.seed - 0.1 * c.weights + (0.001 * cfg.train.seed if c.weights else 0.0)
    fake_trial.calls.append((trial_dir.name, kw["eval_split"], kw["benchmark"]))
    stage1 = {"final_val_loss": heldout, "initial_val_loss": 6.0, "unigram_val_loss": 4.0,
              "final_retrieval_r1": 0.25, "initial_retrieval_r1": 0.03, "rows_seen_per_tier": [5, 5]}
    return {"psum": psum, "nsum": 10.0 - cfg.train.seed, "final_val_loss": heldout, "steps": 1, "seconds": 0.1,
            "stages": {"stage1": stage1}}


def test_run_ablation_aggregates_seeds_and_writes_the_tables(tmp_path):
    fake_trial.calls = []
    cfg = load_config()
    res = run_ablation(cfg, tmp_path / "data", [tmp_path / "l1"], tmp_path / "out",
                       rows=["none", "full", "asc_strat_random"], seeds=[0, 2], steps=3, trial_fn=fake_trial,
                       stage2=True)
    # asc_strat_random is the full method's config: run once per seed, reported in both tables.
    assert sorted(fake_trial.calls) == sorted([("none-seed0", "benchmark", True), ("full-seed0", "benchmark", True),
                                               ("none-seed2", "benchmark", True), ("full-seed2", "benchmark", True)])
    rows = {r["name"]: r for r in res["rows"]}
    assert rows["asc_strat_random"]["same_as"] == "full"
    # t(0.975, 1) = 12.7062: mean 119 +- 12.7062 * sqrt(2) / sqrt(2)
    assert rows["full"]["psum"] == {"mean": 119.0, "std": pytest.approx(2 ** 0.5), "min": 118.0, "max": 120.0, "n": 2,
                                    "ci95": pytest.approx([119.0 - 12.7062047, 119.0 + 12.7062047])}
    assert rows["none"]["paper"] == {"psum": 464.49, "nsum": 26.85}
    d = rows["full"]["vs_none"]["heldout_loss"]
    assert d["mean"] == pytest.approx(-0.099) and d["within_noise"] is False
    assert rows["full"]["vs_none"]["psum"]["mean"] == pytest.approx(3.0)  # only the weights differ
    assert "vs_none" not in rows["none"]
    assert res["unigram_loss"]["mean"] == 4.0 and res["initial_heldout_loss"]["mean"] == 6.0
    saved = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert saved["seeds"] == [0, 2] and saved["steps"] == 3 and len(saved["rows"]) == 3
    assert saved["rows"][1]["seeds"]["0"]["rows_seen_per_tier"] == [5, 5]
    md = (tmp_path / "out" / "ablation.md").read_text()
    assert "## Table 3" in md and "## Table 4" in md
    # held-out (2.9, 3.902): mean 3.401, half-width 12.7062 x 0.7085 / sqrt(2); paired (-0.1, -0.098)
    assert "| L1 + L2 + alpha weights (full) | 485.79 | 4.39 | 3.4010 [-2.9648, 9.7668] | -0.0990 [-0.1117, -0.0863] |" in md
    assert "ascending-stratified-random (= full)" in md and "464.49" in md and "unigram baseline 4.0000" in md
    assert "held-out loss lower (better) than no curriculum beyond noise" in md


def test_without_stage2_no_benchmark_is_run(tmp_path):
    fake_trial.calls = []
    res = run_ablation(load_config(), tmp_path / "data", [tmp_path / "l1"], tmp_path / "out", rows=["none", "l1"],
                       seeds=[0], trial_fn=fake_trial, stage2=False)
    assert {c[2] for c in fake_trial.calls} == {False}
    assert "Stage 2 off: no benchmark columns" in res["markdown"] and "one seed: no interval" in res["markdown"]


def test_by_name_is_complete():
    assert set(BY_NAME) == set(PAPER)
