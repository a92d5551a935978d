"""One skeleton for the three Ray Train jobs: the VLM stages, the MAE (fe-train), the CLIP warm-up.

A job is a `TrainingJob`: it builds its model and data for this rank
(`setup`), runs one optimizer step (`step`), says what its checkpoint holds
(`save` / `load`) and what the run produced (`finish`). `run_worker` is the one
`train_loop_per_worker` that drives any job on every rank, and `fit` the one
driver that runs it on Ray Train (`ScalingConfig`, `RunConfig`,
`CheckpointConfig`, `FailureConfig`). So the three jobs checkpoint and resume
alike:

- every rank writes its files into one `ray.train.Checkpoint` (Ray merges
  them) plus `irgpt_state.json.rank<r>`: the run's name, the step, and the
  job's own JSON state;
- a restart after a dead worker (`FailureConfig`) or a rerun of the same run
  (`resume_from`, or Ray's own restore of a run name) reads the JSON first and
  refuses a checkpoint of another run before any job file (DeepSpeed's
  unpickling loader included) is touched, then continues at the saved step
  with the same batches and losses as an uninterrupted run;
- `world_size = 1` is the same code path.

The loop config (a plain dict, as Ray passes it) holds `job` ("module:Class"),
`run_name`, optionally `resume_from`, `fail_at_step` and `fail_marker` (the
test hook that kills the last rank after a step, once), and whatever the job
reads.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
import time
from pathlib import Path

CLIENT_STATE = "irgpt_state.json"


class TrainingJob:
    """What a training job implements; `run_worker` calls the hooks in this order:
    `setup`, then `load` (restart / resume) or `start_fresh`, `step` until
    `total_steps`, `save` whenever `checkpoint_due`, then `finish`, `save`, `close`."""

    total_steps: int = 0

    def __init__(self, config: dict):
        self.config = config

    def setup(self, rank: int, world: int) -> None:
        """Build the model, optimiser and this rank's data; set `total_steps`."""
        raise NotImplementedError

    def start_fresh(self) -> None:
        """Called instead of `load` when there is no checkpoint."""

    def step(self, step: int) -> dict:
        """Run optimizer step `step` (0-based); returns the metrics to report."""
        raise NotImplementedError

    def checkpoint_due(self, done: int) -> bool:
        """Whether to checkpoint after `done` steps (the last one always is)."""
        raise NotImplementedError

    def save(self, directory: Path, rank: int, final: bool) -> dict:
        """Write this rank's files into `directory`; returns its JSON-able state."""
        raise NotImplementedError

    def load(self, directory: Path, rank: int, state: dict) -> None:
        """Restore from a checkpoint `save` wrote (`state`: this rank's JSON)."""
        raise NotImplementedError

    def finish(self) -> dict:
        """The run's final metrics (after the last step, or on a restore of a finished run)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what `setup` opened."""


def job_class(path: str) -> type[TrainingJob]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def read_state(directory: Path, rank: int, run_name: str, world: int | None = None) -> dict:
    """This rank's JSON state of a checkpoint, refusing another run's (or, with `world`,
    one written by another number of workers)."""
    path = Path(directory, f"{CLIENT_STATE}.rank{rank}")
    if not path.is_file():
        raise RuntimeError(f"{directory}: no state for rank {rank} (a checkpoint of fewer workers?): "
                           "refusing to load it")
    state = json.loads(path.read_text())
    if state.get("run") != run_name:
        raise RuntimeError(f"{directory}: checkpoint of run {state.get('run')!r}, not of this run "
                           f"{run_name!r}: refusing to load it")
    if world is not None and state.get("world", world) != world:
        raise RuntimeError(f"{directory}: checkpoint of {state['world']} workers, this run has {world}: "
                           "refusing to load it")
    return state


