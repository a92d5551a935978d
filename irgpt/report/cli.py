"""``irgpt report RUN_DIR``: render a run's HTML report (registered by ``irgpt/cli.py``).

Cheap to import: matplotlib, pandas and pyarrow load inside the command.
"""

from __future__ import annotations

import argparse


def _cmd_report(args: argparse.Namespace) -> int:
    from irgpt.report.report import write_report

    path = write_report(args.run_dir, args.out)
    print(f"wrote {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report``."""
    help_text = "render RUN_DIR's self-contained HTML report (plots, tables, provenance)"
    p = subparsers.add_parser("report", help=help_text, description=help_text + "; see docs/report.md")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds run.json, data/, scores_l1/, ...)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to write report.html, the PNGs and benchmark.md (default: RUN_DIR/report)")
    p.set_defaults(func=_cmd_report)
