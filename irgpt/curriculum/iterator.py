"""The tier-aware iterator used inside `train_loop_per_worker`.

    ctx = ray.train.get_context()
    it = TierIterator(tier_dir, ctx.get_world_rank(), ctx.get_world_size(),
                      micro_batch_size=8, cfg=cfg.curriculum, epochs=1, grad_accum=ga)
    if (ckpt := ray.train.get_checkpoint()):
        it.load_state_dict(saved["iterator"])
    for batch in it:
        loss = (batch["weight"] * per_sample_ce(batch)).sum() / batch["pad"].logical_not().sum()
        ...  # checkpoint: {"iterator": it.state_dict(), ...}

Ray Data keeps no stream order (`preserve_order` off, `streaming_split` is not
deterministic), so the curriculum order is built, not streamed: every rank
computes the same `schedules.Plan` from the tier manifest and the config,
takes its slice of each micro-step, and reads its rows straight from the tier
Parquet files (`RowSource`), one unit (tier / stage) at a time, the next unit
prefetched on a thread. Remainder rule (schedules.py): every unit is padded to
a multiple of world_size * micro_batch_size * grad_accum with repeated rows
flagged `pad=True`, weight 0; the count is logged on rank 0.

Batch contract: a dict with the requested columns (numeric columns as numpy
arrays, others - `image` bytes, `conversations`, strings - as lists) plus
`weight` (float32 tensor; 0 for pads; 1 when `cfg.weights` is off),
`tier` (int64 tensor) and `pad` (bool tensor). Every batch has exactly
`micro_batch_size` rows.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import torch

from irgpt.curriculum.rowsource import RowSource
from irgpt.curriculum.schedules import Plan

log = logging.getLogger(__name__)
STATE_VERSION = 1


class Position(NamedTuple):
    """Where a batch sits in the run. `tier` is the unit's label (schedules.Unit)."""

    epoch: int
    tier: int
    step_in_tier: int
    global_step: int
    """Global micro-step (0-based) across all epochs."""


def log_rank0(rank: int, msg: str, *args) -> None:
    if rank == 0:
        log.info(msg, *args)


