"""`irgpt fe-train --data DIR --out DIR [--config FILE] [--set k=v] [--epochs N] [--num-workers N]`.

Trains the Lesson 1 MAE feature extractor (`irgpt.train.mae_job.fe_train`);
`--out` then holds a `save_pretrained` ViTMAE directory that
`scoring.lesson1.extractor=OUT` points the scorer at, plus `fe_train.json`.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset directory (part-*.parquet)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output model directory")
    parser.add_argument("--config", help="YAML config (default: the built-in defaults = demo scale)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set scoring.lesson1.fe_train.lr=1e-3 (repeatable)")
    parser.add_argument("--epochs", type=int, help="overrides scoring.lesson1.fe_train.epochs")
    parser.add_argument("--num-workers", type=int, help="overrides scoring.lesson1.fe_train.num_workers")


def run(args: argparse.Namespace) -> int:
    from irgpt.config import load_config
    from irgpt.train.mae_job import fe_train

    cfg = load_config(args.config, args.set)
    fe_train(cfg, args.data, args.out, epochs=args.epochs, num_workers=args.num_workers)
    return 0
