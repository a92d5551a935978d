"""trials.csv / trials.parquet / best.yaml from a (fake) Tune ResultGrid."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from irgpt.config import load_config
from irgpt.tune.results import best_config, best_row, trial_rows, write_best_yaml, write_table
from irgpt.tune.space import load_space


def _result(tid: str, config: dict, evals: list[dict], error=None):
    train = [{"loss": 3.0, "global_step": 1, "train_stage": 1}]  # a forwarded Train report: no objective
    df = pd.DataFrame(train + evals) if evals else pd.DataFrame(train)
    return SimpleNamespace(metrics={"trial_id": tid}, metrics_dataframe=df, config=config, error=error,
                           path=f"/x/irgpt_trial_{tid}_0_a=1")


def _space(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("# irgpt tune --space s.yaml\ncurriculum.m: {type: randint, low: 2, high: 8}\n"
                    "scoring.lesson2.weights.clip: {type: choice, values: [null, [0.2, 1.8]]}\n")
    return load_space(path)


def _ev(objective, evals=1, psum=10.0, nsum=2.0):
    return {"objective": objective, "psum": psum, "nsum": nsum, "final_val_loss": 1.5, "seconds": 9.0, "evals": evals}


def test_rows_status_and_best(tmp_path):
    space = _space(tmp_path)
    grid = [
        _result("aaaaa_00000", {"curriculum.m": 3, "scoring.lesson2.weights.clip": "null"}, [_ev(8.0, 1), _ev(9.0, 2)]),
        _result("aaaaa_00001", {"curriculum.m": 5, "scoring.lesson2.weights.clip": "[0.2, 1.8]"}, [_ev(20.0, 1)]),
        _result("aaaaa_00002", {"curriculum.m": 2, "scoring.lesson2.weights.clip": "null"}, [], error=RuntimeError("\x1b[36mray::trial\x1b[39m (pid=1)\n  File x\nRuntimeError: boom\n")),
        _result("aaaaa_00003", {"curriculum.m": 7, "scoring.lesson2.weights.clip": "null"}, [_ev(4.0, 2)]),
    ]
    rows = trial_rows(grid, space, planned_evals=2)
    assert [r["status"] for r in rows] == ["done", "stopped", "error", "done"]
    assert rows[0]["objective"] == 9.0 and rows[0]["evals"] == 2
    assert rows[2]["error"] == "RuntimeError: boom" and rows[2]["objective"] is None
    # Stopped trials (only a stage-1 number) never win over finished ones.
    assert best_row(rows, "max")["trial_id"] == "aaaaa_00000"
    assert best_row(rows, "min")["trial_id"] == "aaaaa_00003"
    tie = [dict(rows[0], trial_id="b0", final_val_loss=2.0), dict(rows[0], trial_id="b1", final_val_loss=1.0)]
    assert best_row(tie, "max")["trial_id"] == "b1" and best_row(tie, "min")["trial_id"] == "b1"

    files = write_table(tmp_path, rows, space)
    csv = pd.read_csv(files[0])
    assert list(csv.columns) == ["trial_id", "curriculum.m", "scoring.lesson2.weights.clip", "objective",
                                 "objective_ci_low", "objective_ci_high", "seeds", "psum", "nsum", "nsum_median",
                                 "final_val_loss", "seconds", "evals", "status", "error"]
    assert pd.read_parquet(files[1]).shape == csv.shape


def test_best_yaml_is_a_loadable_config_with_its_command(tmp_path):
    space = _space(tmp_path)
    base = load_config(None, ["train.stage1.lr=0.002"])
    row = {"trial_id": "aaaaa_00001", "curriculum.m": 5, "scoring.lesson2.weights.clip": "[0.2, 1.8]",
           "objective": 18.0, "psum": 20.0, "nsum": 2.0, "final_val_loss": 1.5, "seconds": 9.0, "evals": 1,
           "status": "done", "error": None}
    cfg = best_config(base, row, space, Path("/data/d"))
    out = tmp_path / "best.yaml"
    write_best_yaml(out, cfg, row, tmp_path / "trials", "benchmark", "max", 4)
    text = out.read_text()
    assert text.startswith(f"# irgpt train --config {out} ")
    assert f"--tiers {tmp_path / 'trials' / 'aaaaa_00001' / 'tiers'}" in text.splitlines()[0]
    loaded = load_config(out)
    assert loaded.curriculum.m == 5 and loaded.scoring.lesson2.weights.clip == [0.2, 1.8]
    assert loaded.train.stage1.lr == 0.002 and loaded.data.dir == "/data/d"
    assert loaded == cfg
