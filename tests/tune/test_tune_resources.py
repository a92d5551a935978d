"""How many trials run at once: clamped to what the cluster holds (no deadlock on 2 CPUs)."""

from __future__ import annotations

import pytest

from irgpt.config import load_config
from irgpt.errors import CommandError
from irgpt.tune.resources import TRIAL_RESOURCES, fitting_trials, plan_concurrency, trial_demand


def cfg(*overrides):
    return load_config(None, list(overrides))


def test_a_trial_holds_no_cpu():
    # 0.01 CPU held by the trial leaves 1.99 of 2: a 2-worker group could never start.
    assert TRIAL_RESOURCES["cpu"] == 0 and TRIAL_RESOURCES["memory"] > 0


def test_demand_is_the_larger_of_training_and_evaluation():
    assert trial_demand(cfg("train.num_workers=2", "eval.concurrency=1")) == {"CPU": 2.0, "GPU": 0.0}
    assert trial_demand(cfg("train.num_workers=1", "eval.concurrency=3")) == {"CPU": 3.0, "GPU": 0.0}
    gpu = cfg("train.num_workers=4", "train.use_gpu=true", "train.gpus_per_worker=1", "eval.num_gpus=1")
    assert trial_demand(gpu) == {"CPU": 4.0, "GPU": 4.0}


def test_two_cpus_and_two_workers_run_one_trial_at_a_time(capsys):
    c = cfg("train.num_workers=2", "tune.max_concurrent_trials=4")
    assert plan_concurrency(c, {"CPU": 2.0}) == 1
    assert "max_concurrent_trials 4 -> 1" in capsys.readouterr().err


@pytest.mark.parametrize("cluster, workers, wanted, expect", [
    ({"CPU": 2.0}, 1, 4, 2),
    ({"CPU": 16.0}, 2, 4, 4),
    ({"CPU": 16.0}, 2, 16, 8),
    ({"CPU": 64.0, "GPU": 8.0}, 4, 8, 2),
])
def test_clamp(cluster, workers, wanted, expect):
    overrides = [f"train.num_workers={workers}", f"tune.max_concurrent_trials={wanted}"]
    if "GPU" in cluster:
        overrides += ["train.use_gpu=true", "train.gpus_per_worker=1"]
    assert plan_concurrency(cfg(*overrides), cluster) == expect


def test_a_cluster_too_small_for_one_trial_waits_rather_than_failing(capsys):
    assert fitting_trials({"CPU": 4.0, "GPU": 0.0}, {"CPU": 2.0}) == 0
    assert plan_concurrency(cfg("train.num_workers=4"), {"CPU": 2.0}) == 1
    assert "autoscaler" in capsys.readouterr().err


def test_bad_max_concurrent_trials():
    with pytest.raises(CommandError, match="max_concurrent_trials"):
        plan_concurrency(cfg("tune.max_concurrent_trials=0"), {"CPU": 2.0})
