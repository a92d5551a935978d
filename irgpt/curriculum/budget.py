"""Training budgets that shrink every tier alike.

A budget (a trial's `--trial-steps`, an ablation's `--steps`, or
`train.stageN.max_steps` / `data_fraction`) never cuts the schedule's tail:
cutting an easy-to-hard run after N steps would train an ascending run on the
easy tiers only and a descending run on the hard ones only, so runs with the
same budget would compare different data rather than different orders.
Instead every tier keeps the same fraction f of its rows,

    kept_k = max(1, floor(f * |T_k|))      for every non-empty tier k,

chosen by a seeded draw that depends on (seed, tier, tier size) only, never on
the schedule. The schedule then runs in full on the kept rows. So ascending,
descending and random runs of one tiering and seed see the same multiset of
rows; only the order differs.

A step budget is turned into f once, on a layout that does not depend on the
schedule: every tier (cumulative mode: every stage's pool) padded to whole
optimizer steps, the way the sequential schedules lay them out. f is the
largest fraction whose layout fits `max_steps`; a random or paced run of the
same f takes at most as many steps.
"""

from __future__ import annotations

import numpy as np

from irgpt.errors import CommandError

SALT_BUDGET = 5
"""Seed salt of the per-tier subsample (schedules.py uses 1-4)."""


def kept_sizes(sizes: list[int], fraction: float) -> list[int]:
    """Rows each tier keeps under `fraction` (every row when fraction >= 1)."""
    if not 0.0 < fraction <= 1.0 or fraction != fraction:
        raise ValueError(f"budget fraction must be in (0, 1], got {fraction}")
    if fraction >= 1.0:
        return [int(s) for s in sizes]
    return [min(int(s), max(1, int(np.floor(fraction * s)))) if s > 0 else 0 for s in sizes]


def kept_rows(sizes: list[int], kept: list[int], seed: int) -> np.ndarray:
    """Global row ids kept, tier by tier, each tier's ids in ascending (composite) order."""
    starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)[:-1]]).astype(np.int64)
    parts = []
    for k, (size, keep) in enumerate(zip(sizes, kept)):
        if keep >= size:
            parts.append(np.arange(size, dtype=np.int64) + starts[k])
            continue
        rng = np.random.default_rng(np.random.SeedSequence([seed % 2**63, SALT_BUDGET, k, size]))
        parts.append(np.sort(rng.choice(size, size=keep, replace=False)).astype(np.int64) + starts[k])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def layout_steps(kept: list[int], rows_per_opt_step: int, mode: str) -> int:
    """Optimizer steps of one epoch of the reference layout (see module doc)."""
    units = [k for k in kept if k > 0]
    if mode == "cumulative":
        units = list(np.cumsum(units))
    return int(sum(-(-int(u) // rows_per_opt_step) for u in units))


def fraction_for_steps(sizes: list[int], max_steps: int, epochs: int, rows_per_opt_step: int,
                       mode: str = "sequential", what: str = "max_steps") -> float:
    """The largest fraction whose reference layout takes at most `max_steps` optimizer steps.

    1.0 when the whole data fits. Refuses a budget too small to show every
    non-empty tier at least once, naming the smallest budget that does.
    """
    if max_steps < 1:
        raise CommandError(f"{what} must be >= 1, got {max_steps}")
    if layout_steps(kept_sizes(sizes, 1.0), rows_per_opt_step, mode) * epochs <= max_steps:
        return 1.0
    floor_steps = layout_steps([1 if s > 0 else 0 for s in sizes], rows_per_opt_step, mode) * epochs
    if floor_steps > max_steps:
        tiers = sum(1 for s in sizes if s > 0)
        raise CommandError(
            f"{what}={max_steps} cannot visit all {tiers} tiers: a budget shrinks every tier alike and never "
            f"drops one, and the smallest such run takes {floor_steps} optimizer steps "
            f"({epochs} epoch(s), {rows_per_opt_step} rows per step); raise {what} to at least {floor_steps}")
    lo, hi = 0.0, 1.0  # layout(lo) fits (kept 1 per tier at worst), layout(hi) does not
    for _ in range(60):
        mid = (lo + hi) / 2
        if layout_steps(kept_sizes(sizes, mid), rows_per_opt_step, mode) * epochs <= max_steps:
            lo = mid
        else:
            hi = mid
    return lo if lo > 0.0 else 1.0 / (max(sizes) + 1)  # 0 < f < 1 / |T_k|: one row per tier
