"""Connecting to Ray the same way from the CLI, the jobs and the tests."""

from __future__ import annotations

import os
import sys

from irgpt.config import RayConfig


def ensure_ray(cfg: RayConfig | None = None) -> None:
    """`ray.init()` once: join `cfg.address` (or RAY_ADDRESS), else start local Ray.

    Under `ray job submit` RAY_ADDRESS is set by the job's driver, so the same
    code joins the cluster there and starts a local Ray everywhere else.
    """
    import ray

    if ray.is_initialized():
        return
    cfg = cfg or RayConfig()
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    # Workers must see this process's environment (e.g. DS_ACCELERATOR) and
    # never try to reach a model hub.
    env = {
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update({k: v for k, v in env.items() if k not in os.environ})
    kwargs: dict = {"log_to_driver": True}
    if address:
        ray.init(address=address, **kwargs)
    else:
        # A local Ray starts its dashboard, on loopback only: Ray's state API is served
        # by it, and Ray Train V2's PlacementGroupCleaner polls that API for the
        # controller's state. Without it every poll failed ("Failed to query Ray Train
        # Controller actor state", hundreds of lines a run) and the cleaner could never
        # remove the placement group of a crashed controller.
        kwargs.update(include_dashboard=True, dashboard_host="127.0.0.1")
        if cfg.num_cpus is not None:
            kwargs["num_cpus"] = cfg.num_cpus
        if cfg.object_store_memory_mb:
            kwargs["object_store_memory"] = cfg.object_store_memory_mb * 1024 * 1024
        ray.init(**kwargs)
    ctx = ray.data.DataContext.get_current()
    # Progress bars are for a terminal; in logs and CI a line per stage is clearer.
    ctx.enable_progress_bars = sys.stderr.isatty()


def log0(message: str) -> None:
    """The one place driver/rank-0 progress lines go (stderr, flushed)."""
    print(message, file=sys.stderr, flush=True)


def warn_untrained(what: str, key: str, value) -> None:
    """One WARNING line when a scorer runs on a random-init model (the manifest then
    records `untrained: true`): its scores say nothing about the data."""
    log0(f"WARNING: {what} is random-init and untrained ({key}: {value}); its scores rank the data "
         "arbitrarily. Fine for a smoke test; give a trained model for real curricula.")
