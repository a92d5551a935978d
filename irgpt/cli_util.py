"""Small helpers the subsystems' `cli.py` registrars share."""

from __future__ import annotations

import argparse
import importlib


def lazy(module_name: str, attr: str = "run"):
    """A `func` that imports `module_name` only when its command runs."""

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module_name), attr)(args)

    return run


def add_module_command(sub, name: str, module_name: str, help_text: str) -> None:
    """Add command `name` whose module defines `add_arguments(parser)` and `run(args)`."""
    module = importlib.import_module(module_name)
    parser = sub.add_parser(name, help=help_text, description=help_text)
    module.add_arguments(parser)
    parser.set_defaults(func=lazy(module_name))


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The `--config` / `--set` pair every command that reads the config takes."""
    parser.add_argument("--config", help="YAML config (default: the built-in defaults = demo scale)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set curriculum.m=6 (repeatable)")


INTERRUPTED = 130
"""Exit status after Ctrl-C or SIGTERM (128 + SIGINT, the shell's convention)."""


def _sigterm_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_interruptible(fn, label: str) -> int:
    """Run `fn()`; Ctrl-C or SIGTERM ends it with one line and exit 130, no traceback.

    Every command either commits its outputs part by part (a rerun resumes) or
    swaps them in whole at the end (a rerun starts again), so the line says to
    rerun. A local Ray this process started is shut down, so no Ray process stays
    behind.
    """
    import signal
    import sys

    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        return fn()
    except KeyboardInterrupt:
        print(f"{label}: interrupted: rerun the same command to resume", file=sys.stderr, flush=True)
        return INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            try:
                ray.shutdown()
            except BaseException:  # noqa: BLE001 - already stopping; never mask the exit status
                pass
