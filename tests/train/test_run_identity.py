"""Runs cannot pick up another run's state: Ray Train names, --resume checks (#14)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from irgpt.config import load_config
from irgpt.errors import CommandError
from irgpt.train.skeleton import CLIENT_STATE
from irgpt.train.trainer import ray_run_name, resume_checkpoint, train, training_hash


def _checkpoint(storage: Path, name: str, step: int) -> Path:
    ckpt = storage / name / f"checkpoint_{step:06d}"
    ckpt.mkdir(parents=True)
    (ckpt / f"{CLIENT_STATE}.rank0").write_text(json.dumps({"run": name, "global_step": step}))
    return ckpt


def test_run_names_carry_the_run_directory_and_the_config(tmp_path):
    a, b = load_config(), load_config(overrides=["train.stage1.lr=0.002"])
    name = ray_run_name(a, tmp_path / "runA", 1)
    assert name.startswith("runA-") and "-stage1-" in name
    assert ray_run_name(a, tmp_path / "other" / "runA", 1) != name  # same name, another directory
    assert ray_run_name(b, tmp_path / "runA", 1) != name  # same directory, another config
    assert ray_run_name(a, tmp_path / "runA", 2) != name
    unrelated = load_config(overrides=["eval.max_error_rate=0.5"])  # not a training section
    assert ray_run_name(unrelated, tmp_path / "runA", 1) == name
    other_data = ray_run_name(a, tmp_path / "runA", 1, inputs='["other data manifest"]')
    assert other_data != name and other_data.rsplit("-", 1)[-1] == name.rsplit("-", 1)[-1]  # same config hash


def test_resume_takes_only_this_runs_checkpoint(tmp_path):
    cfg = load_config()
    storage = tmp_path / "shared"
    run = tmp_path / "runA"
    _checkpoint(storage, ray_run_name(cfg, tmp_path / "runB", 1), 9)  # another run, same storage
    assert resume_checkpoint(cfg, storage, run, 1) is None
    mine = _checkpoint(storage, ray_run_name(cfg, run, 1), 3)
    assert resume_checkpoint(cfg, storage, run, 1) == mine


def test_resume_under_another_config_is_refused_naming_both(tmp_path):
    started, now = load_config(), load_config(overrides=["train.stage1.lr=0.002"])
    storage, run = tmp_path / "shared", tmp_path / "runA"
    _checkpoint(storage, ray_run_name(started, run, 1), 3)
    with pytest.raises(CommandError) as err:
        resume_checkpoint(now, storage, run, 1)
    old = ray_run_name(started, run, 1).rsplit("-", 1)[-1]
    new = ray_run_name(now, run, 1).rsplit("-", 1)[-1]
    assert f"checkpointed under config {old}" in str(err.value) and f"this config is {new}" in str(err.value)


def test_train_resume_refuses_a_run_of_another_config_before_any_work(tmp_path):
    from irgpt.data.synth import synthesize

    data = tmp_path / "data"
    cfg = load_config(overrides=["data.synth.num_samples=6"])
    synthesize(cfg.data.synth, data, progress=False)
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"training_hash": "00000000"}))
    with pytest.raises(CommandError, match=rf"trained under config 00000000, this config is {training_hash(cfg)}"):
        train(cfg, "2", data, None, run, resume=True)


def test_without_stdout_lines_holds_back_only_the_named_banner(capsys):
    from irgpt.train.dist import without_stdout_lines

    with without_stdout_lines("built successfully"):
        print("DeepSpeed op built successfully")
        print("step 1: loss 0.5")
    assert capsys.readouterr().out == "step 1: loss 0.5\n"
