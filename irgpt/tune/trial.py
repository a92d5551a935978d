"""One trial: re-tier from the stored scores, train a short stage 1 (+ stage 2), evaluate.

    metrics = run_trial(cfg, "runs/demo/data", ["runs/demo/scores_l1", "runs/demo/scores_l2"],
                        "runs/demo/tune/trials/abc_00000", base_model="runs/demo/tune/base")

The one code path behind `irgpt tune` (each Tune trial) and `irgpt ablate`
(each row x seed):

1. `build_tiers` from the stored score tables into `TRIAL/tiers` with the
   trial's curriculum (M, lambda, schedule, lessons, anti, weights) and its
   Eq. 5 options (`reweight=cfg.scoring.lesson2.weights`: the weights are
   recomputed from `alpha` with the whole table's medians). Scoring is never
   repeated: a re-tier of the demo data takes about a second.
2. `run_stage` stage 1 (and stage 2 when `stage2`) as a Ray Train
   `TorchTrainer` under `TRIAL/train` (its Ray Train storage is
   `TRIAL/train/ray`, or `train.storage_path/trials/<trial dir name>`).
   Inside Tune the trainer gets `StageReportCallback` so the loop's reports
   reach the trial (Train V2 pattern).
3. The objective (`tune.objective`): `benchmark_robust` (the default) = psum -
   nsum_median of `run_benchmark` on the `val` split (first `eval_limit` rows
   by id; the same rows for every trial): the sum of the nsum tasks' *median*
   errors, so one absurd count cannot decide a comparison; `benchmark` = psum
   - nsum, the authors' mean errors; or `val_loss` = the last stage's final
   validation loss (stage 1: the clean held-out captions; minimised).
   `evaluate_each_stage` also evaluates after stage 1, so ASHA can stop a
   trial before its stage 2.

Each evaluation goes to `report` (Tune: `ray.tune.report`) with `evals`
(1, 2, ...: ASHA's time axis), and `TRIAL/metrics.json` holds the last.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from irgpt.config import Config, config_hash
from irgpt.data.io import atomic_write_json
from irgpt.ray_utils import log0

EVAL_LIMIT = 128
"""Validation rows per evaluation (the first ones by id): a fixed, cheap set."""
METRICS_FILE = "metrics.json"
MODES = {"benchmark_robust": "max", "benchmark": "max", "val_loss": "min"}
"""Objective -> Tune `mode`: psum - nsum(_median) is higher-is-better, a loss lower-is-better."""


STAGE_KEYS = ("initial_val_loss", "final_val_loss", "unigram_val_loss", "initial_retrieval_r1",
              "final_retrieval_r1", "retrieval_candidates", "val_rows", "steps", "seconds", "samples_per_s",
              "budget_fraction", "tier_sizes", "rows_per_tier_per_epoch", "rows_seen_per_tier")
"""What a trial keeps of each stage's summary (train/trainer.py `run_stage`)."""
STAGE1_KEYS = ("unigram_val_loss", "initial_retrieval_r1", "final_retrieval_r1")
"""Stage-1 held-out figures a trial reports beside its objective (the ablation tables show them)."""


def objective_mode(objective: str) -> str:
    return MODES[objective]


def objective_value(objective: str, psum: float | None, nsum: float | None, val_loss: float | None,
                    nsum_median: float | None = None) -> float:
    """The number Tune optimises; NaN when its parts are missing."""
    if objective == "val_loss":
        return float(val_loss) if val_loss is not None else math.nan
    negative = nsum_median if objective == "benchmark_robust" else nsum
    if psum is None and negative is None:
        return math.nan
    return float(psum or 0.0) - float(negative or 0.0)


def trial_storage(cfg: Config, trial_dir: Path) -> str | None:
    """Each trial's own Ray Train storage, so trials never share `stage1/` run folders."""
    root = cfg.train.storage_path
    return f"{root.rstrip('/')}/trials/{trial_dir.name}" if root else None


