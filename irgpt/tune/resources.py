"""How many trials fit the cluster at once, and what a trial itself holds.

A trial is a function trainable that holds (almost) nothing: `TRIAL_RESOURCES`
is one byte of the `memory` resource and no CPU. The work it starts asks for
its own resources: the stage's Ray Train worker group (`run_stage`: 1 CPU per
worker, plus `gpus_per_worker` GPUs with `use_gpu`) and then the evaluation's
Ray Data actors (`run_benchmark`: 1 CPU and `eval.num_gpus` each, up to
`eval.concurrency`). They run one after the other inside a trial, so a trial
needs the larger of the two.

Why not `{"cpu": 0.01}` (the usual Train V2 recipe): the trial's 0.01 CPU
stays held while its worker group starts, so on a 2-CPU cluster a 2-worker
group can never be placed (1.99 CPUs free) and the trial waits forever;
measured on ray 2.60. A bundle cannot be all zeros, hence the byte of memory.

Concurrency: `tune.max_concurrent_trials` is clamped to how many trials'
peak demand fits `ray.cluster_resources()` together, so concurrent trials
never starve each other's worker groups (with 2 CPUs and 2 train workers:
one trial at a time).
"""

from __future__ import annotations

import math

from irgpt.config import Config
from irgpt.errors import CommandError
from irgpt.ray_utils import log0

TRIAL_RESOURCES = {"cpu": 0, "memory": 1}
"""`tune.with_resources(trial, TRIAL_RESOURCES)` (see module doc)."""


def trial_demand(cfg: Config) -> dict[str, float]:
    """Peak CPUs / GPUs one trial's worker group or evaluation asks for."""
    t, ev = cfg.train, cfg.eval
    train = {"CPU": float(t.num_workers), "GPU": float(t.num_workers * t.gpus_per_worker if t.use_gpu else 0)}
    evaluation = {"CPU": float(ev.concurrency), "GPU": float(ev.concurrency * ev.num_gpus)}
    return {k: max(train[k], evaluation[k]) for k in ("CPU", "GPU")}


def fitting_trials(demand: dict[str, float], cluster: dict[str, float]) -> int:
    """How many trials' peak demand fits the cluster's totals at once (0: not even one)."""
    fits = [math.floor(cluster.get(k, 0.0) / v + 1e-9) for k, v in demand.items() if v > 0]
    return min(fits) if fits else 1_000_000


def plan_concurrency(cfg: Config, cluster: dict[str, float] | None = None) -> int:
    """`tune.max_concurrent_trials` clamped to what fits (see module doc); logs the decision."""
    if cfg.tune.max_concurrent_trials < 1:
        raise CommandError(f"tune.max_concurrent_trials must be >= 1, got {cfg.tune.max_concurrent_trials}")
    if cluster is None:
        import ray

        cluster = ray.cluster_resources()
    demand = trial_demand(cfg)
    fit = fitting_trials(demand, cluster)
    wanted = cfg.tune.max_concurrent_trials
    have = {k: cluster.get(k, 0.0) for k in demand if demand[k] > 0}
    if fit < 1:
        log0(f"[tune] one trial needs {demand} but the cluster has {have} now: trials will wait for the "
             "autoscaler (or lower train.num_workers / eval.concurrency)")
        return 1
    chosen = min(wanted, fit)
    if chosen < wanted:
        log0(f"[tune] max_concurrent_trials {wanted} -> {chosen}: a trial needs up to {demand}, the cluster has "
             f"{have}, so {fit} trial(s) fit at once")
    else:
        log0(f"[tune] {chosen} concurrent trial(s); a trial needs up to {demand}, the cluster has {have}")
    return chosen
