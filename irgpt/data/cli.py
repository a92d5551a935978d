"""`irgpt data synth | import | build`.

Each command's module exposes `add_arguments(parser)` and `run(args) -> int`;
they are imported only when their command runs (keeps `irgpt --help` fast).
"""

from __future__ import annotations

import argparse
import importlib

_COMMANDS = {
    # command: (module, help)
    "synth": ("irgpt.data.synth_cli", "generate the synthetic infrared dataset"),
    "import": ("irgpt.data.import_cli", "import LLaVA / InternVL conversation files"),
    "build": ("irgpt.data.build_cli", "build instruction samples from detection annotations"),
}


def _lazy(module_name: str):
    def run(args: argparse.Namespace) -> int:
        return importlib.import_module(module_name).run(args)

    return run


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="make, import and build datasets")
    sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    sub.required = True
    for name, (module_name, help_text) in _COMMANDS.items():
        parser = sub.add_parser(name, help=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(parser)
        parser.set_defaults(func=_lazy(module_name))
