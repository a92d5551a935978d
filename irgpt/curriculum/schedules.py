"""Schedules (paper Table 4), tier modes and pacing as a deterministic plan.

The plan says, for every epoch and micro-step, which rows every rank trains
on. It is a pure function of the tier sizes, the `CurriculumConfig`
(schedule, mode, pacing, seed), the world size, the micro-batch size and the
gradient accumulation, so every rank computes the same plan and takes its own
slice: curriculum order never depends on how Ray streams data.

Rows are named by global row id: tiers laid end to end in composite order
(tier 0 first; the order of `OUT/tier=K/part-*.parquet`), so ascending
composite order is simply 0..N-1.

An epoch is a list of units; a unit is a run of micro-steps drawing from one
pool of rows:
- `ascending_stratified_random` (default): units = tiers in order; each tier
  in a fresh random order per (seed, epoch, tier).
- `ascending`: tiers in order, rows in strict composite order.
- `descending`: the exact reverse (tiers M-1..0, each reversed): anti-CL.
- `random`: no curriculum: one seeded permutation of all rows per epoch
  (mode and tiers ignored; unit label -1).
Modes: `sequential` (each tier once per epoch) or `cumulative` (stage k
trains on tiers 0..k, shuffled together for the stratified schedule; from the
hard end for `descending`), so an epoch of M stages shows tier 0 M times.

Remainder rule (every non-paced unit): a unit of n rows is padded up to a
multiple of W * B * A (world size x micro-batch x grad accumulation) by
repeating the unit's first rows in its order; pad rows carry `pad=True` and
weight 0. So every rank gets the same number of full micro-batches per unit,
all ranks change tier at the same optimizer step, every real row is seen
exactly once per unit, and nothing is dropped. The iterator logs the count.

Pacing (`curriculum.pacing.function != "none"`, `pacing.admitted_tier`): an
epoch has ceil(N / (W*B*A)) optimizer steps; at each one the pool is the
admitted tiers (0..a; from the hard end for `descending`); consecutive steps
with the same pool form a unit drawing a seeded stream of permutations of the
pool (no pads; a row may repeat or be skipped within an epoch: pacing trades
"each row once" for DeepSpeed's step-based admission). `mode` is ignored.

Budgets (`fraction` < 1, budget.py): every tier keeps the same fraction of
its rows (a seeded draw independent of the schedule) and the plan above runs
in full on the kept rows; the tail of the schedule is never cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from irgpt.curriculum.budget import kept_rows, kept_sizes
from irgpt.curriculum.pacing import admitted_tier, validate_pacing
from irgpt.curriculum.ranking import offsets

SALT_STRATIFIED, SALT_CUMULATIVE, SALT_RANDOM, SALT_PACED = 1, 2, 3, 4
SCHEDULES = ("ascending_stratified_random", "ascending", "descending", "random")


def rng_for(seed: int, epoch: int, salt: int, label: int = 0, cycle: int = 0) -> np.random.Generator:
    """The generator for one (seed, epoch, unit) — PCG64, identical on every platform."""
    return np.random.default_rng(np.random.SeedSequence([seed % 2**63, epoch, salt, label + 1, cycle]))


@dataclass(frozen=True)
class Unit:
    """A run of micro-steps drawing rows from the global row range [lo, hi)."""

    label: int
    """Tier (sequential), newest admitted tier (cumulative, paced), -1 (random)."""
    lo: int
    hi: int
    steps: int
    """Micro-steps (a multiple of the grad accumulation)."""
    kind: str
    """`tier`, `stage`, `all` or `paced`."""


class Plan:
    """The whole training order for given tier sizes, config and world."""

    def __init__(self, tier_sizes: list[int], cfg, world_size: int, micro_batch_size: int, grad_accum: int = 1,
                 fraction: float = 1.0):
        if world_size < 1 or micro_batch_size < 1 or grad_accum < 1:
            raise ValueError("world_size, micro_batch_size and grad_accum must be >= 1")
        if cfg.schedule not in SCHEDULES:
            raise ValueError(f"unknown curriculum.schedule {cfg.schedule!r}")
        self.full_sizes = [int(s) for s in tier_sizes]
        self.fraction = float(fraction)
        # A budget (budget.py) keeps the same fraction of every tier; the plan then
        # works on the kept rows ("compact" ids 0..n-1) and maps them back in `order`.
        self.sizes = kept_sizes(self.full_sizes, self.fraction)
        self._row_ids = None if self.sizes == self.full_sizes else kept_rows(self.full_sizes, self.sizes, cfg.seed)
        self.starts = offsets(self.sizes)
        self.n = sum(self.sizes)
        if self.n == 0:
            raise ValueError("the plan has no rows (every tier is empty)")
        self.cfg = cfg
        self.world_size, self.micro_batch_size, self.grad_accum = world_size, micro_batch_size, grad_accum
        self.rows_per_step = world_size * micro_batch_size
        self.rows_per_opt_step = self.rows_per_step * grad_accum
        self.paced = cfg.pacing.function != "none"
        if self.paced:
            if cfg.schedule == "random":
                raise ValueError("curriculum.pacing needs a curriculum schedule, not schedule=random")
            validate_pacing(cfg)
        self.nonempty = [k for k, s in enumerate(self.sizes) if s > 0]
        self._fixed_units = None if self.paced else self._build_fixed_units()
        self._paced_cache: dict[int, list[Unit]] = {}
        self.steps_per_epoch = (
            self._steps(self.n) if self.paced else sum(u.steps for u in self._fixed_units)
        )

    # ------------------------------------------------------------ units ---
    def _steps(self, rows: int) -> int:
        return -(-rows // self.rows_per_opt_step) * self.grad_accum

    def _tier_range(self, k: int) -> tuple[int, int]:
        return self.starts[k], self.starts[k] + self.sizes[k]

    def _pool(self, j: int, descending: bool) -> tuple[int, int, int]:
        """(lo, hi, label) of the first j + 1 non-empty tiers (from the hard end if descending)."""
        tiers = self.nonempty[::-1] if descending else self.nonempty
        newest = tiers[j]
        if descending:
            return self.starts[newest], self.n, newest
        return 0, self._tier_range(newest)[1], newest

    def _build_fixed_units(self) -> list[Unit]:
        cfg = self.cfg
        if cfg.schedule == "random":
            return [Unit(-1, 0, self.n, self._steps(self.n), "all")]
        descending = cfg.schedule == "descending"
        if cfg.mode == "cumulative":
            units = []
            for j in range(len(self.nonempty)):
                lo, hi, label = self._pool(j, descending)
                units.append(Unit(label, lo, hi, self._steps(hi - lo), "stage"))
            return units
        tiers = self.nonempty[::-1] if descending else self.nonempty
        return [Unit(k, *self._tier_range(k), self._steps(self.sizes[k]), "tier") for k in tiers]

    def units(self, epoch: int) -> list[Unit]:
        if not self.paced:
            return self._fixed_units
        if epoch not in self._paced_cache:
            self._paced_cache = {epoch: self._paced_units(epoch)}
        return self._paced_cache[epoch]

    def _paced_units(self, epoch: int) -> list[Unit]:
        m_eff = len(self.nonempty)
        first = epoch * self.steps_per_epoch // self.grad_accum
        count = self.steps_per_epoch // self.grad_accum
        admitted = [admitted_tier(first + i, self.cfg, m_eff) for i in range(count)]
        units, start = [], 0
        for i in range(1, count + 1):
            if i == count or admitted[i] != admitted[start]:
                lo, hi, label = self._pool(admitted[start], self.cfg.schedule == "descending")
                units.append(Unit(label, lo, hi, (i - start) * self.grad_accum, "paced"))
                start = i
        return units

    # ------------------------------------------------------------ order ---
    def order(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Global row ids (int64) and pad mask of unit `index`, steps * W * B long.

        Step s, rank r takes rows [s*W*B + r*B, s*W*B + (r+1)*B).
        """
        rows, mask = self._compact_order(epoch, index)
        return (rows if self._row_ids is None else self._row_ids[rows]), mask

    def _compact_order(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        u = self.units(epoch)[index]
        length = u.steps * self.rows_per_step
        size = u.hi - u.lo
        if u.kind == "paced":
            cycles = -(-length // size)
            rows = np.concatenate(
                [u.lo + rng_for(self.cfg.seed, epoch, SALT_PACED, u.label, c).permutation(size) for c in range(cycles)]
            )[:length]
            return rows.astype(np.int64), np.zeros(length, dtype=bool)
        real = self._real_order(epoch, u, index)
        pad = length - size
        rows = np.concatenate([real, real[np.arange(pad) % size]]) if pad else real
        mask = np.zeros(length, dtype=bool)
        mask[size:] = True
        return rows.astype(np.int64), mask

    def _real_order(self, epoch: int, u: Unit, index: int) -> np.ndarray:
        schedule, size = self.cfg.schedule, u.hi - u.lo
        if schedule == "random":
            return rng_for(self.cfg.seed, epoch, SALT_RANDOM).permutation(size)
        if schedule == "ascending":
            return np.arange(u.lo, u.hi)
        if schedule == "descending":
            return np.arange(u.hi - 1, u.lo - 1, -1)
        salt, label = (SALT_CUMULATIVE, index) if u.kind == "stage" else (SALT_STRATIFIED, u.label)
        return u.lo + rng_for(self.cfg.seed, epoch, salt, label).permutation(size)

    def rank_order(self, epoch: int, index: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """This rank's rows and pads of a unit, shaped (steps, micro_batch_size)."""
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank {rank} not in [0, {self.world_size})")
        rows, pad = self.order(epoch, index)
        shape = (-1, self.world_size, self.micro_batch_size)
        return rows.reshape(shape)[:, rank, :], pad.reshape(shape)[:, rank, :]

    # ---------------------------------------------------------- locating --
    def locate(self, global_step: int) -> tuple[int, int, int]:
        """(epoch, unit index, step in unit) of a global micro-step."""
        epoch, rest = divmod(int(global_step), self.steps_per_epoch)
        for i, u in enumerate(self.units(epoch)):
            if rest < u.steps:
                return epoch, i, rest
            rest -= u.steps
        raise AssertionError("unreachable: unit steps sum to steps_per_epoch")

    def pad_rows(self, epoch: int) -> int:
        """Pad rows in one epoch (all ranks), the remainder rule's cost."""
        if self.paced:
            return 0
        return sum(u.steps * self.rows_per_step - (u.hi - u.lo) for u in self.units(epoch))

    def rows_per_tier(self, epoch: int) -> list[int]:
        """Real (non-pad) rows each tier contributes to `epoch`, counted from the order itself."""
        ends = np.cumsum(self.full_sizes)
        counts = np.zeros(len(self.full_sizes), dtype=np.int64)
        for i in range(len(self.units(epoch))):
            rows, pad = self.order(epoch, i)
            counts += np.bincount(np.searchsorted(ends, rows[~pad], side="right"), minlength=len(counts))
        return [int(c) for c in counts]

    def fingerprint(self) -> dict:
        """What the plan depends on (a resumed run must match it)."""
        c = self.cfg
        return {
            "tier_sizes": self.full_sizes,
            "fraction": self.fraction,
            "schedule": c.schedule,
            "mode": c.mode,
            "seed": c.seed,
            "pacing": [c.pacing.function, c.pacing.total_curriculum_step, c.pacing.root_degree],
            "world_size": self.world_size,
            "micro_batch_size": self.micro_batch_size,
            "grad_accum": self.grad_accum,
        }
