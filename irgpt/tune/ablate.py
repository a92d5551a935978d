"""`irgpt ablate`: the structure of the paper's Table 3 and Table 4 at small scale.

    result = run_ablation(cfg, "runs/demo/data", ["runs/demo/scores_l1", "runs/demo/scores_l2"],
                          "runs/demo/ablation", seeds=(0, 1), steps=20)

Every row is the base config with the row's curriculum switches (`ROWS`, the
one table of row definitions) and the same seeds and step budget; each
(row, seed) is one `trial.run_trial` (re-tier from the stored scores, stage 1
(+ stage 2), psum / nsum on `split`), run one after another on the same Ray.
A seed sets `train.seed` (base model init, data order) and `curriculum.seed`
(the random order inside tiers); every row of a seed starts from the same
base model. Rows whose config is identical (Table 4's ascending-stratified-
random is Table 3's full method) run once and are reported in both tables.

`OUT/runs/<row>-seed<k>/` holds each run (tiers, models, metrics.json); a run
whose metrics.json matches its config is reused, so re-running continues an
interrupted ablation. `OUT/ablation.json` and `OUT/ablation.md` hold the
table: per row the mean and spread (min / max, sample std) over seeds, and the
paper's published numbers (InternVL2-8B on the real benchmark, METHOD.md) for
reference only: a tiny random-init model on synthetic data is not comparable
in value, only in the direction of the differences, if any.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from irgpt.config import Config, config_hash
from irgpt.data.io import atomic_write_bytes, atomic_write_json
from irgpt.errors import CommandError
from irgpt.ray_utils import ensure_ray, log0
from irgpt.tune.driver import absolute_paths, default_paths, with_trial_budget
from irgpt.tune.space import apply_overrides
from irgpt.tune.trial import EVAL_LIMIT, METRICS_FILE, run_trial, trial_storage


@dataclass(frozen=True)
class Row:
    name: str
    table: int
    """3 (lessons, weights) or 4 (schedules)."""
    label: str
    overrides: dict
    """Curriculum keys set for this row (the others keep the base config's values)."""
    paper: tuple[float, float]
    """Published (psum, nsum), fine-tuned InternVL2-8B (paper Table 3 / Table 4)."""


_SWITCHES = ("use_l1", "use_l2", "anti_l1", "anti_l2", "weights", "schedule")
_ASR = "ascending_stratified_random"


def _c(use_l1=True, use_l2=True, anti=False, weights=True, schedule=_ASR) -> dict:
    return {"use_l1": use_l1, "use_l2": use_l2, "anti_l1": anti, "anti_l2": anti, "weights": weights,
            "schedule": schedule}


ROWS: list[Row] = [
    Row("none", 3, "no curriculum", _c(weights=False, schedule="random"), (464.49, 26.85)),
    Row("l1", 3, "L1 only", _c(use_l2=False, weights=False), (470.23, 17.29)),
    Row("l2", 3, "L2 only", _c(use_l1=False, weights=False), (466.81, 19.33)),
    Row("l1_l2", 3, "L1 + L2", _c(weights=False), (481.36, 7.08)),
    Row("full", 3, "L1 + L2 + alpha weights (full)", _c(), (485.79, 4.39)),
    Row("anti", 3, "anti-L1 + anti-L2 + alpha", _c(anti=True), (433.24, 26.50)),
    Row("descending", 4, "descending", _c(schedule="descending"), (433.24, 26.50)),
    Row("ascending", 4, "ascending", _c(schedule="ascending"), (474.29, 19.24)),
    Row("random", 4, "random", _c(schedule="random"), (479.46, 12.94)),
    Row("asc_strat_random", 4, "ascending-stratified-random", _c(), (485.79, 4.39)),
]
"""Table 3 rows keep the default schedule; Table 4 rows keep the full method's
lessons and weights and change only the schedule. "No curriculum" = one
random order, no weights."""
BY_NAME = {r.name: r for r in ROWS}
METRICS = ("psum", "nsum", "final_val_loss")


def row_config(cfg: Config, row: Row, seed: int) -> Config:
    keys = {f"curriculum.{k}": v for k, v in row.overrides.items()}
    keys.update({"train.seed": seed, "curriculum.seed": seed})
    return apply_overrides(cfg, keys, source=f"ablation row {row.name}")


def select_rows(names: Sequence[str] | None) -> list[Row]:
    if not names:
        return list(ROWS)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise CommandError(f"unknown ablation row(s) {unknown}; rows: {list(BY_NAME)}")
    return [BY_NAME[n] for n in names]


def spread(values: list[float | None]) -> dict:
    """mean, sample std (None for one seed), min, max, n over the finite values."""
    vals = [float(v) for v in values if v is not None and v == v]
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None,
            "min": min(vals), "max": max(vals), "n": len(vals)}


def _reuse(trial_dir: Path, cfg: Config, split: str, eval_limit: int | None, stage2: bool) -> dict | None:
    """An earlier run of exactly this (row, seed, budget, evaluation), if it finished."""
    path = trial_dir / METRICS_FILE
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    want = {"config_hash": config_hash(replace(cfg, train=replace(cfg.train, storage_path=trial_storage(cfg, trial_dir)))),
            "eval_split": split, "eval_limit": eval_limit, "stage2": stage2, "evals": 2 if stage2 else 1}
    return metrics if all(metrics.get(k) == v for k, v in want.items()) else None