def run_trial(cfg: Config, data_dir: str | Path, score_dirs: Sequence[str | Path], trial_dir: str | Path, *,
              base_model: str | Path | None = None, stage2: bool | None = None, eval_split: str = "val",
              eval_limit: int | None = EVAL_LIMIT, evaluate_each_stage: bool = False,
              benchmark: bool | None = None, report: Callable[[dict], None] | None = None,
              train_callbacks: Callable[[int], list] | None = None) -> dict:
    """Tier + train + evaluate one configuration; returns (and writes) its metrics (see module doc).

    `stage2` None = `cfg.tune.stage2`. `benchmark` None = run the benchmark
    only when the objective needs it (`irgpt ablate` always wants psum/nsum).
    `base_model` None = build one under `TRIAL/base` (`prepare_base_model`).
    `train_callbacks(stage)` gives the TorchTrainer callbacks for a stage
    (Tune: `StageReportCallback`).
    """
    from dataclasses import replace

    from irgpt.curriculum.tiers import build_tiers
    from irgpt.train.trainer import prepare_base_model, run_stage

    t0 = time.perf_counter()
    data_dir, trial_dir = Path(data_dir).resolve(), Path(trial_dir).resolve()
    trial_dir.mkdir(parents=True, exist_ok=True)
    # A restarted trial (resume, retry) starts its training from scratch: the
    # stage folders of an interrupted attempt would otherwise be resumed by Ray Train.
    shutil.rmtree(trial_dir / "train", ignore_errors=True)
    stage2 = cfg.tune.stage2 if stage2 is None else stage2
    benchmark = cfg.tune.objective.startswith("benchmark") if benchmark is None else benchmark
    cfg = replace(cfg, train=replace(cfg.train, storage_path=trial_storage(cfg, trial_dir)))

    manifest = build_tiers(data_dir, [Path(d).resolve() for d in score_dirs], trial_dir / "tiers", cfg.curriculum,
                           split="train", engine="auto", reweight=cfg.scoring.lesson2.weights, overwrite=True,
                           ray_cfg=cfg.ray)
    tier_seconds = time.perf_counter() - t0
    model = Path(base_model) if base_model else prepare_base_model(cfg, data_dir, trial_dir / "base")
    stages = [1, 2] if stage2 else [1]
    out: dict = {"config_hash": config_hash(cfg), "tier_sizes": manifest["tier_sizes"],
                 "tier_seconds": round(tier_seconds, 2), "stage2": stage2, "eval_limit": eval_limit, "stages": {}}
    for evals, stage in enumerate(stages, start=1):
        callbacks = train_callbacks(stage) if train_callbacks else None
        summary = run_stage(cfg, stage, data_dir, trial_dir / "tiers", trial_dir / "train", model, callbacks=callbacks)
        model = Path(summary["model"])
        out["stages"][f"stage{stage}"] = {k: summary.get(k) for k in STAGE_KEYS}
        if stage != stages[-1] and not evaluate_each_stage:
            continue
        out.update(_evaluate(cfg, model, data_dir, trial_dir / f"eval_stage{stage}", summary["final_val_loss"],
                             eval_split, eval_limit, benchmark))
        out.update({"evals": evals, "stage": stage, "model": str(model), "steps": summary["steps"],
                    "initial_val_loss": summary["initial_val_loss"],
                    **{k: out["stages"]["stage1"].get(k) for k in STAGE1_KEYS},
                    "seconds": round(time.perf_counter() - t0, 2)})
        atomic_write_json(trial_dir / METRICS_FILE, out)
        if report is not None:
            report(reportable(out))
        log0(f"[tune] {trial_dir.name}: stage {stage} objective {out['objective']:.4g} "
             f"(psum {out['psum']}, nsum {out['nsum']}, nsum_median {out['nsum_median']}, "
             f"val loss {out['final_val_loss']:.4f})")
    return out


def reportable(metrics: dict) -> dict:
    """The flat scalars a Tune result carries."""
    keys = ("objective", "objective_std", "objective_ci_low", "objective_ci_high", "seeds", "psum", "nsum",
            "nsum_median", "far_off_share", "final_val_loss", "initial_val_loss", *STAGE1_KEYS, "steps", "seconds",
            "evals", "stage", "eval_rows", "eval_seconds")
    return {k: (math.nan if metrics.get(k) is None else metrics[k]) for k in keys if k in metrics}


def _evaluate(cfg: Config, model: Path, data_dir: Path, out_dir: Path, val_loss: float, split: str,
              limit: int | None, benchmark: bool) -> dict:
    """psum / nsum on `split` (when `benchmark`) and the objective."""
    report: dict = {}
    if benchmark:
        from irgpt.eval.run import run_benchmark

        bench = data_dir if split == "val" else cfg.input_data(cfg.eval.bench_dir or data_dir, "eval.bench_dir").resolve()
        report = run_benchmark(cfg, model, bench, out_dir, split=split, limit=limit)
    psum, nsum, nsum_median = report.get("psum"), report.get("nsum"), report.get("nsum_median")
    tasks = {t: {"score": r["score"], "n": r["n"], "parse_rate": r["parse_rate"]}
             for t, r in report.get("tasks", {}).items()}
    return {"objective": objective_value(cfg.tune.objective, psum, nsum, val_loss, nsum_median), "psum": psum,
            "nsum": nsum, "nsum_median": nsum_median, "far_off_share": report.get("far_off_share"), "tasks": tasks,
            "final_val_loss": val_loss, "eval_rows": report.get("n", 0),
            "eval_seconds": round(report.get("seconds", 0.0), 2), "eval_split": split}
