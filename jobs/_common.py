"""What every job entry point shares: --config/--set parsing and a clean exit.

The same scripts run as `python jobs/x.py ...` (local Ray started in process)
and under `ray job submit ... -- python jobs/x.py ...` (RAY_ADDRESS is set by
the job driver, so `irgpt.ray_utils.ensure_ray` joins the cluster).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a checkout without `pip install`

from irgpt.errors import CommandError  # noqa: E402


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", default="configs/demo.yaml", help="YAML run config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    return p


def load(args):
    from irgpt.config import load_config

    return load_config(args.config, args.set)


def main(fn) -> None:
    """Run `fn()`; user errors exit 2 with one line, anything else 1 with a traceback,
    Ctrl-C / SIGTERM 130 with one line (irgpt.cli_util.run_interruptible)."""
    from irgpt.cli_util import run_interruptible

    def job() -> int:
        try:
            return int(fn() or 0)
        except CommandError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except Exception:
            traceback.print_exc()
            print("error: the job failed (traceback above)", file=sys.stderr)
            return 1

    sys.exit(run_interruptible(job, Path(sys.argv[0]).name))