def run_ablation(cfg: Config, data_dir: str | Path | None = None, score_dirs: Sequence[str | Path] | None = None,
                 out_dir: str | Path | None = None, rows: Sequence[str] | None = None,
                 seeds: Sequence[int] = (0,), *, steps: int | None = None, split: str = "benchmark",
                 eval_limit: int | None = EVAL_LIMIT, stage2: bool | None = None,
                 trial_fn: Callable | None = None) -> dict:
    """Run every (row, seed), write OUT/ablation.{json,md}; return the JSON dict (+ markdown, files)."""
    d_data, d_scores, _ = default_paths(cfg)
    data_dir = Path(data_dir or d_data).resolve()
    score_dirs = [Path(d).resolve() for d in (score_dirs or d_scores)]
    out_dir = Path(out_dir or cfg.run_dir / "ablation").resolve()
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise CommandError("--seeds: give at least one seed")
    chosen = select_rows(rows)
    stage2 = cfg.tune.stage2 if stage2 is None else stage2
    base = with_trial_budget(absolute_paths(cfg), steps)
    fn = trial_fn or run_trial
    if trial_fn is None:  # a custom trial_fn (tests) sets up what it needs
        ensure_ray(cfg.ray)
    t0 = time.perf_counter()
    runs: dict[str, dict] = {}  # config hash -> metrics (identical rows run once)
    per_row: dict[str, dict[int, dict]] = {r.name: {} for r in chosen}
    same_as: dict[str, str] = {}
    for seed in seeds:
        seed_base = apply_overrides(base, {"train.seed": seed})
        base_model = None
        if trial_fn is None:
            from irgpt.train.trainer import prepare_base_model

            base_model = prepare_base_model(seed_base, data_dir, out_dir / "base" / f"seed{seed}")
        first_of: dict[str, str] = {}
        for row in chosen:
            rcfg = row_config(base, row, seed)
            key = config_hash(rcfg)
            if key in first_of:
                same_as[row.name] = first_of[key]
                per_row[row.name][seed] = runs[key]
                continue
            first_of[key] = row.name
            trial_dir = out_dir / "runs" / f"{row.name}-seed{seed}"
            metrics = _reuse(trial_dir.resolve(), rcfg, split, eval_limit, stage2)
            if metrics is None:
                log0(f"[ablate] row {row.name} seed {seed}: {row.overrides}")
                metrics = fn(rcfg, data_dir, score_dirs, trial_dir, base_model=base_model, stage2=stage2,
                             eval_split=split, eval_limit=eval_limit, benchmark=True)
            else:
                log0(f"[ablate] row {row.name} seed {seed}: reusing {trial_dir / METRICS_FILE}")
            runs[key] = metrics
            per_row[row.name][seed] = metrics
    result = _summarise(chosen, per_row, same_as, seeds, cfg, steps, split, eval_limit, stage2)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "ablation.json", result)
    md = markdown(result)
    atomic_write_bytes(out_dir / "ablation.md", md.encode("utf-8"))
    return {**result, "markdown": md, "files": [str(out_dir / "ablation.md"), str(out_dir / "ablation.json")]}


def _summarise(chosen, per_row, same_as, seeds, cfg, steps, split, eval_limit, stage2) -> dict:
    rows = []
    for row in chosen:
        by_seed = per_row[row.name]
        rows.append({
            "name": row.name, "table": row.table, "label": row.label, "overrides": row.overrides,
            "same_as": same_as.get(row.name),
            "seeds": {str(s): {k: m.get(k) for k in (*METRICS, "steps", "seconds")} for s, m in by_seed.items()},
            **{k: spread([m.get(k) for m in by_seed.values()]) for k in METRICS},
            "paper": {"psum": row.paper[0], "nsum": row.paper[1]},
        })
    return {"rows": rows, "seeds": seeds, "split": split, "eval_limit": eval_limit, "stage2": stage2,
            "steps": steps, "config_hash": config_hash(cfg),
            "note": "paper: InternVL2-8B fine-tuned on the real benchmark (Tables 3-4); ours: the configured "
                    "model and data at the given budget. Compare directions, not values."}


def _cell(s: dict, digits: int = 2) -> str:
    if s["mean"] is None:
        return "-"
    text = f"{s['mean']:.{digits}f}"
    if s["n"] > 1:
        text += f" ± {s['std']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"
    return text


def markdown(result: dict) -> str:
    """Two tables (Table 3, Table 4): ours (mean ± std [min, max] over seeds) beside the paper's."""
    seeds = result["seeds"]
    lines = ["# Ablations (paper Tables 3 and 4) at small scale",
             "",
             f"Seeds {seeds} (mean ± sample std [min, max] when more than one), psum / nsum on the "
             f"`{result['split']}` split (first {result['eval_limit'] or 'all'} rows), "
             f"{result['steps'] or 'config'} optimizer steps per stage, stage 2 {'on' if result['stage2'] else 'off'}. "
             "psum higher is better, nsum lower is better. " + result["note"], ""]
    titles = {3: "Table 3: lessons and weights", 4: "Table 4: schedules (full method)"}
    for table in (3, 4):
        rows = [r for r in result["rows"] if r["table"] == table]
        if not rows:
            continue
        lines += [f"## {titles[table]}", "",
                  "| row | psum (ours) | nsum (ours) | final val loss (ours) | psum (paper) | nsum (paper) |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            label = r["label"] + (f" (= {r['same_as']})" if r["same_as"] else "")
            lines.append(f"| {label} | {_cell(r['psum'])} | {_cell(r['nsum'])} | {_cell(r['final_val_loss'], 4)} | "
                         f"{r['paper']['psum']:.2f} | {r['paper']['nsum']:.2f} |")
        lines.append("")
    return "\n".join(lines)