def checkpoint(job: TrainingJob, done: int, rank: int, world: int, run_name: str, metrics: dict,
               final: bool = False) -> None:
    """Every rank saves its part of one checkpoint and reports it with `metrics`."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        state = job.save(Path(tmp), rank, final)
        Path(tmp, f"{CLIENT_STATE}.rank{rank}").write_text(
            json.dumps({"run": run_name, "world": world, "global_step": done, **state}))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


class _FailHook:
    """Test hook: after step `fail_at_step` the last rank dies (once: a marker file
    remembers it), after Ray has taken every report so far."""

    def __init__(self, config: dict, rank: int, world: int):
        marker = config.get("fail_marker")
        self.marker = Path(marker) if marker else None
        self.at = config.get("fail_at_step")
        self.armed = bool(self.at and self.marker and not self.marker.exists())  # alike on every rank
        self.rank, self.world = rank, world

    def __call__(self, done: int) -> None:
        if self.armed and done == self.at:
            _wait_reports_taken()  # else the last checkpoint may die unregistered in this worker's queue
            if self.rank == self.world - 1:
                self.marker.write_text(f"killed rank {self.rank} after step {done}\n")
                os._exit(1)


def _wait_reports_taken(timeout_s: float = 120.0) -> None:
    """Block until Ray Train's controller has taken this worker's reports.

    `ray.train.report` returns once the report sits in the worker's result
    queue; the controller takes it at its next poll (every ~2 s, slower on a
    loaded machine) and registers a checkpoint only when every rank's report
    is in. A worker that dies in between loses the checkpoint, and the restart
    would silently begin from an older one. Internal Ray Train V2 API (only
    the test hook uses it); on any other Ray it falls back to a wait.
    """
    deadline = time.monotonic() + timeout_s
    try:
        from ray.train.v2._internal.execution.context import get_train_context

        result_queue = get_train_context().get_result_queue()
    except Exception:  # noqa: BLE001 - not Train V2: a wait longer than a poll interval
        time.sleep(10.0)
        return
    while result_queue.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.05)


def run_worker(config: dict) -> None:
    """`train_loop_per_worker` of every job (module doc)."""
    import ray
    import ray.train

    from irgpt.train.dist import gather_objects, rank_world

    rank, world = rank_world()
    job = job_class(config["job"])(config)
    job.setup(rank, world)
    done = 0
    ckpt = ray.train.get_checkpoint()  # set after a worker failure restart
    if ckpt is None and config.get("resume_from"):
        from irgpt import storage

        fs, path = storage.resolve(config["resume_from"])  # a folder, or one in object storage
        ckpt = ray.train.Checkpoint(path, filesystem=fs)
    if ckpt is not None:
        with ckpt.as_directory() as directory:
            state = read_state(Path(directory), rank, config["run_name"], world)
            job.load(Path(directory), rank, state)
            done = int(state["global_step"])
    else:
        job.start_fresh()
    fail = _FailHook(config, rank, world)
    while done < job.total_steps:
        metrics = job.step(done)
        done += 1
        fail(done)
        if done < job.total_steps and job.checkpoint_due(done):
            checkpoint(job, done, rank, world, config["run_name"], metrics)
    final = job.finish()
    final["ray_nodes"] = sorted(set(gather_objects(ray.get_runtime_context().get_node_id())))
    checkpoint(job, done, rank, world, config["run_name"], final, final=True)
    job.close()


def latest_checkpoint(run_dir: str | Path) -> Path | str | None:
    """The newest checkpoint under a Ray Train run folder that holds our state (a folder
    in object storage: its URI)."""
    from irgpt import storage

    if storage.is_uri(str(run_dir)):
        found = [(info.mtime, rel.rpartition("/")[0]) for rel, info in storage.list_files(str(run_dir)).items()
                 if rel.rpartition("/")[2] == f"{CLIENT_STATE}.rank0"]
        return storage.join(str(run_dir), max(found)[1]) if found else None
    found = [p.parent for p in Path(run_dir).rglob(f"{CLIENT_STATE}.rank0")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def fit(config: dict, *, name: str, storage: str | Path, num_workers: int, use_gpu: bool = False,
        resources_per_worker: dict | None = None, num_to_keep: int = 2, max_failures: int = 0,
        callbacks: list | None = None):
    """Run a job (`config["job"]`) on Ray Train as run `name` under `storage`; returns the Result.

    `storage` is a shared path or an object-storage URI (every node must reach it: Ray Train
    uploads each checkpoint there); a work mirror of object storage means its store
    (`storage.readable`).

    `callbacks` go to the RunConfig (Tune passes `TuneReportCallback()`).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from irgpt.storage import readable

    trainer = TorchTrainer(
        run_worker,
        train_loop_config={**config, "run_name": name},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker=resources_per_worker),
        run_config=RunConfig(
            name=name,
            storage_path=readable(storage),
            checkpoint_config=CheckpointConfig(num_to_keep=num_to_keep),
            failure_config=FailureConfig(max_failures=max_failures),
            callbacks=callbacks or None,
        ),
    )
    return trainer.fit()
