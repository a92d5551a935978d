"""Budgets shrink every tier alike and never cut the schedule's tail (irgpt.curriculum.budget)."""

from __future__ import annotations

import numpy as np
import pytest

from irgpt.config.sections import CurriculumConfig
from irgpt.curriculum.budget import fraction_for_steps, kept_rows, kept_sizes, layout_steps
from irgpt.curriculum.schedules import SCHEDULES, Plan
from irgpt.errors import CommandError

SIZES = [37, 41, 29, 53]


def epoch_rows(plan: Plan, epoch: int = 0) -> np.ndarray:
    """Every real (non-pad) row of an epoch, in training order."""
    out = []
    for i in range(len(plan.units(epoch))):
        rows, pad = plan.order(epoch, i)
        out.append(rows[~pad])
    return np.concatenate(out)


def test_kept_sizes_are_proportional_and_keep_every_tier():
    assert kept_sizes(SIZES, 1.0) == SIZES
    assert kept_sizes(SIZES, 0.5) == [18, 20, 14, 26]
    assert kept_sizes([100, 3, 0], 0.1) == [10, 1, 0]  # a non-empty tier keeps a row, an empty one stays empty
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="fraction"):
            kept_sizes(SIZES, bad)


def test_kept_rows_are_a_seeded_subset_of_each_tier():
    kept = kept_sizes(SIZES, 0.3)
    rows = kept_rows(SIZES, kept, seed=4)
    starts = np.concatenate([[0], np.cumsum(SIZES)[:-1]])
    tiers = np.searchsorted(np.cumsum(SIZES), rows, side="right")
    assert np.bincount(tiers, minlength=4).tolist() == kept
    assert len(np.unique(rows)) == len(rows)
    for k in range(4):
        mine = rows[tiers == k]
        assert mine.min() >= starts[k] and mine.max() < starts[k] + SIZES[k]
        assert np.all(np.diff(mine) > 0)  # composite order kept inside the tier
    assert np.array_equal(rows, kept_rows(SIZES, kept, seed=4))
    assert not np.array_equal(rows, kept_rows(SIZES, kept, seed=5))


@pytest.mark.parametrize("mode", ["sequential", "cumulative"])
def test_fraction_for_steps_fits_the_budget(mode):
    rows_per_step = 8
    full = layout_steps(SIZES, rows_per_step, mode)
    assert fraction_for_steps(SIZES, full, 1, rows_per_step, mode) == 1.0
    for budget in range(layout_steps([1, 1, 1, 1], rows_per_step, mode), full):
        f = fraction_for_steps(SIZES, budget, 1, rows_per_step, mode)
        assert 0 < f < 1
        assert layout_steps(kept_sizes(SIZES, f), rows_per_step, mode) <= budget
    two_epochs = fraction_for_steps(SIZES, 12, 2, rows_per_step, mode)
    assert layout_steps(kept_sizes(SIZES, two_epochs), rows_per_step, mode) * 2 <= 12


def test_a_budget_too_small_for_every_tier_is_refused_with_the_numbers():
    with pytest.raises(CommandError, match=r"max_steps=3 cannot visit all 4 tiers.*at least 4"):
        fraction_for_steps(SIZES, 3, 1, 8)
    with pytest.raises(CommandError, match=r"--steps must be >= 1"):
        fraction_for_steps(SIZES, 0, 1, 8, what="--steps")


def test_schedules_with_one_budget_see_the_same_rows_per_tier():
    """The acceptance invariant: ascending, descending, random (and the default) under one
    budget train on the same multiset of rows; every tier is visited; only the order differs."""
    f = fraction_for_steps(SIZES, 7, 1, 2 * 4 * 2)
    plans = {s: Plan(SIZES, CurriculumConfig(schedule=s, seed=3), 2, 4, 2, fraction=f) for s in SCHEDULES}
    counts = {s: p.rows_per_tier(0) for s, p in plans.items()}
    assert len({tuple(c) for c in counts.values()}) == 1
    assert all(n > 0 for n in counts["ascending"]) and sum(counts["ascending"]) < sum(SIZES)
    rows = {s: epoch_rows(p) for s, p in plans.items()}
    multisets = {s: tuple(np.sort(r)) for s, r in rows.items()}
    assert len(set(multisets.values())) == 1
    assert np.array_equal(rows["descending"], rows["ascending"][::-1])
    assert not np.array_equal(rows["random"], rows["ascending"])
    for s, p in plans.items():  # the budget fits (random pads once, so it can be shorter)
        assert p.steps_per_epoch // 2 <= 7, s


def test_no_budget_is_the_plan_as_before():
    cfg = CurriculumConfig(schedule="ascending_stratified_random", seed=1)
    a, b = Plan(SIZES, cfg, 2, 3), Plan(SIZES, cfg, 2, 3, fraction=1.0)
    assert np.array_equal(epoch_rows(a), epoch_rows(b)) and a.rows_per_tier(0) == SIZES


def test_cumulative_counts_each_tier_once_per_stage_it_is_in():
    plan = Plan(SIZES, CurriculumConfig(mode="cumulative", schedule="ascending"), 1, 4, fraction=0.5)
    kept = kept_sizes(SIZES, 0.5)
    assert plan.rows_per_tier(0) == [kept[k] * (4 - k) for k in range(4)]


def test_resuming_under_another_budget_is_refused(tmp_path):
    from builders import write_samples

    from irgpt.curriculum.iterator import TierIterator
    from irgpt.curriculum.rowsource import RowSource

    write_samples(tmp_path / "d", 40, n_visible=0, n_instruction=0, n_val=0, shard_rows=40)
    source = RowSource.from_dataset_dir(tmp_path / "d")
    full = TierIterator(None, 0, 1, 4, CurriculumConfig(m=1), 1, source=source, prefetch=False)
    half = TierIterator(None, 0, 1, 4, CurriculumConfig(m=1), 1, source=source, prefetch=False, fraction=0.5)
    assert len(half) < len(full)
    with pytest.raises(ValueError, match="fraction"):
        half.load_state_dict(full.state_dict())
