"""The run report: plots and one self-contained HTML page (docs/report.md).

`write_report(run_dir, out_dir=None) -> Path` is the entry point the pipeline
and `irgpt report` call. Importing this package is cheap (no matplotlib).
"""

from __future__ import annotations

from pathlib import Path


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Render RUN_DIR's report into OUT (default RUN_DIR/report); returns OUT/report.html."""
    from irgpt.report.report import write_report as _write

    return _write(run_dir, out_dir)


__all__ = ["write_report"]
