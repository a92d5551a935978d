"""Progress of a long loop: a tqdm bar when stderr is a terminal, else plain lines.

    with Progress(total=n, desc="synth", unit="scene") as bar:
        for ...:
            bar.update(k, line=f"synth: shard 3/8 written ...")

On a terminal the bar replaces the per-unit lines; in a log file (CI, `ray job
submit`, a Ray worker) each `line` is printed as it is, so a log keeps one line
per unit of work and no carriage-return noise.
"""

from __future__ import annotations

import sys


class Progress:
    def __init__(self, total: int, desc: str, unit: str = "it", *, enabled: bool = True, file=None):
        self.enabled = enabled
        self.file = sys.stderr if file is None else file
        self.bar = None
        if enabled and getattr(self.file, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.file, dynamic_ncols=True, leave=True)

    def update(self, n: int = 1, line: str | None = None) -> None:
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and line:
            print(line, file=self.file, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
