"""`make experiment`: does the curriculum help? Tables 3 and 4 over seeds, honestly reported.

    result = run_experiment(load_config("configs/experiment.yaml"))

1. Data and scores: the pipeline's `synth`, `fe_train`, `score_l1` and
   `score_l2` stages under RUN_DIR (reused when up to date).
2. Stage 1 for every ablation row and seed (`irgpt ablate` with
   `experiment.seeds`, stage 2 off): held-out loss and retrieval on the clean
   held-out captions, the unigram baseline, paired differences from the
   no-curriculum row (ablate.py).
3. Stage 2 and the benchmark for `experiment.stage2_rows` x `stage2_seeds`,
   each starting from that row's stage-1 model, beside two image-blind
   baselines on the same benchmark rows: uniform chance (1 / number of
   options) and the prior (every question answered with its task's most
   frequent training answer).
4. `experiment.out` (docs/experiments.md) and RUN_DIR/experiment/: both
   tables, the stage-2 check, the scale and the wall time of every part.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from irgpt.config import Config, config_hash, to_dict
from irgpt.data.io import atomic_write_bytes, atomic_write_json
from irgpt.errors import CommandError
from irgpt.ray_utils import log0
from irgpt.tune.ablate import BY_NAME, METRICS_FILE, ablation_rows, row_config, run_ablation

PREP_STAGES = ["synth", "fe_train", "score_l1", "clip_warmup", "score_l2"]
STAGE2_FILE = "stage2_check.json"
CHECK_TASKS = ("scene", "recognition", "aerial_counting", "pedestrian_counting")
"""The tasks whose above-baseline result says stage 2 learnt something (issue's bar)."""


def prepare(cfg: Config) -> dict:
    """The pipeline's data and scoring stages (reused when their keys match)."""
    from irgpt.pipeline import run_pipeline
    from irgpt.tune.space import apply_overrides

    record = run_pipeline(apply_overrides(cfg, {"run.stages": PREP_STAGES}, source="experiment"))
    return {s["name"]: s.get("seconds") for s in record["stages"]}


def prior_baseline(data_dir: Path, rows) -> dict:
    """Image-blind baselines on the benchmark rows `rows` (see module doc)."""
    from irgpt.eval import parse
    from irgpt.eval.readers import Sample
    from irgpt.eval.run import benchmark_rows as bench_rows
    from irgpt.eval.score import score_all

    train = bench_rows(data_dir, "train")
    common = {task: Counter(r.answer for r in train if r.task == task).most_common(1)[0][0]
              for task in {r.task for r in train}}
    samples = [Sample(id=r.id, answer=r.answer, question=r.question, task=r.task) for r in rows]
    prior = score_all(samples, {r.id: common.get(r.task, "") for r in rows})
    chance = {}
    for task in ("scene", "recognition", "relationship"):
        mine = [r for r in rows if r.task == task]
        if mine:
            sizes = [len(parse.parse_options(r.question)) or 2 for r in mine]  # yes/no: 2
            chance[task] = 100.0 * sum(1.0 / n for n in sizes) / len(sizes)
    return {"prior": {t: res["score"] for t, res in prior["tasks"].items()}, "chance": chance,
            "prior_psum": prior["psum"], "prior_nsum": prior["nsum"], "prior_nsum_median": prior["nsum_median"]}


def stage2_check(cfg: Config, base: Config, ablation_dir: Path, row: str, seed: int, same_as: dict) -> dict:
    """Stage 2 + benchmark from one row's stage-1 model; reused when its record matches."""
    from irgpt.eval.run import run_benchmark
    from irgpt.train.trainer import run_stage

    source = same_as.get(row) or row
    trial_dir = ablation_dir / "runs" / f"{source}-seed{seed}"
    stage1 = json.loads((trial_dir / METRICS_FILE).read_text())
    rcfg = row_config(base, BY_NAME[row], seed)
    key = {"config_hash": config_hash(rcfg), "stage1_model": stage1["model"], "eval_limit": cfg.experiment.eval_limit}
    path = trial_dir / STAGE2_FILE
    if path.is_file():
        done = json.loads(path.read_text())
        if done.get("key") == key:
            log0(f"[experiment] stage 2 {row} seed {seed}: reusing {path}")
            return done
    t0 = time.perf_counter()
    summary = run_stage(rcfg, 2, cfg.data_dir.resolve(), None, trial_dir / "train", Path(stage1["model"]))
    report = run_benchmark(rcfg, summary["model"], cfg.data_dir.resolve(), trial_dir / "eval_stage2",
                           split="benchmark", limit=cfg.experiment.eval_limit)
    out = {"key": key, "row": row, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
           "initial_val_loss": summary["initial_val_loss"], "final_val_loss": summary["final_val_loss"],
           "unigram_val_loss": summary.get("unigram_val_loss"), "steps": summary["steps"],
           **{k: report[k] for k in ("psum", "nsum", "nsum_median", "far_off_share", "n")},
           "tasks": {t: {k: r[k] for k in ("score", "n", "parse_rate")} for t, r in report["tasks"].items()}}
    atomic_write_json(path, out)
    return out


def run_experiment(cfg: Config, out: str | Path | None = None) -> dict:
    """Steps 1-4 of the module doc; returns the result (also RUN_DIR/experiment/experiment.json)."""
    from irgpt.eval.run import benchmark_rows as bench_rows

    ex = cfg.experiment
    ablation_rows(ex.rows)  # unknown row names fail before any work
    bad = [r for r in ex.stage2_rows if r not in BY_NAME]
    if bad:
        raise CommandError(f"experiment.stage2_rows: unknown row(s) {bad}; rows: {list(BY_NAME)}")
    run_dir = cfg.run_dir.resolve()
    t0 = time.perf_counter()
    log0(f"[experiment] {run_dir}: data and scores")
    prep = prepare(cfg)
    t_prep = time.perf_counter() - t0
    ablation_dir = run_dir / "ablation"
    rows = list(ex.rows or BY_NAME)
    for r in ex.stage2_rows:  # a stage-2 row needs its stage-1 runs
        if r not in rows:
            rows.append(r)
    log0(f"[experiment] stage 1: {len(rows)} rows x seeds {ex.seeds}")
    ablation = run_ablation(cfg, cfg.data_dir, None, ablation_dir, rows=rows, seeds=ex.seeds, steps=ex.steps,
                            stage2=False)
    t_ablation = time.perf_counter() - t0 - t_prep
    same_as = {r["name"]: r["same_as"] for r in ablation["rows"] if r["same_as"]}
    base = _ablation_base(cfg, ex.steps)
    checks = [stage2_check(cfg, base, ablation_dir, row, seed, same_as)
              for row in ex.stage2_rows for seed in ex.stage2_seeds]
    baseline = prior_baseline(cfg.data_dir.resolve(), bench_rows(cfg.data_dir.resolve(), "benchmark",
                                                                limit=ex.eval_limit))
    t_stage2 = time.perf_counter() - t0 - t_prep - t_ablation
    result = {"config": to_dict(cfg), "config_hash": config_hash(cfg), "ablation": _strip(ablation),
              "stage2": checks, "baseline": baseline,
              "seconds": {"prepare": round(t_prep, 1), "stage1_rows": round(t_ablation, 1),
                          "stage2": round(t_stage2, 1), "total": round(time.perf_counter() - t0, 1)},
              "prepare_stages": prep}
    md = markdown(result, ablation["markdown"])
    exp_dir = run_dir / "experiment"
    exp_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(exp_dir / "experiment.json", result)
    atomic_write_bytes(exp_dir / "experiments.md", md.encode("utf-8"))
    target = Path(out or ex.out)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, md.encode("utf-8"))
    log0(f"[experiment] done in {result['seconds']['total']:.0f}s; wrote {target} and {exp_dir}")
    return {**result, "markdown": md, "files": [str(target), str(exp_dir / "experiment.json")]}


