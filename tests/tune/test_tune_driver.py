"""The Tune driver on local Ray (2 CPUs) with fake trial bodies (fake_trials.py): slow."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fake_trials import quick_trial, seeded_trial, torch_trial

from irgpt.config import load_config
from irgpt.errors import CommandError
from irgpt.tune.driver import run_tune

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _space(tmp_path: Path, values=(2, 3, 4, 5)) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(f"# irgpt tune --space {path}\ncurriculum.m: {{type: grid, values: {list(values)}}}\n")
    return path


def _runs(out: Path) -> dict[str, int]:
    return {p.parent.name: len(p.read_text().splitlines()) for p in (out / "trials").glob("*/runs.txt")}


def _results(out: Path) -> list[dict]:
    lines = []
    for f in sorted((out / "ray" / "tune").glob("*/result.json")):
        lines += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return lines


def test_two_worker_trials_on_two_cpus_run_one_at_a_time(ray_local, handmade, tmp_path):
    """train.num_workers=2 on 2 CPUs: max_concurrent_trials 2 is clamped to 1 and both trials finish."""
    cfg = load_config(None, ["train.num_workers=2", "tune.max_concurrent_trials=2", "tune.num_samples=1",
                             "tune.scheduler=none"])
    out = tmp_path / "out"
    summary = run_tune(cfg, handmade["data"], handmade["scores"], out, space=ROOT / "tune_spaces/smoke.yaml",
                       base_model=tmp_path, trial_fn=torch_trial)
    assert summary["concurrency"] == 1
    spans = sorted(tuple(map(float, p.read_text().split())) for p in (out / "trials").glob("*/span.txt"))
    assert len(spans) == 2 and spans[0][1] <= spans[1][0]  # the worker groups ran one after the other
    assert summary["counts"] == {"done": 2, "stopped": 0, "error": 0, "pending": 0}
    df = pd.read_csv(out / "trials.csv")
    assert sorted(df["curriculum.m"]) == [2, 3] and set(df["status"]) == {"done"}
    assert df.set_index("curriculum.m").loc[3, "objective"] == pytest.approx(-0.5)
    # The Train loop's reports reached Tune through the callback, tagged with the stage.
    forwarded = [r for r in _results(out) if "loss" in r]
    assert len(forwarded) == 6 and {r["train_stage"] for r in forwarded} == {1}
    assert summary["best"]["curriculum.m"] == 3
    best = load_config(out / "best.yaml")
    assert best.curriculum.m == 3 and best.data.dir == str(Path(handmade["data"]).resolve())
    assert (out / "trials.parquet").is_file()


def test_stop_after_then_resume_finishes_every_trial(ray_local, handmade, tmp_path):
    cfg = load_config(None, ["tune.num_samples=1", "tune.scheduler=none", "train.num_workers=1"])
    out, space = tmp_path / "out", _space(tmp_path)
    first = run_tune(cfg, handmade["data"], handmade["scores"], out, space=space, base_model=tmp_path,
                     trial_fn=quick_trial, stop_after=2)
    assert first["counts"]["done"] == 2 and len(pd.read_csv(out / "trials.csv").query("status == 'done'")) == 2
    with pytest.raises(CommandError, match="--resume"):
        run_tune(cfg, handmade["data"], handmade["scores"], out, space=space, base_model=tmp_path, trial_fn=quick_trial)
    with pytest.raises(CommandError, match="other inputs"):
        run_tune(load_config(None, ["curriculum.lam=0.3", "tune.num_samples=1", "tune.scheduler=none",
                                    "train.num_workers=1"]), handmade["data"], handmade["scores"], out,
                 space=space, base_model=tmp_path, trial_fn=quick_trial, resume=True)
    second = run_tune(cfg, handmade["data"], handmade["scores"], out, space=space, base_model=tmp_path,
                      trial_fn=quick_trial, resume=True)
    assert second["counts"] == {"done": 4, "stopped": 0, "error": 0, "pending": 0}
    assert sorted(pd.read_csv(out / "trials.csv")["curriculum.m"]) == [2, 3, 4, 5]
    done_first = [r["trial_id"] for r in first["trials"] if r["status"] == "done"]
    assert all(_runs(out)[t] == 1 for t in done_first), (_runs(out), done_first)  # finished trials were not run again


def test_a_failed_trial_is_recorded_and_rerun_on_resume(ray_local, handmade, tmp_path):
    cfg = load_config(None, ["tune.num_samples=1", "tune.scheduler=none", "train.num_workers=1"])
    out, space = tmp_path / "out", _space(tmp_path)
    out.mkdir()
    (out / "FAIL_M3").write_text("fail once\n")
    first = run_tune(cfg, handmade["data"], handmade["scores"], out, space=space, base_model=tmp_path,
                     trial_fn=quick_trial)
    assert first["counts"] == {"done": 3, "stopped": 0, "error": 1, "pending": 0}
    df = pd.read_csv(out / "trials.csv").set_index("curriculum.m")
    assert df.loc[3, "status"] == "error" and "injected failure" in df.loc[3, "error"]
    second = run_tune(cfg, handmade["data"], handmade["scores"], out, space=space, base_model=tmp_path,
                      trial_fn=quick_trial, resume=True)
    assert second["counts"]["done"] == 4 and second["best"]["curriculum.m"] == 3
    df = pd.read_csv(out / "trials.csv")
    assert sorted(df["curriculum.m"]) == [2, 3, 4, 5] and set(df["status"]) == {"done"}
    # Tune restarts an errored trial under a new trial id; the other three were not run again.
    assert sorted(_runs(out).values()) == [1, 1, 1, 1, 1]


def test_asha_stops_trials_after_stage_one(ray_local, handmade, tmp_path):
    cfg = load_config(None, ["tune.num_samples=1", "tune.scheduler=asha", "tune.stage2=true", "train.num_workers=1",
                             "tune.objective=val_loss"])
    out = tmp_path / "out"
    # val_loss: lower is better; final_val_loss = |m - 3| + lam, so m = 3 is best, then 2/4, then 5.
    summary = run_tune(cfg, handmade["data"], handmade["scores"], out, space=_space(tmp_path, (3, 5, 2, 4)),
                       base_model=tmp_path, trial_fn=quick_trial)
    df = pd.read_csv(out / "trials.csv").set_index("curriculum.m")
    assert df.loc[3, "status"] == "done" and df.loc[3, "evals"] == 2
    assert df.loc[5, "status"] == "stopped" and df.loc[5, "evals"] == 1
    assert summary["best"]["curriculum.m"] == 3


def test_seeds_repeat_each_trial_and_rank_by_the_mean(ray_local, handmade, tmp_path):
    """--seeds 0,1,2: every trial runs once per seed; trials.csv has the mean objective and its
    95% t-interval (objective + 0.1 x seed: mean +0.1, std 0.1, half-width 4.3027 x 0.1 / sqrt(3))."""
    cfg = load_config(None, ["tune.num_samples=1", "tune.scheduler=none", "curriculum.lam=0"])
    out = tmp_path / "out"
    summary = run_tune(cfg, handmade["data"], handmade["scores"], out, space=_space(tmp_path, (2, 3)),
                       base_model=tmp_path, trial_fn=seeded_trial, seeds=[0, 1, 2])
    assert summary["counts"]["done"] == 2
    df = pd.read_csv(out / "trials.csv").set_index("curriculum.m")
    assert df.loc[3, "objective"] == pytest.approx(0.1) and df.loc[2, "objective"] == pytest.approx(-0.9)
    half = 4.302653 * 0.1 / 3 ** 0.5
    assert df.loc[3, "objective_ci_low"] == pytest.approx(0.1 - half, abs=1e-5)
    assert df.loc[3, "objective_ci_high"] == pytest.approx(0.1 + half, abs=1e-5)
    assert (df["seeds"] == 3).all() and summary["best"]["curriculum.m"] == 3
    for trial in (out / "trials").iterdir():
        assert sorted(p.name for p in trial.iterdir() if p.is_dir()) == ["seed0", "seed1", "seed2"]
        metrics = json.loads((trial / "metrics.json").read_text())
        assert sorted(metrics["per_seed"]) == ["0", "1", "2"]
    with pytest.raises(CommandError, match="searches a seed itself"):
        seed_space = tmp_path / "seed.yaml"
        seed_space.write_text("train.seed: {type: grid, values: [0, 1]}\n")
        run_tune(cfg, handmade["data"], handmade["scores"], tmp_path / "o2", space=seed_space, base_model=tmp_path,
                 trial_fn=seeded_trial, seeds=[0, 1])
