"""`irgpt tier`: split scored samples into curriculum tiers.

Cheap to import (argparse only); the work happens in `irgpt.curriculum.tiers`.

    irgpt tier --data runs/demo/data --scores runs/demo/scores_l1 \\
        --scores runs/demo/scores_l2 --out runs/demo/tiers --set curriculum.m=4
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="samples dataset directory (default: data.dir, else RUN_DIR/data)")
    parser.add_argument("--scores", action="append", required=True, metavar="DIR",
                        help="a score table (Lesson 1: rank_l1 column, Lesson 2: rank_l2); give once per lesson")
    parser.add_argument("--out", required=True, help="output directory (tier=K/ folders + manifest.json)")
    parser.add_argument("--config", help="YAML run config (default: built-in defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. curriculum.m=4 (repeatable)")
    parser.add_argument("--split", default="train",
                        help="tier only rows of this split (default train); `all` tiers every split")
    parser.add_argument("--engine", default="auto", choices=["auto", "local", "ray"],
                        help="auto (default): in-process for small inputs (tiers.LOCAL_MAX_ROWS), else Ray Data")
    parser.add_argument("--rows-per-part", type=int, default=None, help="rows per output Parquet part")
    parser.add_argument("--reweight", action="store_true",
                        help="recompute the Eq. 5 weights from alpha with scoring.lesson2.weights")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier tier output in --out")


def run(args: argparse.Namespace) -> int:
    from irgpt.config import load_config
    from irgpt.curriculum.tiers import DEFAULT_ROWS_PER_PART, build_tiers

    cfg = load_config(args.config, args.set)
    manifest = build_tiers(
        cfg.input_data(args.data),
        args.scores,
        args.out,
        cfg.curriculum,
        split=None if args.split == "all" else args.split,
        engine=args.engine,
        rows_per_part=args.rows_per_part or DEFAULT_ROWS_PER_PART,
        reweight=cfg.scoring.lesson2.weights if args.reweight else None,
        overwrite=args.overwrite,
        ray_cfg=cfg.ray,
    )
    c = manifest["counts"]
    print(
        f"irgpt tier: {manifest['num_rows']} rows in {manifest['num_tiers']} tiers {manifest['tier_sizes']} -> {args.out} "
        f"({manifest['engine']} engine); rejected {c['rejected']} {c['rejected_by_reason']}, "
        f"unscored {c['unscored_not_scorable']}, other split {c['other_split'] + c['scored_other_split']}, "
        f"orphan scores {c['orphan_scores']}"
    )
    if c["scored_other_split"]:
        print(
            f"irgpt tier: {c['scored_other_split']} scored rows are outside the {args.split!r} split and were not "
            f"tiered (validation and benchmark rows stay out of the curriculum); --split all tiers every split"
        )
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("tier", help="rank scored samples and split them into curriculum tiers")
    add_arguments(parser)
    parser.set_defaults(func=run)