def _ablation_base(cfg: Config, steps: int | None) -> Config:
    from irgpt.tune.driver import absolute_paths, with_trial_budget

    return with_trial_budget(absolute_paths(cfg), steps)


def _strip(ablation: dict) -> dict:
    return {k: v for k, v in ablation.items() if k not in ("markdown", "files")}


def _pct(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def markdown(result: dict, tables: str) -> str:
    """docs/experiments.md: scale, the two tables, the stage-2 check, wall times."""
    cfg, sec = result["config"], result["seconds"]
    synth, s1 = cfg["data"]["synth"], cfg["train"]["stage1"]
    lines = [
        "# Does the curriculum help? Tables 3 and 4 on synthetic ground truth",
        "",
        "Written by `make experiment` (`jobs/experiment.py --config configs/experiment.yaml`); "
        f"config hash `{result['config_hash']}`. Do not edit by hand: rerun the command.",
        "",
        f"Scale: {synth['num_samples']} synthetic scenes of {synth['image_size']} px "
        f"({100 * synth['misaligned_fraction']:.0f}% of captions misaligned), the tiny VLM (random init; its LLM "
        f"text warm-started for {cfg['train']['tiny_lm']['steps']} steps, train.tiny_lm), stage 1 "
        + ("training vision encoder, projector and LLM (train.stage1.train_llm) " if s1["train_llm"] else
           "training vision encoder and projector ")
        + f"at lr {s1['lr']} for {s1['epochs']} epoch(s) of global batch {s1['global_batch_size']} on "
        f"{cfg['train']['num_workers']} Ray Train worker(s); curriculum M={cfg['curriculum']['m']}. "
        f"Wall time {sec['total'] / 60:.1f} min: data and scores {sec['prepare']:.0f} s, stage 1 for every "
        f"row and seed {sec['stage1_rows']:.0f} s, stage 2 and the benchmark {sec['stage2']:.0f} s.",
        "",
        tables.split("\n", 2)[2] if tables.startswith("# ") else tables,
        "",
        "## Stage 2 and the benchmark",
        "",
    ]
    checks, base = result["stage2"], result["baseline"]
    if not checks:
        lines.append("Stage 2 was not run (experiment.stage2_rows is empty).")
        return "\n".join(lines) + "\n"
    tasks = [t for t in ("scene", "recognition", "grounding", "relationship", "reid", "security", "location",
                         "aerial_counting", "pedestrian_counting") if any(t in c["tasks"] for c in checks)]
    lines += [
        "Stage 2 (instruction tuning) from the stage-1 model of the rows below, then the benchmark split "
        f"({checks[0]['n']} rows). Accuracy % (higher is better) for Scene .. Security, mean error (lower is "
        "better) for Location and the counts. Baselines see no image: *chance* answers uniformly among the "
        "options; *prior* gives every question its task's most frequent training answer.",
        "",
        "| run | " + " | ".join(tasks) + " | psum | nsum | nsum median |",
        "|---|" + "---:|" * (len(tasks) + 3),
    ]
    for c in checks:
        lines.append(f"| {c['row']} seed {c['seed']} | " + " | ".join(_pct(c["tasks"].get(t, {}).get("score"))
                                                                   for t in tasks)
                     + f" | {_pct(c['psum'])} | {_pct(c['nsum'])} | {_pct(c['nsum_median'])} |")
    lines.append("| prior (no image) | " + " | ".join(_pct(base["prior"].get(t)) for t in tasks)
                 + f" | {_pct(base['prior_psum'])} | {_pct(base['prior_nsum'])} | {_pct(base['prior_nsum_median'])} |")
    lines.append("| chance (uniform) | " + " | ".join(_pct(base["chance"].get(t)) for t in tasks) + " | | | |")
    lines += ["", *_stage2_verdicts(checks, base), ""]
    return "\n".join(lines) + "\n"


def _stage2_verdicts(checks: list[dict], base: dict) -> list[str]:
    """Per check task: above the better image-blind baseline or not, in words."""
    out = []
    for c in checks:
        said = []
        for t in CHECK_TASKS:
            score = c["tasks"].get(t, {}).get("score")
            if score is None:
                continue
            if t in ("scene", "recognition"):
                bar = max(v for v in (base["chance"].get(t), base["prior"].get(t)) if v is not None)
                said.append(f"{t} {score:.1f}% vs {bar:.1f}% ({'above' if score > bar else 'not above'})")
            else:
                bar = base["prior"].get(t)
                if bar is not None:
                    said.append(f"{t} error {score:.2f} vs prior {bar:.2f} "
                                f"({'better' if score < bar else 'not better'})")
        out.append(f"- {c['row']} seed {c['seed']}: " + "; ".join(said) + ".")
    return out
