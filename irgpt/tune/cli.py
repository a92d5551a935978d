"""`irgpt tune` and `irgpt ablate` (cheap to import: argparse only; the work is in driver.py / ablate.py).

    irgpt tune --data runs/demo/data --scores runs/demo/scores_l1 --scores runs/demo/scores_l2 \\
        --out runs/demo/tune --space tune_spaces/default.yaml --trial-steps 20 [--resume]
    irgpt ablate --data runs/demo/data --scores runs/demo/scores_l1 --scores runs/demo/scores_l2 \\
        --out runs/demo/ablation --seeds 0,1 --steps 20
"""

from __future__ import annotations

import argparse

from irgpt.cli_util import add_config_arguments


def _inputs(p: argparse.ArgumentParser, out_default: str) -> None:
    p.add_argument("--data", help="samples dataset (default: data.dir, i.e. RUN_DIR/data)")
    p.add_argument("--scores", action="append", default=None, metavar="DIR",
                   help="a stored score table (Lesson 1, Lesson 2); give once per lesson "
                        "(default: RUN_DIR/scores_l1 and RUN_DIR/scores_l2)")
    p.add_argument("--out", help=f"output directory (default: {out_default})")
    p.add_argument("--eval-limit", type=int, default=None, metavar="N",
                   help="evaluation rows per trial, the first N by id (default 128; 0 = all)")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tune", help="Ray Tune over tiering and training options (re-tiers from the stored scores)",
        description="Each trial applies its sampled values to the config, re-tiers from the stored scores, "
                    "trains a short stage 1 (+ stage 2 with tune.stage2) on Ray Train and reports tune.objective "
                    "on the val split: psum - nsum_median (benchmark_robust, the default), psum - nsum "
                    "(benchmark) or the validation loss (val_loss). Writes OUT/trials.csv, "
                    "OUT/trials.parquet and OUT/best.yaml. See docs/tune.md.")
    _inputs(p, "RUN_DIR/tune")
    p.add_argument("--space", help="search space YAML (default: tune.space, tune_spaces/default.yaml)")
    p.add_argument("--trial-steps", type=int, default=None, metavar="N",
                   help="budget each trial's stages to about N optimizer steps by shrinking every tier alike "
                        "(the schedule is never cut; best.yaml keeps the config's own)")
    p.add_argument("--seeds", default=None,
                   help="repeat every trial over these comma-separated seeds and rank trials by the mean "
                        "objective (trials.csv shows its 95%% interval), e.g. 0,1,2")
    p.add_argument("--resume", action="store_true",
                   help="continue the experiment in --out: unfinished and errored trials run again")
    p.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="end the experiment after N finished trials (continue later with --resume)")
    add_config_arguments(p)
    p.set_defaults(func=_tune)

    a = subparsers.add_parser(
        "ablate", help="the paper's Table 3 / Table 4 ablations at small scale (same seeds and budget per row)",
        description="Rows: no curriculum, L1 only, L2 only, L1+L2, L1+L2+alpha (full), anti-L1+anti-L2+alpha "
                    "(Table 3) and descending / ascending / random / ascending-stratified-random (Table 4). "
                    "Each row re-tiers, trains with a fixed step budget and evaluates; OUT/ablation.md and "
                    "OUT/ablation.json hold the table, with the paper's numbers beside. See docs/tune.md.")
    _inputs(a, "RUN_DIR/ablation")
    a.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2 (default 0)")
    a.add_argument("--rows", help="comma-separated row names (default: all; see `irgpt ablate --list`)")
    a.add_argument("--steps", type=int, default=None, metavar="N",
                   help="budget: about N optimizer steps per stage for every row, every tier shrunk alike "
                        "(default: the config's max_steps / epochs)")
    a.add_argument("--split", default="benchmark", choices=["benchmark", "val"],
                   help="split for psum / nsum (default benchmark)")
    a.add_argument("--stage2", action=argparse.BooleanOptionalAction, default=None,
                   help="also run stage 2 in every row (default: tune.stage2)")
    a.add_argument("--list", action="store_true", help="print the rows and exit")
    add_config_arguments(a)
    a.set_defaults(func=_ablate)

    e = subparsers.add_parser(
        "experiment", help="does the curriculum help? Tables 3 and 4 over seeds, honestly reported",
        description="Data and scores (the pipeline's first stages), stage 1 for every ablation row and seed, "
                    "stage 2 + benchmark for experiment.stage2_rows, then a Markdown report with 95% "
                    "intervals and paired differences (default docs/experiments.md). Re-running reuses "
                    "every finished part. See docs/experiments.md.")
    e.add_argument("--out", help="the Markdown report (default: experiment.out)")
    add_config_arguments(e)
    e.set_defaults(func=_experiment)


def _limit(value: int | None):
    from irgpt.tune.trial import EVAL_LIMIT

    return EVAL_LIMIT if value is None else (None if value == 0 else value)


def _seeds(text: str) -> list[int]:
    from irgpt.errors import CommandError

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CommandError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1") from None
    if not seeds:
        raise CommandError("--seeds: give at least one seed")
    return seeds


def _tune(args: argparse.Namespace) -> int:
    from irgpt.config import load_config
    from irgpt.tune.driver import run_tune

    cfg = load_config(args.config, args.set)
    summary = run_tune(cfg, args.data, args.scores, args.out, space=args.space, resume=args.resume,
                       trial_steps=args.trial_steps, eval_limit=_limit(args.eval_limit), stop_after=args.stop_after,
                       seeds=_seeds(args.seeds) if args.seeds else None)
    best = summary["best"]
    print(f"irgpt tune: {len(summary['trials'])} trial(s) {summary['counts']}; "
          + (f"best {best['trial_id']} objective {best['objective']:.6g}" if best else "no trial reported an objective")
          + f"; files: {', '.join(summary['files'])}")
    return 0 if best else 1


def _ablate(args: argparse.Namespace) -> int:
    from irgpt.config import load_config
    from irgpt.tune.ablate import ROWS, run_ablation

    if args.list:
        for row in ROWS:
            print(f"{row.name:<18} Table {row.table}  {row.label:<34} {row.overrides}")
        return 0
    seeds = _seeds(args.seeds)
    cfg = load_config(args.config, args.set)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()] if args.rows else None
    result = run_ablation(cfg, args.data, args.scores, args.out, rows=rows, seeds=seeds, steps=args.steps,
                          split=args.split, eval_limit=_limit(args.eval_limit), stage2=args.stage2)
    print(result["markdown"])
    print(f"irgpt ablate: wrote {', '.join(result['files'])}")
    return 0


def _experiment(args) -> int:
    from irgpt.config import load_config
    from irgpt.tune.experiment import run_experiment

    result = run_experiment(load_config(args.config, args.set), args.out)
    print(result["markdown"])
    print(f"wrote {', '.join(result['files'])}")
    return 0
