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


def _refuse_uris(argv: list[str]) -> None:
    """Path flags take local (or shared-volume) paths; an `s3://` would become a local folder `s3:`."""
    from irgpt.config import URI

    for flag, value in zip(argv, argv[1:]):
        if flag.startswith("--") and flag != "--set" and URI.match(value):
            raise CommandError(f"{flag} {value}: object-storage URIs are not supported for paths yet (only "
                               f"train.storage_path); use a volume every node mounts (docs/kuberay.md)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _refuse_uris(sys.argv[1:] if argv is None else list(argv))
    except CommandError as exc:
        print(f"irgpt {args.command}: error: {exc}", file=sys.stderr)
        return 2

    def command() -> int:
        try:
            return int(args.func(args) or 0)
        except CommandError as exc:
            print(f"irgpt {args.command}: error: {exc}", file=sys.stderr)
            return 2

    return run_interruptible(command, f"irgpt {args.command}")


if __name__ == "__main__":
    sys.exit(main())
