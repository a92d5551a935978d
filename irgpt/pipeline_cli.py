"""`irgpt pipeline`: every stage in order under one run directory (`irgpt.pipeline`)."""

from __future__ import annotations

import argparse

from irgpt.cli_util import add_config_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pipeline", help="all stages in order under run.root/run.name (skips what is up to date)",
        description="synth -> fe_train -> score_l1 -> clip_warmup -> score_l2 -> tier -> train_stage1 -> "
                    "train_stage2 -> eval -> report. Re-running skips stages whose outputs are up to date "
                    "and resumes a failed one. See README, 'What the pipeline does'.")
    p.add_argument("--force", action="store_true", help="recompute every stage")
    p.add_argument("--stages", help="comma-separated subset of stages to run (default: run.stages)")
    p.add_argument("--dry-run", action="store_true",
                   help="check every stage (paths, model directories and their kinds, tokenizer tokens, batch "
                        "arithmetic, memory per GPU) and run nothing; exit 2 on any error")
    add_config_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from irgpt.config import load_config
    from irgpt.pipeline import run_pipeline

    overrides = list(args.set) + ([f"run.stages=[{args.stages}]"] if args.stages else [])
    cfg = load_config(args.config, overrides)
    if args.dry_run:
        from irgpt.errors import CommandError
        from irgpt.pipeline_check import check_pipeline, print_checks

        result = check_pipeline(cfg)
        print_checks(result)
        if not result["ok"]:
            raise CommandError("the dry run found errors (above); nothing was run")
        return 0
    record = run_pipeline(cfg, force=args.force)
    for stage in record["stages"]:
        print(f"{stage['name']:<14} {stage['status']:<8} {stage.get('seconds') or 0:8.1f}s")
    print(f"run directory: {record['run_dir']}  (report: {record['run_dir']}/report/report.html)")
    return 0
