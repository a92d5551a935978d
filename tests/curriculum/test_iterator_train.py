"""TierIterator inside a real Ray Train run (2 CPU workers), with a mid-tier resume (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from irgpt.config.loader import from_dict, to_dict
from irgpt.config.sections import CurriculumConfig

from .test_iterator import COLS, global_sequence, run_ranks

pytestmark = pytest.mark.slow
CUT = 7


def train_loop(config: dict) -> None:
    import ray.train

    from irgpt.config.loader import from_dict
    from irgpt.config.sections import CurriculumConfig
    from irgpt.curriculum.iterator import TierIterator

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = from_dict(CurriculumConfig, config["cfg"])
    seen = []
    first = TierIterator(config["tiers"], rank, world, 3, cfg, 2, config["cols"])
    for b in first:
        seen.append({"ids": b["sample_id"], "pad": b["pad"].tolist(), "pos": list(first.position)})
        if len(seen) == CUT:
            break
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint would carry
    second = TierIterator(config["tiers"], rank, world, 3, cfg, 2, config["cols"])
    second.load_state_dict(state)
    for b in second:
        seen.append({"ids": b["sample_id"], "pad": b["pad"].tolist(), "pos": list(second.position)})
    Path(config["out"], f"rank{rank}.json").write_text(json.dumps(seen))


def test_two_train_workers_see_the_planned_batches(tiered, tmp_path):
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cfg = CurriculumConfig(seed=3)
        trainer = TorchTrainer(
            train_loop,
            train_loop_config={"tiers": str(tiered["out"]), "cfg": to_dict(cfg), "cols": COLS, "out": str(tmp_path)},
            scaling_config=ScalingConfig(num_workers=2, use_gpu=False),
            run_config=RunConfig(storage_path=str(tmp_path / "ray"), name="iter"),
        )
        trainer.fit()
    finally:
        if started:
            ray.shutdown()
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [s["pos"] for s in seen[0]] == [s["pos"] for s in seen[1]]  # same steps, same tier changes
    expected, _ = run_ranks(tiered["out"], from_dict(CurriculumConfig, to_dict(cfg)), world=2, batch=3, epochs=2)
    got = [[{"sample_id": s["ids"], "pad": s["pad"]} for s in rank] for rank in seen]
    assert global_sequence(got) == global_sequence(expected)
    assert global_sequence(got, "pad") == global_sequence(expected, "pad")
