"""The `irgpt` command line: maps command names to plain library functions.

Each subsystem owns a small `cli.py` with `register(subparsers)`, which adds
its commands and sets `func` on the parsed namespace. Registrar modules must
stay cheap to import (no torch / ray at import time) so `irgpt --help` is fast;
the heavy imports happen inside the command functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from irgpt.cli_util import run_interruptible
from irgpt.errors import CommandError

# (module path) for every subsystem that adds commands; order = help order.
_REGISTRARS = [
    "irgpt.data.cli",
    "irgpt.scoring.cli",
    "irgpt.curriculum.cli",
    "irgpt.train.cli",
    "irgpt.tune.cli",
    "irgpt.eval.cli",
    "irgpt.report.cli",
    "irgpt.pipeline_cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="irgpt",
        description="IRGPT curriculum training for infrared VLMs on Ray.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _REGISTRARS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # subsystem not present in this build
                continue
            raise
        module.register(sub)
    return parser


# Path flags (argparse dests) a command reads, and those it writes.
INPUT_FLAGS = ("config", "data", "scores", "tiers", "model", "bench", "extractor", "visible_data", "warmup",
               "init_checkpoint", "annotations", "image_root")
OUTPUT_FLAGS = ("out", "resume")


def _localize(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Replace object-storage URIs in path flags by local paths: inputs are fetched into this
    node's cache; an output gets a local work directory, holding what the store already has
    (a finished dataset: its manifest only) so resumption and --overwrite checks see it.
    Returns (local, URI) for each output, to publish when the command succeeds."""
    from irgpt import storage

    def fetch(value):
        return str(storage.fetch(value)) if storage.is_uri(value) else value

    outputs = []
    for dest in INPUT_FLAGS:
        value = getattr(args, dest, None)
        if isinstance(value, list):
            setattr(args, dest, [fetch(v) for v in value])
        elif isinstance(value, str):
            setattr(args, dest, fetch(value))
    for dest in OUTPUT_FLAGS:
        value = getattr(args, dest, None)
        if not (isinstance(value, str) and storage.is_uri(value)):
            continue
        local = storage.work_dir(value)
        if storage.is_file(storage.join(value, "manifest.json")):
            import shutil

            shutil.rmtree(local, ignore_errors=True)
            local.mkdir(parents=True)
            (local / "manifest.json").write_bytes(storage.read_bytes(storage.join(value, "manifest.json")))
        elif storage.exists(value):  # a run to resume: keep what is here, leave Ray's checkpoints in the store
            storage.pull(value, local, delete=False, skip=("ray",))
        setattr(args, dest, str(local))
        outputs.append((str(local), value))
    return outputs


def _refuse_other_uris(args: argparse.Namespace) -> None:
    """A URI left in any other argument would become a local folder `s3:`: refused, named."""
    from irgpt import storage

    for dest, value in vars(args).items():
        if dest in INPUT_FLAGS + OUTPUT_FLAGS + ("set",):
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and storage.is_uri(v):
                raise CommandError(f"{dest.replace('_', '-')} {v}: object storage is not supported for this "
                                   "argument; give a local path (docs/storage.md lists what takes a URI)")


def _publish(outputs: list[tuple[str, str]]) -> None:
    from pathlib import Path

    from irgpt import storage

    for local, uri in outputs:
        if Path(local).exists():
            print(f"irgpt: {storage.upload(local, uri)} file(s) written to {uri}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def command() -> int:
        try:
            _refuse_other_uris(args)  # before anything is fetched
            outputs = _localize(args)
            code = int(args.func(args) or 0)
            if code == 0:
                _publish(outputs)
            return code
        except CommandError as exc:
            print(f"irgpt {args.command}: error: {exc}", file=sys.stderr)
            return 2

    return run_interruptible(command, f"irgpt {args.command}")


if __name__ == "__main__":
    sys.exit(main())
