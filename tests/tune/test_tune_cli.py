"""The commands exist, stay cheap to import, and fail fast on a missing optional extra."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from irgpt.cli import build_parser
from irgpt.config import load_config
from irgpt.errors import CommandError

ROOT = Path(__file__).resolve().parents[2]


def test_tune_and_ablate_are_registered():
    parser = build_parser()
    args = parser.parse_args(["tune", "--data", "d", "--scores", "a", "--scores", "b", "--out", "o",
                              "--space", "tune_spaces/tiers.yaml", "--trial-steps", "3", "--resume"])
    assert args.scores == ["a", "b"] and args.trial_steps == 3 and args.resume
    args = parser.parse_args(["ablate", "--data", "d", "--scores", "a", "--out", "o", "--seeds", "0,1", "--no-stage2"])
    assert args.seeds == "0,1" and args.stage2 is False


def test_registrar_imports_neither_ray_nor_torch():
    code = "import sys, irgpt.tune.cli; print('ray' in sys.modules or 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_job_entry_point_help():
    out = subprocess.run([sys.executable, "jobs/tune.py", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "--space" in out.stdout and "--resume" in out.stdout


def test_ablate_list(capsys):
    from irgpt.cli import main

    assert main(["ablate", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("none", "l1", "l2", "l1_l2", "full", "anti", "descending", "ascending", "random", "asc_strat_random"):
        assert f"\n{name} " in "\n" + out


@pytest.mark.skipif(importlib.util.find_spec("optuna") is not None, reason="optuna is installed")
def test_optuna_search_without_optuna_names_the_extra(handmade, tmp_path):
    from irgpt.tune.driver import run_tune

    cfg = load_config(None, ["tune.search=optuna"])
    with pytest.raises(CommandError) as err:
        run_tune(cfg, handmade["data"], handmade["scores"], tmp_path / "out", space=ROOT / "tune_spaces/tiers.yaml")
    assert "pip install 'irgpt[tune]'" in str(err.value) and "optuna" in str(err.value)
    assert not (tmp_path / "out").exists()  # failed before anything was written or Ray started


def test_resume_without_an_experiment(handmade, tmp_path):
    from irgpt.tune.driver import run_tune

    with pytest.raises(CommandError, match="no experiment to resume"):
        run_tune(load_config(), handmade["data"], handmade["scores"], tmp_path, space=ROOT / "tune_spaces/tiers.yaml",
                 resume=True)


def test_missing_inputs_fail_before_ray(tmp_path):
    from irgpt.tune.driver import run_tune

    with pytest.raises(CommandError):
        run_tune(load_config(), tmp_path / "no-data", [tmp_path / "l1"], tmp_path / "out",
                 space=ROOT / "tune_spaces/tiers.yaml")
