"""`irgpt tune`: Ray Tune over a search space, each trial = tier + train + evaluate.

    summary = run_tune(cfg, "runs/demo/data", ["runs/demo/scores_l1", "runs/demo/scores_l2"],
                       "runs/demo/tune", space="tune_spaces/tiers.yaml", trial_steps=20)

- The trainable is a function (Train V2: `Tuner(TorchTrainer)` is refused)
  holding `resources.TRIAL_RESOURCES`; it applies the trial's sampled values to
  the base config and calls `trial.run_trial`, which runs the stages as
  `TorchTrainer`s with `StageReportCallback` and reports the objective with
  `ray.tune.report`.
- `TuneConfig(num_samples, max_concurrent_trials = resources.plan_concurrency,
  scheduler = ASHA on the `evals` axis when `tune.scheduler: asha`,
  search_alg = OptunaSearch when `tune.search: optuna`, metric="objective",
  mode)`; `RunConfig(name="tune", storage_path=OUT/ray)`.
- Every trial starts from the same base model, built once on the driver at
  `OUT/base` (unless the space searches `train.seed` / `train.model`).
- `OUT/tune_args.json` records the inputs; `resume=True` checks they match
  and continues with `Tuner.restore(OUT/ray/tune, resume_unfinished=True,
  restart_errored=True)`: finished trials are kept, unfinished and errored
  ones run again from their start, never-started ones run.
- Results: `results.py` (trials.csv, trials.parquet, best.yaml).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from irgpt.config import Config, config_hash
from irgpt.data.io import atomic_write_json, read_manifest
from irgpt.errors import CommandError
from irgpt.ray_utils import ensure_ray, log0
from irgpt.tune.space import Space, apply_overrides, load_space
from irgpt.tune.trial import EVAL_LIMIT, METRICS_FILE, objective_mode, reportable, run_trial

EXPERIMENT = "tune"
ARGS_FILE = "tune_args.json"
TRIALS_DIR = "trials"
BASE_KEYS = ("train.seed", "train.model", "train.trust_remote_code")
"""Searching any of these makes every trial build its own base model."""


def default_paths(cfg: Config) -> tuple[Path, list[Path], Path]:
    """data, score tables and output of a pipeline run: RUN_DIR/{data, scores_l1, scores_l2, tune}."""
    return cfg.data_dir, [cfg.run_dir / "scores_l1", cfg.run_dir / "scores_l2"], cfg.run_dir / "tune"


def with_trial_budget(cfg: Config, steps: int | None) -> Config:
    """Cap both stages at `steps` optimizer steps inside trials (best.yaml keeps the base's)."""
    if steps is None:
        return cfg
    if steps < 1:
        raise CommandError(f"--trial-steps must be >= 1, got {steps}")
    t = cfg.train
    return replace(cfg, train=replace(t, stage1=replace(t.stage1, max_steps=steps),
                                      stage2=replace(t.stage2, max_steps=steps)))


def absolute_paths(cfg: Config) -> Config:
    """Local paths in the config made absolute: Tune runs a trial in its own working directory."""
    def fix(value: str | None) -> str | None:
        if not value or "://" in value or Path(value).is_absolute():
            return value
        return str(Path(value).resolve())

    model = cfg.train.model if cfg.train.model == "tiny" else fix(cfg.train.model)
    return replace(cfg, data=replace(cfg.data, dir=fix(cfg.data.dir)),
                   train=replace(cfg.train, model=model, storage_path=fix(cfg.train.storage_path)),
                   eval=replace(cfg.eval, bench_dir=fix(cfg.eval.bench_dir)), run=replace(cfg.run, root=fix(cfg.run.root)))


@dataclass
class TrialSetup:
    """Everything a trial needs besides its sampled values (pickled into the trainable)."""

    base: dict
    data_dir: str
    score_dirs: list[str]
    trials_dir: str
    encoded: frozenset = field(default_factory=frozenset)
    base_model: str | None = None
    eval_limit: int | None = EVAL_LIMIT
    evaluate_each_stage: bool = False
    trial_fn: Callable | None = None
    seeds: list[int] = field(default_factory=list)
    """Repeat each trial over these seeds (`--seeds`); empty = one run with the config's seed."""
    seed_models: dict = field(default_factory=dict)
    """seed (as text) -> base model directory, when the seeds share no base model."""


def seed_summary(runs: list[dict], seeds: Sequence[int]) -> dict:
    """One trial's runs over seeds: the mean of every reported figure, the objective's spread
    (sample std and 95% t-interval) and each seed's own metrics."""
    import math

    from irgpt.tune.stats import spread

    out: dict = {"seeds": len(runs), "per_seed": {str(s): r for s, r in zip(seeds, runs)}}
    for key in ("objective", "psum", "nsum", "nsum_median", "far_off_share", "final_val_loss",
                "initial_val_loss", "unigram_val_loss", "final_retrieval_r1", "steps", "eval_rows"):
        out[key] = spread([r.get(key) for r in runs])["mean"]
    objective = spread([r.get("objective") for r in runs])
    out["objective_std"] = objective["std"]
    out["objective_ci_low"], out["objective_ci_high"] = objective["ci95"] or (None, None)
    out["evals"] = min(int(r.get("evals") or 0) for r in runs)
    out["stage"] = max(int(r.get("stage") or 0) for r in runs)
    out["seconds"] = math.fsum(float(r.get("seconds") or 0.0) for r in runs)
    return out


def make_trainable(setup: TrialSetup):
    """The function trainable (named `irgpt_trial`: `Tuner.restore` checks the name)."""

    def irgpt_trial(config: dict) -> None:
        import ray.data
        from ray import tune

        from irgpt.tune.callbacks import stage_callbacks

        ray.data.DataContext.get_current().enable_progress_bars = False  # a trial's log is no terminal

        cfg = apply_overrides(Config.from_dict(setup.base), config, setup.encoded)
        trial_dir = Path(setup.trials_dir) / tune.get_context().get_trial_id()
        fn = setup.trial_fn or run_trial
        if not setup.seeds:
            fn(cfg, setup.data_dir, setup.score_dirs, trial_dir, base_model=setup.base_model,
               eval_limit=setup.eval_limit, evaluate_each_stage=setup.evaluate_each_stage,
               report=tune.report, train_callbacks=stage_callbacks)
            return
        runs = []
        for seed in setup.seeds:  # one run per seed, one report of their mean (Tune ranks by it)
            seeded = apply_overrides(cfg, {"train.seed": seed, "curriculum.seed": seed}, source=f"seed {seed}")
            runs.append(fn(seeded, setup.data_dir, setup.score_dirs, trial_dir / f"seed{seed}",
                           base_model=setup.seed_models.get(str(seed), setup.base_model),
                           eval_limit=setup.eval_limit, train_callbacks=stage_callbacks))
        summary = seed_summary(runs, setup.seeds)
        atomic_write_json(trial_dir / METRICS_FILE, summary)
        tune.report(reportable(summary))

    return irgpt_trial


def check_search(cfg: Config, space: Space) -> None:
    """Fail at once (no Ray import) when `tune.search=optuna` cannot run."""
    if cfg.tune.search != "optuna":
        return
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        raise CommandError("tune.search=optuna needs Optuna, an optional extra: pip install 'irgpt[tune]' "
                           "(or pip install optuna); or use tune.search=random")
    if space.has_grid:
        raise CommandError(f"{space.path}: Optuna cannot search a grid (type: grid); use choice, or tune.search=random")


def _search(cfg: Config, space: Space, metric: str, mode: str, concurrency: int):
    """The search algorithm. Tune ignores `max_concurrent_trials` for a `SearchGenerator`
    such as `BasicVariantGenerator`, so random search carries the limit itself."""
    check_search(cfg, space)
    if cfg.tune.search == "random":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(random_state=cfg.run.seed, max_concurrent=concurrency)
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(metric=metric, mode=mode, seed=cfg.run.seed)


def _scheduler(cfg: Config, planned_evals: int):
    if cfg.tune.scheduler == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    if planned_evals < 2:
        log0("[tune] ASHA: one evaluation per trial (tune.stage2 is false), so it has nothing to stop early")
    return ASHAScheduler(time_attr="evals", max_t=planned_evals, grace_period=1, reduction_factor=2)


def _check_inputs(data_dir: Path, score_dirs: Sequence[Path]) -> None:
    read_manifest(data_dir)
    if not score_dirs:
        raise CommandError("give the score tables: --scores L1_DIR --scores L2_DIR")
    for d in score_dirs:
        read_manifest(d)


def _args_record(cfg, data_dir, score_dirs, space, trial_steps, eval_limit) -> dict:
    return {"config_hash": config_hash(cfg), "data_dir": str(data_dir), "score_dirs": [str(d) for d in score_dirs],
            "space": space.path, "space_keys": space.keys, "trial_steps": trial_steps, "eval_limit": eval_limit,
            "config": cfg.to_dict()}


def run_tune(cfg: Config, data_dir: str | Path | None = None, score_dirs: Sequence[str | Path] | None = None,
             out_dir: str | Path | None = None, *, space: str | Path | None = None, resume: bool = False,
             trial_steps: int | None = None, eval_limit: int | None = EVAL_LIMIT, stop_after: int | None = None,
             base_model: str | Path | None = None, trial_fn: Callable | None = None,
             seeds: Sequence[int] | None = None) -> dict:
    """Run (or `resume`) the experiment; write the results; return a summary (see module doc).

    `seeds`: repeat every trial over these seeds (setting `train.seed` and
    `curriculum.seed`); the trial reports the mean objective and its interval.

    Paths default to `default_paths(cfg)`; `space` to `tune.space`.
    `trial_fn` replaces `run_trial` (same signature), e.g. in tests.
    """
    d_data, d_scores, d_out = default_paths(cfg)
    data_dir = Path(data_dir or d_data).resolve()
    score_dirs = [Path(d).resolve() for d in (score_dirs or d_scores)]
    out_dir = Path(out_dir or d_out).resolve()
    cfg = absolute_paths(cfg)
    space = load_space(space or cfg.tune.space, cfg)
    metric, mode = "objective", objective_mode(cfg.tune.objective)
    planned_evals = 2 if cfg.tune.stage2 else 1
    if not resume:  # fail in a second on a missing optional extra, before Ray is imported
        check_search(cfg, space)
    _check_inputs(data_dir, score_dirs)

    from ray import tune

    from irgpt.tune import results
    from irgpt.tune.callbacks import StopAfter
    from irgpt.tune.resources import TRIAL_RESOURCES, plan_concurrency

    exp_dir = out_dir / "ray" / EXPERIMENT
    seeds = list(dict.fromkeys(int(x) for x in seeds)) if seeds else []
    if seeds and {"train.seed", "curriculum.seed"} & set(space.keys):
        raise CommandError(f"--seeds repeats each trial over seeds; the space {space.path} searches a seed itself")
    record = {**_args_record(cfg, data_dir, score_dirs, space, trial_steps, eval_limit), "seeds": seeds}
    if resume:
        _check_resume(out_dir, exp_dir, record, stop_after)
    elif exp_dir.exists() and tune.Tuner.can_restore(str(exp_dir)):
        raise CommandError(f"{out_dir}: holds an earlier experiment; continue it with --resume, or use another --out")

    ensure_ray(cfg.ray)
    # Forwarded Train reports carry no `objective`; Tune's strict check would reject them (ASHA skips them).
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    out_dir.mkdir(parents=True, exist_ok=True)
    trial_cfg = with_trial_budget(cfg, trial_steps)
    seed_models: dict[str, str] = {}
    if base_model is None and not set(BASE_KEYS) & set(space.keys):
        from irgpt.train.trainer import prepare_base_model

        if seeds:  # train.seed sets the base model's init: one per seed, shared by every trial
            seed_models = {str(x): str(prepare_base_model(apply_overrides(trial_cfg, {"train.seed": x}), data_dir,
                                                          out_dir / "base" / f"seed{x}")) for x in seeds}
        else:
            base_model = prepare_base_model(trial_cfg, data_dir, out_dir / "base")
    setup = TrialSetup(base=trial_cfg.to_dict(), data_dir=str(data_dir), score_dirs=[str(d) for d in score_dirs],
                       trials_dir=str(out_dir / TRIALS_DIR), encoded=space.encoded,
                       base_model=str(base_model) if base_model else None, eval_limit=eval_limit,
                       evaluate_each_stage=planned_evals > 1 and cfg.tune.scheduler == "asha" and not seeds,
                       trial_fn=trial_fn, seeds=seeds, seed_models=seed_models)
    trainable = tune.with_resources(make_trainable(setup), TRIAL_RESOURCES)
    concurrency = plan_concurrency(cfg)
    t0 = time.perf_counter()
    if resume:
        log0(f"[tune] resuming {exp_dir}")
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True, restart_errored=True)
    else:
        atomic_write_json(out_dir / ARGS_FILE, record)
        n = cfg.tune.num_samples * space.grid_size()
        log0(f"[tune] {n} trial(s) over {space.keys} from {space.path}; objective {cfg.tune.objective} ({mode}); "
             f"scheduler {cfg.tune.scheduler}, search {cfg.tune.search}; {exp_dir}")
        tuner = tune.Tuner(
            trainable,
            param_space=space.param_space(),
            tune_config=tune.TuneConfig(
                num_samples=cfg.tune.num_samples, metric=metric, mode=mode,
                max_concurrent_trials=None if cfg.tune.search == "random" else concurrency,
                scheduler=_scheduler(cfg, planned_evals), search_alg=_search(cfg, space, metric, mode, concurrency)),
            run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(out_dir / "ray"),
                                      callbacks=[StopAfter(stop_after)] if stop_after else None,
                                      verbose=1),
        )
    grid = tuner.fit()
    rows = results.trial_rows(grid, space, planned_evals)
    files = results.write_table(out_dir, rows, space)
    best = results.best_row(rows, mode)
    if best is not None:
        best_cfg = results.best_config(cfg, best, space, data_dir)
        results.write_best_yaml(out_dir / "best.yaml", best_cfg, best, out_dir / TRIALS_DIR, cfg.tune.objective,
                                mode, len(rows))
        files.append(out_dir / "best.yaml")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "stopped", "error", "pending")}
    log0(f"[tune] {len(rows)} trial(s) {counts} in {time.perf_counter() - t0:.1f}s; best "
         + (f"{best['trial_id']} objective {best['objective']:.6g}" if best else "none") + f"; wrote {out_dir}")
    return {"experiment": str(exp_dir), "trials": rows, "best": best, "counts": counts,
            "concurrency": concurrency, "files": [str(f) for f in files], "seconds": time.perf_counter() - t0}


def _check_resume(out_dir: Path, exp_dir: Path, record: dict, stop_after: int | None) -> None:
    from ray import tune

    if stop_after:
        raise CommandError("--stop-after applies to a new experiment; --resume runs the rest to the end")
    if not tune.Tuner.can_restore(str(exp_dir)):
        raise CommandError(f"{out_dir}: no experiment to resume (no Tune state in {exp_dir})")
    args_path = out_dir / ARGS_FILE
    before = json.loads(args_path.read_text()) if args_path.is_file() else {}
    diffs = [k for k in ("config_hash", "data_dir", "score_dirs", "space_keys", "trial_steps", "eval_limit", "seeds")
             if before.get(k, [] if k == "seeds" else None) != record[k]]
    if diffs:
        raise CommandError(f"{out_dir}: the experiment was started with other inputs ({', '.join(diffs)} differ; "
                           f"see {args_path}); resume with the same --config/--set/--space/--data/--scores")
