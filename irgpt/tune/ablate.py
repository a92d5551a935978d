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
paper's published numbers (InternVL2-8B on the real benchmark, docs/method.md) for
reference only: a tiny random-init model on synthetic data is not comparable
in value, only in the direction of the differences, if any.
"""

from __future__ import annotations

import json
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
from irgpt.tune.stats import paired, spread
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
REFERENCE = "none"
"""Paired differences are taken against the no-curriculum row, seed by seed."""
METRICS = ("heldout_loss", "retrieval_r1", "psum", "nsum", "nsum_median", "final_val_loss", "seconds")
"""heldout_loss / retrieval_r1: stage 1 on the clean held-out captions (lower / higher is
better); psum, nsum, nsum_median: the benchmark after stage 2; final_val_loss: the
last stage's validation loss; seconds: the run's wall time."""


def row_metrics(metrics: dict) -> dict:
    """The table's figures of one run (a trial's metrics.json)."""
    s1 = (metrics.get("stages") or {}).get("stage1") or {}
    return {"heldout_loss": s1.get("final_val_loss", metrics.get("final_val_loss")),
            "retrieval_r1": s1.get("final_retrieval_r1"),
            "initial_heldout_loss": s1.get("initial_val_loss"), "initial_retrieval_r1": s1.get("initial_retrieval_r1"),
            "unigram_loss": s1.get("unigram_val_loss"), "rows_seen_per_tier": s1.get("rows_seen_per_tier"),
            "budget_fraction": s1.get("budget_fraction"),
            **{k: metrics.get(k) for k in ("psum", "nsum", "nsum_median", "final_val_loss", "steps", "seconds")}}


def row_config(cfg: Config, row: Row, seed: int) -> Config:
    keys = {f"curriculum.{k}": v for k, v in row.overrides.items()}
    keys.update({"train.seed": seed, "curriculum.seed": seed})
    return apply_overrides(cfg, keys, source=f"ablation row {row.name}")


def ablation_rows(names: Sequence[str] | None) -> list[Row]:
    if not names:
        return list(ROWS)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise CommandError(f"unknown ablation row(s) {unknown}; rows: {list(BY_NAME)}")
    return [BY_NAME[n] for n in names]


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
    chosen = ablation_rows(rows)
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
                # The benchmark needs stage 2: a stage-1 model has never seen an instruction.
                metrics = fn(rcfg, data_dir, score_dirs, trial_dir, base_model=base_model, stage2=stage2,
                             eval_split=split, eval_limit=eval_limit, benchmark=stage2)
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
    figures = {r.name: {seed: row_metrics(m) for seed, m in per_row[r.name].items()} for r in chosen}
    reference = figures.get(REFERENCE)
    rows = []
    for row in chosen:
        by_seed = figures[row.name]
        entry = {
            "name": row.name, "table": row.table, "label": row.label, "overrides": row.overrides,
            "same_as": same_as.get(row.name), "seeds": {str(s): m for s, m in by_seed.items()},
            **{k: spread([m.get(k) for m in by_seed.values()]) for k in METRICS},
            "paper": {"psum": row.paper[0], "nsum": row.paper[1]},
        }
        if reference is not None and row.name != REFERENCE:
            entry["vs_" + REFERENCE] = {k: paired({s: m.get(k) for s, m in by_seed.items()},
                                                 {s: m.get(k) for s, m in reference.items()})
                                        for k in ("heldout_loss", "retrieval_r1", "psum", "nsum_median")}
        rows.append(entry)
    every = [m for r in figures.values() for m in r.values()]
    return {"rows": rows, "seeds": seeds, "split": split, "eval_limit": eval_limit, "stage2": stage2,
            "steps": steps, "config_hash": config_hash(cfg),
            "unigram_loss": spread([m.get("unigram_loss") for m in every]),
            "initial_heldout_loss": spread([m.get("initial_heldout_loss") for m in every]),
            "initial_retrieval_r1": spread([m.get("initial_retrieval_r1") for m in every]),
            "note": "paper: InternVL2-8B fine-tuned on the real benchmark (Tables 3-4); ours: the configured "
                    "model and data at the given budget. Compare directions, not values."}


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cell(s: dict, digits: int = 2) -> str:
    """mean, then [95% interval] when there is one (more than one seed)."""
    if s["mean"] is None:
        return "-"
    text = f"{s['mean']:.{digits}f}"
    if s.get("ci95"):
        text += f" [{s['ci95'][0]:.{digits}f}, {s['ci95'][1]:.{digits}f}]"
    return text


def _diff(d: dict | None, digits: int) -> str:
    if not d or d["mean"] is None:
        return "-"
    text = f"{d['mean']:+.{digits}f}"
    if d.get("ci95"):
        text += f" [{d['ci95'][0]:+.{digits}f}, {d['ci95'][1]:+.{digits}f}]"
        text += " (noise)" if d["within_noise"] else ""
    return text


def _verdicts(rows: list[dict]) -> list[str]:
    """One sentence per row with a paired difference: beyond noise or not, in words."""
    out = []
    for r in rows:
        d = (r.get("vs_" + REFERENCE) or {}).get("heldout_loss")
        if not d or d["mean"] is None:
            continue
        if d["within_noise"] is None:
            out.append(f"- {r['label']}: {d['mean']:+.4f} held-out loss vs no curriculum, one seed: no interval.")
        elif d["within_noise"]:
            out.append(f"- {r['label']}: no difference in held-out loss beyond noise ({d['mean']:+.4f}, "
                       f"95% interval [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] holds 0).")
        else:
            better = "lower (better)" if d["mean"] < 0 else "higher (worse)"
            out.append(f"- {r['label']}: held-out loss {better} than no curriculum beyond noise ({d['mean']:+.4f}, "
                       f"95% interval [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]).")
    return out


def markdown(result: dict) -> str:
    """Table 3 and Table 4 in the paper's layout, the paper's figures beside ours (means [95% intervals])."""
    seeds, stage2 = result["seeds"], result["stage2"]
    uni, init = result["unigram_loss"], result["initial_heldout_loss"]
    lines = ["# Ablations (paper Tables 3 and 4) at small scale",
             "",
             f"Seeds {seeds}; means with [95% t-intervals] over seeds; Δ = the row minus the no-curriculum row of "
             f"the same seed (paired), \"(noise)\" where its interval holds 0. Budget: "
             + (f"about {result['steps']} optimizer steps per stage, every tier shrunk alike. " if result["steps"]
                else "the config's full epochs. ") +
             f"Held-out: stage 1's mean answer-token loss on the clean held-out captions (lower is better; "
             f"before stage 1 {_num(init['mean'], 4)}, unigram baseline {_num(uni['mean'], 4)}) and image-to-caption "
             f"R@1 among them (higher is better; before stage 1 {_num(result['initial_retrieval_r1']['mean'], 3)}). "
             + (f"psum / nsum on the `{result['split']}` split (first {result['eval_limit'] or 'all'} rows) after "
                "stage 2; nsum_median is the robust companion of nsum. " if stage2 else
                "Stage 2 off: no benchmark columns. ") + result["note"], ""]
    titles = {3: "Table 3: lessons and weights", 4: "Table 4: schedules (full method)"}
    bench_head = " psum | nsum | nsum median | Δ psum |" if stage2 else ""
    for table in (3, 4):
        rows = [r for r in result["rows"] if r["table"] == table]
        if not rows:
            continue
        lines += [f"## {titles[table]}", "",
                  "| row | paper psum | paper nsum | held-out loss | Δ loss | R@1 | Δ R@1 |" + bench_head + " wall s |",
                  "|---|---|---|---|---|---|---|" + ("---|" * 4 if stage2 else "") + "---|"]
        for r in rows:
            label = r["label"] + (f" (= {r['same_as']})" if r["same_as"] else "")
            vs = r.get("vs_" + REFERENCE) or {}
            cells = [label, f"{r['paper']['psum']:.2f}", f"{r['paper']['nsum']:.2f}", _cell(r["heldout_loss"], 4),
                     _diff(vs.get("heldout_loss"), 4), _cell(r["retrieval_r1"], 3), _diff(vs.get("retrieval_r1"), 3)]
            if stage2:
                cells += [_cell(r["psum"]), _cell(r["nsum"]), _cell(r["nsum_median"]), _diff(vs.get("psum"), 2)]
            cells.append(_num(r["seconds"]["mean"], 0))
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", *_verdicts(rows), ""]
    return "\n".join(lines)
