"""Fake trial bodies with `run_trial`'s signature: the Tune plumbing without the VLM.

`torch_trial` runs a tiny TorchTrainer (Train V2 inside the function trainable,
`train.num_workers` workers) whose loop reports a loss computed from the
trial's config; the reports reach Tune through the trial's `train_callbacks`.
`quick_trial` reports at once (resume and scheduler tests); it fails once for
curriculum.m = K when the file OUT/FAIL_M<K> exists (the marker is removed).
Both append a line to TRIAL/runs.txt each time they run.
"""

from __future__ import annotations

import time
from pathlib import Path


def _loop(config: dict) -> None:
    import ray.train

    for step in range(1, 4):
        ray.train.report({"loss": config["target"] + 1.0 / step, "global_step": step})


def _objective(cfg) -> float:
    return -abs(cfg.curriculum.m - 3) - cfg.curriculum.lam


def _mark(trial_dir: Path) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True)
    with open(trial_dir / "runs.txt", "a") as f:
        f.write("run\n")


def torch_trial(cfg, data_dir, score_dirs, trial_dir, *, report=None, train_callbacks=None, **_):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    t0 = time.perf_counter()
    trial_dir = Path(trial_dir)
    _mark(trial_dir)
    target = -_objective(cfg)
    trainer = TorchTrainer(_loop, train_loop_config={"target": target},
                           scaling_config=ScalingConfig(num_workers=cfg.train.num_workers),
                           run_config=RunConfig(name="stage1", storage_path=str(trial_dir / "ray"),
                                                callbacks=train_callbacks(1) if train_callbacks else None))
    start = time.time()
    trainer.fit()
    (trial_dir / "span.txt").write_text(f"{start} {time.time()}\n")
    metrics = {"objective": _objective(cfg), "psum": 10.0 + _objective(cfg), "nsum": 10.0, "final_val_loss": target,
               "seconds": time.perf_counter() - t0, "evals": 1, "stage": 1}
    if report:
        report(metrics)
    return metrics


def quick_trial(cfg, data_dir, score_dirs, trial_dir, *, report=None, evaluate_each_stage=False, **_):
    trial_dir = Path(trial_dir)
    _mark(trial_dir)
    marker = trial_dir.parent.parent / f"FAIL_M{cfg.curriculum.m}"
    if marker.exists():
        marker.unlink()
        raise RuntimeError(f"injected failure for curriculum.m={cfg.curriculum.m}")
    stages = [1, 2] if cfg.tune.stage2 else [1]
    metrics = {}
    for evals, stage in enumerate(stages, start=1):
        if stage != stages[-1] and not evaluate_each_stage:
            continue
        value = _objective(cfg) - (evals - 1) * 0.1
        loss = -value
        metrics = {"objective": loss if cfg.tune.objective == "val_loss" else value, "psum": 10.0 + value,
                   "nsum": 10.0, "final_val_loss": loss,
                   "seconds": 0.01, "evals": evals, "stage": stage}
        if report:
            report(metrics)
    return metrics


def seeded_trial(cfg, data_dir, score_dirs, trial_dir, *, report=None, **_):
    """One run of a seed (`irgpt tune --seeds`): objective = the config's + 0.1 x seed."""
    assert cfg.curriculum.seed == cfg.train.seed, "a seed sets train.seed and curriculum.seed"
    _mark(Path(trial_dir))
    value = _objective(cfg) + 0.1 * cfg.train.seed
    metrics = {"objective": value, "psum": 10.0 + value, "nsum": 10.0, "nsum_median": 9.0, "final_val_loss": -value,
               "seconds": 0.01, "evals": 1, "stage": 1}
    if report:
        report(metrics)
    return metrics
