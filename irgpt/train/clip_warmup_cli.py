"""`irgpt clip-warmup --data DIR --out DIR [--config FILE] [--set k=v] [--epochs N]`: thin entry point.

Fine-tunes the Lesson 2 CLIP on the train split's infrared caption pairs
(`irgpt.train.clip_job.clip_warmup`, a Ray Train job) and writes
`OUT/clip_warmup.pt` + `OUT/clip_warmup.json`. Rerunning with the same
settings and `--out` resumes from the last epoch checkpoint. Flags override
`scoring.lesson2.warmup`; heavy imports happen in `run`.
"""

from __future__ import annotations

import argparse

from irgpt.cli_util import add_config_arguments

# flag dest -> ClipWarmupConfig field
_FLAGS = {"epochs": "epochs", "workers": "num_workers", "batch_size": "batch_size", "lr": "lr", "seed": "seed"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="dataset directory (default: data.dir, else RUN_DIR/data)")
    parser.add_argument("--out", required=True, help="output directory (clip_warmup.pt / .json, ray/ checkpoints)")
    parser.add_argument("--epochs", type=int, help="scoring.lesson2.warmup.epochs")
    parser.add_argument("--workers", type=int, help="Ray Train workers (scoring.lesson2.warmup.num_workers)")
    parser.add_argument("--batch-size", type=int, help="global batch (scoring.lesson2.warmup.batch_size)")
    parser.add_argument("--lr", type=float, help="scoring.lesson2.warmup.lr")
    parser.add_argument("--seed", type=int, help="shuffle seed (scoring.lesson2.warmup.seed)")
    parser.add_argument("--init-checkpoint", help="start from this save_clip state dict instead of the init model")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from irgpt.config import load_config
    from irgpt.errors import CommandError
    from irgpt.train.clip_job import clip_warmup

    cfg = load_config(args.config, args.set)
    changes = {field: getattr(args, dest) for dest, field in _FLAGS.items() if getattr(args, dest) is not None}
    for key in ("epochs", "num_workers", "batch_size"):
        if key in changes and changes[key] < 1:
            raise CommandError(f"clip-warmup: scoring.lesson2.warmup.{key} must be >= 1, got {changes[key]}")
    cfg.scoring.lesson2.warmup = dataclasses.replace(cfg.scoring.lesson2.warmup, **changes)
    report = clip_warmup(cfg, cfg.input_data(args.data), args.out, init_checkpoint=args.init_checkpoint)
    losses = ", ".join(f"{x:.3f}" for x in report["losses"])
    print(f"clip-warmup: {report['num_pairs']} pairs, {report['steps']} steps on {report['world_size']} worker(s), "
          f"{report['samples_per_s']:.0f} samples/s, {report['seconds']:.1f}s")
    print(f"  loss per epoch: {losses}")
    print(f"  weights {report['weights_hash_before']} -> {report['weights_hash_after']}; wrote {report['checkpoint']}")
    return 0
