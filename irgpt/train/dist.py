"""Rank, world size and the few collectives the training jobs use, asked one way.

Inside a Ray Train worker the process group exists (gloo on CPU, NCCL on GPU);
outside one (a unit test, a single process) every function here is the
world-size-1 identity, so `world_size = 1` runs the same code path.
"""

from __future__ import annotations

import contextlib
import io
import sys

import torch


def distributed() -> bool:
    """True when a process group with more than one rank is initialised."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this worker: Ray Train's context, else (0, 1)."""
    try:
        import ray.train

        ctx = ray.train.get_context()
        return ctx.get_world_rank(), ctx.get_world_size()
    except Exception:  # noqa: BLE001 - not inside a Ray Train worker
        return 0, 1


def collective_device() -> torch.device:
    """Where a collective's tensor must live: this rank's GPU under NCCL, else the CPU (gloo)."""
    import torch.distributed as dist

    if distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_tensor(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce of a tensor (`sum`, `min` or `max`; no-op on one rank); returns it.
    The reduction runs on `collective_device()` whatever device `t` is on."""
    import torch.distributed as dist

    if distributed():
        ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
        work = t.to(collective_device())
        dist.all_reduce(work, op=ops[op])
        if work is not t:
            t.copy_(work)
    return t


def all_reduce(values: list[float], op: str = "sum") -> list[float]:
    """`values` reduced over ranks (`sum`, `min` or `max`), as float64."""
    return all_reduce_tensor(torch.tensor(values, dtype=torch.float64), op).tolist()


def gather_objects(obj) -> list:
    """`obj` of every rank, in rank order (one rank: `[obj]`)."""
    import torch.distributed as dist

    if not distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


@contextlib.contextmanager
def without_stdout_lines(*fragments: str):
    """Hold back stdout lines containing any of `fragments` while the block runs (a
    library's per-process banner that would repeat once per worker and stage); every
    other line is written through unchanged when the block ends."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:  # back on the real stdout: write what the block printed, less the banner
        kept = [line for line in buffer.getvalue().splitlines(keepends=True) if not any(f in line for f in fragments)]
        sys.stdout.write("".join(kept))
        sys.stdout.flush()
