"""`irgpt fe-train`, `irgpt clip-warmup`, `irgpt score ir-vis | ir-text`."""

from __future__ import annotations

import argparse
import json

from irgpt import storage
from irgpt.cli_util import add_config_arguments, add_module_command


def register(subparsers) -> None:
    add_module_command(subparsers, "fe-train", "irgpt.train.fe_train_cli",
                       "pre-train the MAE feature extractor (Lesson 1) on Ray Train")
    add_module_command(subparsers, "clip-warmup", "irgpt.train.clip_warmup_cli",
                       "warm up CLIP on the IR image-text pairs (Lesson 2) on Ray Train")

    score = subparsers.add_parser("score", help="score samples on Ray Data (Lesson 1 / Lesson 2)")
    sub = score.add_subparsers(dest="score_command", metavar="LESSON")
    sub.required = True

    p = sub.add_parser("ir-vis", help="Lesson 1: IR-VIS domain distance d_ir_vis and rank_l1")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="output scores directory")
    p.add_argument("--extractor", help="`tiny`, an InfMAE checkpoint file, or a directory from `irgpt fe-train` or a "
                   "Hugging Face ViTMAE (default: scoring.lesson1.extractor; kind: scoring.lesson1.extractor_kind)")
    p.add_argument("--estimator", choices=["auto", "exact", "rff"], help="default: scoring.lesson1.estimator")
    p.add_argument("--visible-data", help="a separate visible reference dataset (default: vis rows of --data)")
    p.add_argument("--force", action="store_true", help="recompute, discarding committed parts")
    add_config_arguments(p)
    p.set_defaults(func=_run_ir_vis)

    p = sub.add_parser("ir-text", help="Lesson 2: CLIP loss before/after warm-up, alpha, weight, rank_l2")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="output scores directory")
    p.add_argument("--warmup", help="use this warm-up checkpoint instead of running the warm-up")
    p.add_argument("--force", action="store_true", help="recompute, discarding committed parts")
    add_config_arguments(p)
    p.set_defaults(func=_run_ir_text)


def _run_ir_vis(args: argparse.Namespace) -> int:
    from irgpt.config import load_config
    from irgpt.scoring.ir_vis import score_ir_vis

    cfg = load_config(args.config, args.set)
    manifest = score_ir_vis(cfg, args.data, args.out, extractor=args.extractor, estimator=args.estimator,
                            visible_data=args.visible_data, force=args.force)
    print(json.dumps({"out": args.out, "rows": manifest["num_rows"], "rejected": manifest["rejected"],
                      "estimator": manifest["provenance"]["estimator"], **manifest["summary"]}, indent=2))
    return 0


def _run_ir_text(args: argparse.Namespace) -> int:
    """Lesson 2 end to end: the CLIP warm-up into OUT/warmup (reused when it matches the
    settings and the data, or `--warmup`), then the before / after passes."""
    from pathlib import Path

    from irgpt.config import load_config
    from irgpt.scoring.ir_text import score_ir_text
    from irgpt.train.clip_job import ensure_clip_warmup

    cfg = load_config(args.config, args.set)
    data = cfg.input_data(args.data)  # before --force deletes anything
    out = Path(args.out)
    if args.force:
        storage.clear(out)  # the warm-up in OUT/warmup too (and the store's copy of a mirrored OUT)
    warmup = args.warmup or ensure_clip_warmup(cfg, data, out / "warmup")
    manifest = score_ir_text(cfg, data, out, warmup=warmup)
    print(json.dumps({"out": args.out, "rows": manifest["num_rows"], "rejected": manifest["rejected"],
                      "truncated_captions": manifest["truncated_captions"], **manifest["summary"]}, indent=2))
    return 0
