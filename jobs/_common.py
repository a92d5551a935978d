"""What every job entry point shares: it is the `irgpt` command of the same name.

`python jobs/x.py ARGS` runs `irgpt x ARGS` (`irgpt.cli`), so the flags, the
defaults (the built-in config unless `--config` is given) and the errors are
the same as the command line's: user errors exit 2 with one line, Ctrl-C /
SIGTERM 130 with one line. The scripts exist for `ray job submit ... -- python
jobs/x.py ...` (RAY_ADDRESS is set by the job driver, so
`irgpt.ray_utils.ensure_ray` joins the cluster) and for a checkout without
`pip install`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a checkout without `pip install`


def command(name: str) -> None:
    """Run `irgpt <name> <this script's arguments>` and exit with its status."""
    from irgpt.cli import main

    sys.exit(main([name, *sys.argv[1:]]))