class TierIterator:
    """Deterministic curriculum batches for one rank; resumable mid-tier."""

    def __init__(
        self,
        tier_dir: str | Path | None,
        rank: int,
        world_size: int,
        micro_batch_size: int,
        cfg,
        epochs: int,
        columns: list[str] | None = None,
        *,
        grad_accum: int = 1,
        prefetch: bool = True,
        source: RowSource | None = None,
        fraction: float = 1.0,
    ):
        if epochs < 1:
            raise ValueError("epochs must be >= 1")
        self.source = source if source is not None else RowSource.from_tier_dir(tier_dir)
        self.cfg = cfg
        self.rank, self.world_size, self.micro_batch_size = rank, world_size, micro_batch_size
        self.epochs = epochs
        self.plan = Plan(self.source.tier_sizes, cfg, world_size, micro_batch_size, grad_accum, fraction)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        available = list(self.source.columns) + list(self.source.constants)
        wanted = list(columns) if columns is not None else [c for c in available if c != "pad"]
        for must in ("sample_id", "weight", "tier"):
            if must not in wanted:
                wanted.append(must)
        missing = [c for c in wanted if c not in available]
        if missing:
            raise ValueError(f"columns {missing} not in {self.source.origin} (have {available})")
        self.columns = wanted
        self._file_columns = [c for c in wanted if c in self.source.columns]
        self.total_steps = epochs * self.plan.steps_per_epoch
        self._next = 0
        self.position: Position | None = None
        """Position of the batch most recently yielded (None before the first)."""
        self._prefetch = prefetch
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[tuple[int, int], Future] = {}
        log_rank0(
            rank,
            "curriculum plan: %d rows in tiers %s (budget fraction %.4g of each tier), schedule=%s mode=%s pacing=%s; %d micro-steps/epoch x %d epochs; "
            "remainder rule: %d pad rows/epoch (weight 0, pad=True) over %d ranks x %d rows x %d accum",
            self.plan.n, self.plan.sizes, self.plan.fraction, cfg.schedule, cfg.mode, cfg.pacing.function, self.plan.steps_per_epoch, epochs,
            self.plan.pad_rows(0), world_size, micro_batch_size, grad_accum,
        )

    @classmethod
    def from_dataset_dir(
        cls,
        data_dir: str | Path | list,
        rank: int,
        world_size: int,
        micro_batch_size: int,
        epochs: int,
        *,
        filter=None,
        cfg=None,
        columns: list[str] | None = None,
        grad_accum: int = 1,
        prefetch: bool = True,
        fraction: float = 1.0,
    ) -> TierIterator:
        """Stage 2: a samples dataset (optionally filtered) as one tier with weights 1.

        `data_dir` may also be a list of dataset directories: one tier each,
        in order (then pick a curriculum `cfg` to use them as tiers). cfg defaults to `CurriculumConfig(m=1, weights=False)`: a fresh seeded
        shuffle each epoch, the same remainder rule and resumption as stage 1.
        """
        if cfg is None:
            from irgpt.config.sections import CurriculumConfig

            cfg = CurriculumConfig(m=1, weights=False)
        source = RowSource.from_dataset_dir(data_dir, filter)
        return cls(None, rank, world_size, micro_batch_size, cfg, epochs, columns, grad_accum=grad_accum, prefetch=prefetch, source=source,
                   fraction=fraction)

    # -------------------------------------------------------------- API ---
    def __len__(self) -> int:
        """Batches still to come (all of them before the first, fewer after a resume)."""
        return self.total_steps - self._next

    @property
    def steps_per_epoch(self) -> int:
        return self.plan.steps_per_epoch

    def state_dict(self) -> dict:
        """Resume point: the batch after the last one yielded, and what the plan hangs on."""
        return {"version": STATE_VERSION, "next_step": self._next, "plan": self.plan.fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"iterator state version {state.get('version')!r}, expected {STATE_VERSION}")
        mine = self.plan.fingerprint()
        diff = {k: (v, mine.get(k)) for k, v in state["plan"].items() if mine.get(k) != v}
        if diff:
            raise ValueError(f"cannot resume: the plan differs from the checkpoint's (checkpoint, now): {diff}")
        self._next = int(state["next_step"])
        self.position = None
        self._pending.clear()

    def __iter__(self):
        while self._next < self.total_steps:
            epoch, index, step = self.plan.locate(self._next)
            unit = self.plan.units(epoch)[index]
            table, pad, tiers = self._window(epoch, index)
            self._schedule_next(epoch, index)
            for s in range(step, unit.steps):
                if self._next >= self.total_steps:
                    return
                batch = self._batch(table, pad, tiers, s)
                self.position = Position(epoch, unit.label, s, self._next)
                self._next += 1
                yield batch

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._pending.clear()

    # ---------------------------------------------------------- internals --
    def _load(self, epoch: int, index: int) -> tuple[pa.Table, np.ndarray]:
        rows, pad = self.plan.rank_order(epoch, index, self.rank)
        table = self.source.read(rows.reshape(-1), self._file_columns)
        return table, pad, self.source.tier_of(rows)

    def _window(self, epoch: int, index: int):
        future = self._pending.pop((epoch, index), None)
        self._pending.clear()
        return future.result() if future is not None else self._load(epoch, index)

    def _schedule_next(self, epoch: int, index: int) -> None:
        if not self._prefetch:
            return
        units = self.plan.units(epoch)
        nxt = (epoch, index + 1) if index + 1 < len(units) else (epoch + 1, 0)
        if nxt[0] >= self.epochs:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tier-prefetch")
        self._pending[nxt] = self._pool.submit(self._load, *nxt)

    def _batch(self, table: pa.Table, pad: np.ndarray, tiers: np.ndarray, step: int) -> dict:
        b = self.micro_batch_size
        rows = table.slice(step * b, b)
        mask = pad[step]
        out: dict = {}
        for c in self.columns:
            if c == "tier" and c in self.source.constants:
                values = tiers[step]
            elif c in self.source.constants:
                values = np.full(b, self.source.constants[c])
            else:
                col = rows.column(c)
                if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
                    values = col.to_numpy(zero_copy_only=False)
                else:
                    out[c] = col.to_pylist()
                    continue
            out[c] = values
        weight = np.asarray(out["weight"], dtype=np.float32) if self.cfg.weights else np.ones(b, dtype=np.float32)
        out["weight"] = torch.from_numpy(np.where(mask, np.float32(0), weight).astype(np.float32))
        out["tier"] = torch.from_numpy(np.asarray(out["tier"], dtype=np.int64))
        out["pad"] = torch.from_numpy(mask.copy())
        return out

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
