"""`irgpt train --stage 1|2|all --data DIR --tiers DIR --out RUN_DIR`, `--resume`, `--dry-run`."""

from __future__ import annotations

import argparse
import json

from irgpt.cli_util import add_config_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="two-stage VLM training on Ray Train + DeepSpeed",
                              description="Stage 1 (vision encoder + projector, curriculum tiers, Eq. 6 weights) "
                                          "and stage 2 (projector + LLM LoRA on the instruction samples).")
    p.add_argument("--stage", choices=["1", "2", "all"], default="all")
    p.add_argument("--data", help="dataset directory (stage 2 rows, validation split; default data.dir)")
    p.add_argument("--tiers", help="tier directory from `irgpt tier` (stage 1)")
    p.add_argument("--out", help="run directory for checkpoints, models, metrics, summary.json")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a stopped or failed run from its latest checkpoints (same config)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the config, batch arithmetic, memory per GPU and paths; start no workers")
    add_config_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from irgpt.config import load_config
    from irgpt.errors import CommandError

    cfg = load_config(args.config, args.set)
    if args.dry_run:
        from irgpt.train.dry_run import dry_run

        dry_run(cfg)
        return 0
    from irgpt.train.trainer import resume, train

    if args.resume:
        summary = resume(cfg, args.resume, stage=args.stage)
    else:
        if not args.out:
            raise CommandError("--out RUN_DIR is required (or --resume RUN_DIR)")
        summary = train(cfg, args.stage, cfg.input_data(args.data), args.tiers, args.out)
    print(json.dumps({k: v for k, v in summary.items() if k.startswith("stage")}, indent=2, default=str))
    return 0
