"""TierIterator over the hand-made tiers: order, determinism, resumption, stage 2.

Ranks are simulated in-process (one iterator per rank); the Ray Train run of
the same check is in test_iterator_train.py (slow).
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest
import torch

from irgpt.config.sections import CurriculumConfig, PacingConfig
from irgpt.curriculum.iterator import Position, TierIterator

COLS = ["sample_id", "composite_rank", "weight", "tier"]


def run_ranks(out, cfg, world=1, batch=4, epochs=1, **kw):
    """[rank][step] -> batch, plus the positions rank 0 reported."""
    its = [TierIterator(out, r, world, batch, cfg, epochs, COLS, **kw) for r in range(world)]
    per_rank = [[] for _ in its]
    positions = [[] for _ in its]
    for r, it in enumerate(its):
        for b in it:
            per_rank[r].append(b)
            positions[r].append(it.position)
    assert all(p == positions[0] for p in positions), "ranks must agree on every step's position"
    return per_rank, positions[0]


def global_sequence(per_rank, key="sample_id"):
    """Rows in global order: step-major, then rank, then row."""
    out = []
    for step in zip(*per_rank):
        for b in step:
            out.extend(list(b[key]) if not isinstance(b[key], torch.Tensor) else b[key].tolist())
    return out


def real(per_rank, key="sample_id"):
    return [v for v, p in zip(global_sequence(per_rank, key), global_sequence(per_rank, "pad")) if not p]


def test_batch_contract(tiered):
    it = TierIterator(tiered["out"], 0, 2, 5, CurriculumConfig(), epochs=1)
    b = next(iter(it))
    assert b["weight"].dtype == torch.float32 and b["tier"].dtype == torch.int64 and b["pad"].dtype == torch.bool
    assert len(b["sample_id"]) == len(b["image"]) == len(b["conversations"]) == 5
    assert isinstance(b["image"][0], bytes) and b["conversations"][0][0]["from"] == "human"
    assert isinstance(b["composite_rank"], np.ndarray)
    assert it.position == Position(0, 0, 0, 0)


def test_stratified_every_tier_before_the_next_each_sample_once(tiered):
    per_rank, positions = run_ranks(tiered["out"], CurriculumConfig(), world=2, batch=5, epochs=2)
    n = tiered["manifest"]["num_rows"]
    tiers = global_sequence(per_rank, "tier")
    half = len(tiers) // 2
    for epoch in (tiers[:half], tiers[half:]):
        assert epoch == sorted(epoch)
    ids = real(per_rank)
    assert sorted(ids[: n]) == sorted(ids[n:]) and len(set(ids[:n])) == n and ids[:n] != ids[n:]
    pads = sum(global_sequence(per_rank, "pad"))
    assert pads == 2 * 4 * 2  # 48 rows a tier, 10 a step: 2 pad rows a tier, 4 tiers, 2 epochs
    weights = global_sequence(per_rank, "weight")
    assert all(w == 0 for w, p in zip(weights, global_sequence(per_rank, "pad")) if p)
    changes = [i for i in range(1, len(positions)) if positions[i].tier != positions[i - 1].tier]
    assert changes == [5, 10, 15, 20, 25, 30, 35]  # every rank changes tier at the same step


def test_ascending_sorted_descending_reverse_random_seeded(tiered):
    asc = real(run_ranks(tiered["out"], CurriculumConfig(schedule="ascending"), world=2, batch=4)[0], "composite_rank")
    assert asc == sorted(asc) and len(asc) == tiered["manifest"]["num_rows"]
    asc_ids = real(run_ranks(tiered["out"], CurriculumConfig(schedule="ascending"), world=1, batch=4)[0])
    desc_ids = real(run_ranks(tiered["out"], CurriculumConfig(schedule="descending"), world=1, batch=4)[0])
    assert desc_ids == asc_ids[::-1]
    r0 = real(run_ranks(tiered["out"], CurriculumConfig(schedule="random", seed=0), world=1, batch=4)[0])
    r0b = real(run_ranks(tiered["out"], CurriculumConfig(schedule="random", seed=0), world=1, batch=4)[0])
    r1 = real(run_ranks(tiered["out"], CurriculumConfig(schedule="random", seed=1), world=1, batch=4)[0])
    assert r0 == r0b and r0 != r1 and r0 != asc_ids and sorted(r0) == sorted(asc_ids)


def test_same_seed_same_batches_other_seed_differs(tiered):
    a = global_sequence(run_ranks(tiered["out"], CurriculumConfig(seed=5), world=2)[0])
    b = global_sequence(run_ranks(tiered["out"], CurriculumConfig(seed=5), world=2)[0])
    c = global_sequence(run_ranks(tiered["out"], CurriculumConfig(seed=6), world=2)[0])
    assert a == b and a != c


def test_weights_off_gives_one_for_real_rows(tiered):
    per_rank, _ = run_ranks(tiered["out"], CurriculumConfig(weights=False), world=2, batch=5)
    w, p = global_sequence(per_rank, "weight"), global_sequence(per_rank, "pad")
    assert {x for x, q in zip(w, p) if not q} == {1.0} and {x for x, q in zip(w, p) if q} == {0.0}


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("cfg", [CurriculumConfig(), CurriculumConfig(mode="cumulative"), CurriculumConfig(pacing=PacingConfig("fixed_root", 7))], ids=["strat", "cumulative", "paced"])
def test_resume_mid_tier_continues_exactly(tiered, world, cfg):
    full, _ = run_ranks(tiered["out"], cfg, world=world, batch=3, epochs=2)
    steps = len(full[0])
    for cut in (1, 7, steps // 2 + 1, steps - 1):
        resumed = []
        for r in range(world):
            first = TierIterator(tiered["out"], r, world, 3, cfg, 2, COLS)
            head = []
            for b in first:
                head.append(b)
                if len(head) == cut:
                    break
            state = first.state_dict()
            assert state["next_step"] == cut
            second = TierIterator(tiered["out"], r, world, 3, cfg, 2, COLS)
            second.load_state_dict(state)
            assert len(second) == steps - cut
            resumed.append(head + list(second))
        for key in ("sample_id", "weight", "pad", "tier"):
            assert global_sequence(resumed, key) == global_sequence(full, key), (cut, key)


def test_resume_refuses_another_plan(tiered):
    state = TierIterator(tiered["out"], 0, 2, 3, CurriculumConfig(), 1).state_dict()
    other = TierIterator(tiered["out"], 0, 1, 3, CurriculumConfig(), 1)
    with pytest.raises(ValueError, match="world_size"):
        other.load_state_dict(state)


def test_grad_accum_keeps_tier_changes_on_optimizer_steps(tiered):
    it = TierIterator(tiered["out"], 0, 2, 3, CurriculumConfig(), 1, COLS, grad_accum=4)
    positions = []
    for _ in it:
        positions.append(it.position)
    changes = [p.global_step for a, p in zip(positions, positions[1:]) if p.tier != a.tier]
    assert changes and all(g % 4 == 0 for g in changes)


def test_stage2_from_dataset_dir(tiered):
    it = TierIterator.from_dataset_dir(tiered["data"], 0, 1, 4, epochs=2, filter={"task": "scene"})
    batches = list(it)
    ids = [s for b in batches for s, p in zip(b["sample_id"], b["pad"].tolist()) if not p]
    assert len(ids) == 20 and set(ids) == {f"ins-{i:07d}" for i in range(10)}
    assert ids[:10] != ids[10:]  # reshuffled per epoch
    assert all(b["tier"].tolist() == [0] * 4 for b in batches)
    assert {w for b in batches for w, p in zip(b["weight"].tolist(), b["pad"].tolist()) if not p} == {1.0}
    expr = TierIterator.from_dataset_dir(tiered["data"], 0, 1, 4, 1, filter=pc.field("split") == "val")
    assert sorted(s for b in expr for s, p in zip(b["sample_id"], b["pad"].tolist()) if not p) == [f"val-{i:07d}" for i in range(5)]
    fn = TierIterator.from_dataset_dir(tiered["data"], 0, 1, 4, 1, filter=lambda t: pc.equal(t["band"], "vis"))
    assert fn.plan.n == 10


def test_plain_list_of_dataset_dirs_as_tiers(tiered):
    dirs = [tiered["data"], tiered["data"]]
    cfg = CurriculumConfig(m=2, schedule="ascending", weights=False)
    it = TierIterator.from_dataset_dir(dirs, 0, 1, 7, 1, filter={"task": "scene"}, cfg=cfg)
    assert it.plan.sizes == [10, 10]
    batches = list(it)
    tiers = [t for b in batches for t, p in zip(b["tier"].tolist(), b["pad"].tolist()) if not p]
    assert tiers == [0] * 10 + [1] * 10
