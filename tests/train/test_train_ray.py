"""`irgpt train` on Ray Train + DeepSpeed (2 CPU workers): both stages, a dead worker, --resume, ZeRO 1/3 (slow).

One tiny dataset (40 synthetic scenes: 104 infrared caption train rows in 4
tiers of 26, 157 instruction train rows) and one uninterrupted two-stage
ZeRO-2 run are made once per module; the other tests compare against that
run's stage 1 (same config: global batch 16 on 2 workers x micro 4 x
accumulation 2, 8 optimizer steps, a checkpoint every 3 steps).

The failure tests kill the last rank after step 5, so the restart replays
from the step-3 checkpoint: mid-tier (tier 1's second step comes next), with
weights that have moved (DeepSpeed's warm-up runs steps 1 and 2 at lr 0) and
across a tier boundary (step 5 starts tier 2).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

CHECKPOINT_EVERY = 3
FAIL_AT = 5
OVERRIDES = [
    "train.num_workers=2",
    "train.stage1.micro_batch_size=4", "train.stage1.global_batch_size=16",
    "train.stage2.micro_batch_size=4", "train.stage2.global_batch_size=16",
    "train.stage2.epochs=1", "train.stage2.lr=0.002",
    f"train.checkpoint_every={CHECKPOINT_EVERY}", "train.max_failures=1",
]


def config(*extra: str):
    from irgpt.config import load_config

    return load_config(None, OVERRIDES + list(extra))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Synthetic samples + hand-made Lesson 1/2 scores + tiers (no scorer, no Ray)."""
    from builders import synthetic_tiers

    return synthetic_tiers(tmp_path_factory.mktemp("train_ray"), num_samples=40, seed=7, curriculum=config().curriculum)


@pytest.fixture(scope="module")
def reference(ray_local, data) -> dict:
    """The uninterrupted run: both stages, ZeRO-2 (the default)."""
    from irgpt.train.trainer import train

    run = data["root"] / "REF"
    summary = train(config(), "all", data["samples"], data["tiers"], run)
    return {"run": run, "summary": summary, "stage1": step_records(run, 1)}


def step_records(run, stage: int) -> list[dict]:
    from irgpt.train.metrics import read_metrics

    return [r for r in read_metrics(run / f"stage{stage}" / "metrics.jsonl") if "loss" in r]


