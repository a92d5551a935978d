"""`irgpt data synth --out DIR --num-samples N --seed S ...`: thin entry point.

Flags override the `data.synth` config section (`--config FILE`, `--set k=v`);
the work is `irgpt.data.synth.synthesize`. Heavy imports happen in `run` so
`irgpt --help` stays fast.
"""

from __future__ import annotations

import argparse

from irgpt import storage
from irgpt.cli_util import add_config_arguments

# flag dest -> SynthConfig field
_FLAGS = {"num_samples": "num_samples", "seed": "seed", "image_size": "image_size",
          "misaligned_fraction": "misaligned_fraction", "workers": "num_workers"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="dataset directory (default: the config's data.dir)")
    parser.add_argument("--num-samples", type=int, help="number of scenes (data.synth.num_samples)")
    parser.add_argument("--seed", type=int, help="data.synth.seed")
    parser.add_argument("--image-size", type=int, help="square image side in pixels (data.synth.image_size)")
    parser.add_argument("--misaligned-fraction", type=float, help="data.synth.misaligned_fraction")
    parser.add_argument("--workers", type=int, help="parallel processes (data.synth.num_workers)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a dataset already in --out (it stays intact until the new one is complete)")
    add_config_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no per-shard progress lines")


def _table(title: str, counts: dict) -> str:
    width = max([len(k) for k in counts] + [len(title)])
    lines = [f"  {title}"] + [f"    {k:<{width}} {v:>8}" for k, v in counts.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from irgpt.config import load_config
    from irgpt.data.synth import synthesize
    from irgpt.errors import CommandError

    cfg = load_config(args.config, args.set)
    changes = {field: getattr(args, dest) for dest, field in _FLAGS.items() if getattr(args, dest) is not None}
    try:
        synth = dataclasses.replace(cfg.data.synth, **changes)
    except ValueError as exc:  # SynthConfig.__post_init__ validation
        raise CommandError(f"data synth: {exc}") from exc
    out = args.out or cfg.data.dir
    if not out:
        raise CommandError("data synth: give --out DIR (or set data.dir in the config)")
    if storage.is_uri(out):
        raise CommandError(f"data.dir={out}: to write the dataset to object storage, pass it as --out {out}")
    manifest = synthesize(synth, out, progress=not args.quiet, overwrite=args.overwrite)
    comp = manifest["composition"]
    print(f"wrote {manifest['num_rows']} rows from {manifest['num_scenes']} scenes to {out} "
          f"({manifest['num_misaligned']} misaligned captions, {manifest['elapsed_s']}s, "
          f"{manifest['scenes_per_s']} scenes/s)")
    print(_table("rows per band", comp["band"]))
    print(_table("rows per task", comp["task"]))
    print(_table("rows per split", comp["split"]))
    return 0
