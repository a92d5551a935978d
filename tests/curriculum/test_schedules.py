"""Schedules, modes, pacing and the remainder rule as a pure plan (no files)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from irgpt.config.sections import CurriculumConfig, PacingConfig
from irgpt.curriculum.pacing import admitted_tier
from irgpt.curriculum.ranking import offsets, piece_plan, tier_sizes
from irgpt.curriculum.schedules import Plan

SIZES = [13, 13, 12, 12]


def epoch_rows(plan: Plan, epoch: int):
    """(global rows, pad mask, unit label per row) of one epoch in step order."""
    rows, pads, labels = [], [], []
    for i, u in enumerate(plan.units(epoch)):
        r, p = plan.order(epoch, i)
        rows.append(r), pads.append(p), labels.append(np.full(len(r), u.label))
    return np.concatenate(rows), np.concatenate(pads), np.concatenate(labels)


def tier_of(rows, sizes=SIZES):
    return np.searchsorted(np.cumsum(sizes), rows, side="right")


# ------------------------------------------------------------------ pacing --
@pytest.mark.parametrize(
    "fn,total,deg,m,steps,expected",
    [
        ("fixed_linear", 30, 2, 4, [0, 9, 10, 19, 20, 29, 30, 99], [0, 0, 1, 1, 2, 2, 3, 3]),
        ("fixed_root", 100, 2, 5, [0, 6, 7, 25, 56, 57, 100], [0, 0, 1, 2, 2, 3, 4]),
        ("fixed_root", 30, 1, 4, [9, 10, 30], [0, 1, 3]),  # degree 1 == linear
        ("fixed_discrete", 100, 2, 4, [0, 25, 26, 50, 51, 75, 76, 1000], [0, 0, 1, 1, 2, 2, 3, 3]),
        ("none", 0, 2, 4, [0, 5], [3, 3]),
    ],
)
def test_admitted_tier_hand_values(fn, total, deg, m, steps, expected):
    cfg = PacingConfig(function=fn, total_curriculum_step=total, root_degree=deg)
    assert [admitted_tier(s, cfg, m) for s in steps] == expected
    assert admitted_tier(steps[0], CurriculumConfig(pacing=cfg), m) == expected[0]


def test_pacing_needs_total_steps():
    with pytest.raises(ValueError, match="total_curriculum_step"):
        admitted_tier(3, PacingConfig(function="fixed_linear"), 4)
    with pytest.raises(ValueError, match="schedule=random"):
        Plan(SIZES, CurriculumConfig(schedule="random", pacing=PacingConfig("fixed_linear", 10)), 1, 4)


# --------------------------------------------------------------- schedules --
def test_stratified_tiers_in_order_each_row_once():
    plan = Plan(SIZES, CurriculumConfig(), world_size=2, micro_batch_size=3)
    rows, pad, labels = epoch_rows(plan, 0)
    real = rows[~pad]
    assert sorted(real.tolist()) == list(range(sum(SIZES)))
    assert np.all(np.diff(tier_of(rows)) >= 0)  # every row of tier t before any of t+1
    assert np.all(tier_of(rows) == labels)  # pads repeat rows of their own tier
    assert plan.pad_rows(0) == pad.sum() == sum(-s % 6 for s in SIZES)
    again, _, _ = epoch_rows(plan, 1)
    assert not np.array_equal(rows, again)  # reshuffled per epoch
    assert np.array_equal(rows, epoch_rows(Plan(SIZES, CurriculumConfig(), 2, 3), 0)[0])  # deterministic


def test_ascending_descending_random():
    asc = epoch_rows(Plan(SIZES, CurriculumConfig(schedule="ascending"), 1, 5), 0)
    desc = epoch_rows(Plan(SIZES, CurriculumConfig(schedule="descending"), 1, 5), 0)
    assert asc[0][~asc[1]].tolist() == list(range(50))
    assert desc[0][~desc[1]].tolist() == list(range(49, -1, -1))
    rnd = [epoch_rows(Plan(SIZES, CurriculumConfig(schedule="random", seed=s), 1, 5), 0)[0] for s in (0, 0, 1)]
    assert np.array_equal(rnd[0], rnd[1]) and not np.array_equal(rnd[0], rnd[2])
    assert sorted(rnd[0].tolist()) == list(range(50)) and rnd[0].tolist() != list(range(50))
    assert {u.label for u in Plan(SIZES, CurriculumConfig(schedule="random"), 1, 5).units(0)} == {-1}


def test_seeds_change_stratified_order_only_inside_tiers():
    a = epoch_rows(Plan(SIZES, CurriculumConfig(seed=0), 1, 1), 0)[0]
    b = epoch_rows(Plan(SIZES, CurriculumConfig(seed=1), 1, 1), 0)[0]
    assert not np.array_equal(a, b) and np.array_equal(tier_of(a), tier_of(b))


def test_cumulative_stages():
    plan = Plan(SIZES, CurriculumConfig(mode="cumulative"), 1, 4)
    ends = np.cumsum(SIZES)
    for k, u in enumerate(plan.units(0)):
        rows, pad = plan.order(0, k)
        assert (u.lo, u.hi, u.label) == (0, ends[k], k)
        assert sorted(rows[~pad].tolist()) == list(range(ends[k]))
    desc = Plan(SIZES, CurriculumConfig(mode="cumulative", schedule="descending"), 1, 4)
    assert [(u.lo, u.label) for u in desc.units(0)] == [(38, 3), (26, 2), (13, 1), (0, 0)]
    assert desc.order(0, 0)[0][:3].tolist() == [49, 48, 47]


def test_paced_plan_draws_from_admitted_tiers():
    cfg = CurriculumConfig(pacing=PacingConfig("fixed_linear", total_curriculum_step=9))
    plan = Plan(SIZES, cfg, world_size=2, micro_batch_size=2, grad_accum=1)
    assert plan.steps_per_epoch == 13  # ceil(50 / 4)
    step = 0
    for i, u in enumerate(plan.units(0)):
        rows, pad = plan.order(0, i)
        assert not pad.any() and rows.max() < u.hi
        for s in range(u.steps):
            assert tier_of(rows[s * 4 : (s + 1) * 4]).max() <= admitted_tier(step, cfg, 4) == u.label
            step += 1
    assert [u.label for u in plan.units(1)] == [3]  # past total_curriculum_step: all tiers


def test_grad_accum_aligns_units_to_optimizer_steps():
    plan = Plan(SIZES, CurriculumConfig(), world_size=2, micro_batch_size=2, grad_accum=3)
    assert all(u.steps % 3 == 0 for u in plan.units(0))
    assert [u.steps for u in plan.units(0)] == [6, 6, 3, 3]  # 13 -> 24 rows, 12 -> 12 rows


def test_locate_walks_every_step():
    plan = Plan(SIZES, CurriculumConfig(mode="cumulative"), 3, 2)
    seen = [plan.locate(g) for g in range(2 * plan.steps_per_epoch)]
    assert seen[0] == (0, 0, 0) and seen[plan.steps_per_epoch] == (1, 0, 0)
    assert Counter(e for e, _, _ in seen) == {0: plan.steps_per_epoch, 1: plan.steps_per_epoch}


# ------------------------------------------------------- property tests ----
@settings(max_examples=80, deadline=None)
@given(n=st.integers(0, 500), m=st.integers(1, 12), r=st.integers(1, 40))
def test_tier_split_property(n, m, r):
    sizes = tier_sizes(n, m)
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the first n % m tiers get the extra row
    pieces = piece_plan(n, m, r)
    assert [sum(p.rows for p in pieces if p.tier == k) for k in range(m)] == sizes
    assert all(p.rows <= r for p in pieces) and {p.tier for p in pieces} == set(range(m))
    starts = offsets(sizes)
    for p in pieces:
        assert p.start == starts[p.tier] + p.part * r


@settings(max_examples=80, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=6).filter(lambda s: sum(s) > 0),
    world=st.integers(1, 4),
    batch=st.integers(1, 5),
    accum=st.integers(1, 3),
    schedule=st.sampled_from(["ascending_stratified_random", "ascending", "descending", "random"]),
    mode=st.sampled_from(["sequential", "cumulative"]),
)
def test_remainder_rule_property(sizes, world, batch, accum, schedule, mode):
    plan = Plan(sizes, CurriculumConfig(schedule=schedule, mode=mode, seed=3), world, batch, accum)
    unit_rows = world * batch * accum
    for i, u in enumerate(plan.units(0)):
        rows, pad = plan.order(0, i)
        n = u.hi - u.lo
        assert len(rows) == u.steps * world * batch and u.steps % accum == 0
        assert 0 <= pad.sum() < unit_rows and not pad[: n].any() and pad[n:].all()
        assert sorted(rows[~pad].tolist()) == list(range(u.lo, u.hi))  # each row exactly once
        assert set(rows[pad].tolist()) <= set(range(u.lo, u.hi))  # pads repeat the unit's rows
        per_rank = [plan.rank_order(0, i, r)[0].shape for r in range(world)]
        assert per_rank == [(u.steps, batch)] * world  # same number of full batches on every rank