def tb_loss_steps(run, stage: int = 1) -> list[list[int]]:
    """The `stageN/loss` steps of each TensorBoard event file (one file per attempt), oldest first."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted((run / f"stage{stage}" / "tensorboard").glob("events.out.tfevents.*"),
                   key=lambda p: int(p.name.split(".")[3]))
    steps = []
    for f in files:
        acc = EventAccumulator(str(f))
        acc.Reload()
        tag = f"stage{stage}/loss"
        steps.append([e.step for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else [])
    return steps


def assert_same_steps(got: list[dict], want: list[dict], rel: float = 1e-4) -> None:
    """One record per optimizer step, at the same (epoch, tier) positions, with matching losses."""
    assert [r["global_step"] for r in got] == list(range(1, len(want) + 1))
    assert [(r["epoch"], r["tier"], r["step_in_tier"]) for r in got] == \
        [(r["epoch"], r["tier"], r["step_in_tier"]) for r in want]
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], rel=rel)
    assert [r["lr"] for r in got] == pytest.approx([r["lr"] for r in want], rel=1e-9, abs=1e-12)


def test_two_stages_zero2(reference):
    from irgpt.models.vlm import ADAPTER_DIR, load_vlm

    run, summary = reference["run"], reference["summary"]
    for stage in (1, 2):
        st = summary[f"stage{stage}"]
        assert st["steps"] == st["planned_steps"] > 0
        assert st["initial_val_loss"] > st["final_val_loss"], st
        records = step_records(run, stage)
        assert [r["global_step"] for r in records] == list(range(1, st["steps"] + 1))  # one per optimizer step
        assert all(r["stage"] == stage for r in records)
        loaded = load_vlm(st["model"])
        assert loaded.spec.num_image_tokens > 0
    assert summary["stage1"]["steps"] == 8  # 4 tiers of 26 rows, padded to 32: 2 steps of 16 each
    assert (run / "stage2" / "model" / ADAPTER_DIR / "adapter_config.json").is_file()

    tiers = [r["tier"] for r in reference["stage1"]]
    assert tiers == sorted(tiers) and set(tiers) == {0, 1, 2, 3}  # ascending_stratified_random, sequential
    events = list((run / "stage1" / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    assert tb_loss_steps(run) == [list(range(1, 9))]


def test_dead_worker_restarts_from_the_latest_checkpoint(reference, data):
    from irgpt.train.trainer import train

    run = data["root"] / "FAULT"
    summary = train(config(), "1", data["samples"], data["tiers"], run, fail_at_step=FAIL_AT)

    assert (run / "stage1" / "fail_marker").is_file()  # the last rank did die after step 5
    assert summary["stage1"]["steps"] == reference["summary"]["stage1"]["steps"]
    # rank 0 cut metrics.jsonl back to the checkpoint: one record per step, as uninterrupted
    assert_same_steps(step_records(run, 1), reference["stage1"])
    # the second attempt began after the step-3 checkpoint, not from scratch
    attempts = tb_loss_steps(run)
    assert len(attempts) == 2 and attempts[-1] == list(range(CHECKPOINT_EVERY + 1, 9))


def test_resume_a_failed_run(reference, data):
    import ray.train

    from irgpt.train.trainer import resume, train

    cfg = config("train.max_failures=0")
    run = data["root"] / "RESUME"
    with pytest.raises(ray.train.TrainingFailedError):
        train(cfg, "1", data["samples"], data["tiers"], run, fail_at_step=FAIL_AT)
    assert (run / "stage1" / "fail_marker").is_file()
    assert len(step_records(run, 1)) < reference["summary"]["stage1"]["steps"]

    summary = resume(cfg, run)
    assert summary["stage1"]["steps"] == reference["summary"]["stage1"]["steps"]
    assert_same_steps(step_records(run, 1), reference["stage1"])
    assert tb_loss_steps(run)[-1] == list(range(CHECKPOINT_EVERY + 1, 9))


@pytest.fixture(scope="module")
def budget4(ray_local, data) -> list[dict]:
    """A ZeRO-2 stage 1 under a 4-step budget (every tier cut to the same fraction): what ZeRO 1/3 must match."""
    from irgpt.train.trainer import train

    run = data["root"] / "BUDGET4"
    summary = train(config("train.stage1.max_steps=4"), "1", data["samples"], data["tiers"], run)
    assert summary["stage1"]["steps"] == 4 and summary["stage1"]["rows_seen_per_tier"] == [16, 16, 16, 16]
    return step_records(run, 1)


@pytest.mark.parametrize("zero_stage", [1, 3])
def test_zero_stage(zero_stage, budget4, data):
    """4 steps (the first 2 run at lr 0, so 2 would not move a weight); the same
    losses as ZeRO-2, and a full (ZeRO-3: gathered) model that loads."""
    import torch

    from irgpt.models.freeze import vlm_parts
    from irgpt.models.vlm import load_vlm
    from irgpt.train.trainer import train

    run = data["root"] / f"ZERO{zero_stage}"
    summary = train(config(f"deepspeed.zero_stage={zero_stage}", "train.stage1.max_steps=4"), "1",
                    data["samples"], data["tiers"], run)
    assert summary["stage1"]["steps"] == 4
    got = step_records(run, 1)
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in budget4], rel=1e-4)

    trained = load_vlm(summary["stage1"]["model"]).model.state_dict()
    base = load_vlm(run / "base").model.state_dict()
    assert trained.keys() == base.keys()
    parts = vlm_parts(load_vlm(run / "base").model)
    for name, tensor in trained.items():
        assert tensor.shape == base[name].shape, name
        if name.startswith(parts.llm) or name.startswith("lm_head"):
            assert torch.equal(tensor, base[name]), name  # frozen in stage 1
    vision = [n for n in trained if n.startswith(parts.vision)]
    assert any(not torch.equal(trained[n], base[n]) for n in vision)  # the vision tower trained
