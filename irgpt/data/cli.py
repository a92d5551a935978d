"""`irgpt data synth | import | build`.

Each command's module exposes `add_arguments(parser)` and `run(args) -> int`;
its heavy imports happen in `run`, so `irgpt --help` stays fast.
"""

from __future__ import annotations

from irgpt.cli_util import add_module_command

_COMMANDS = [
    ("synth", "irgpt.data.synth_cli", "generate the synthetic infrared dataset"),
    ("import", "irgpt.data.import_cli", "import LLaVA / InternVL conversation files"),
    ("build", "irgpt.data.build_cli", "build instruction samples from detection annotations"),
]


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="make, import and build datasets")
    sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    sub.required = True
    for name, module_name, help_text in _COMMANDS:
        add_module_command(sub, name, module_name, help_text)
