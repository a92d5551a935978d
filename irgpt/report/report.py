"""`write_report(run_dir)`: one self-contained HTML page that explains a run.

The page has nine sections (docs/report.md). Each reads the files its stage
writes (the run-directory contract in docs/report.md) and renders what it
finds. A section whose input is absent says "not run" and names the file it
looked for; one whose input is broken shows an error note and warns on
stderr. A partial or damaged run still gives a page: nothing here raises for
bad run contents, only for a run directory that does not exist.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from irgpt.errors import CommandError
from irgpt.report import html as H
from irgpt.report.inputs import Corrupt, Missing, read_json

DPI = 100
MANAGED_GLOBS = ("[0-9]_*.png", "benchmark.md")  # outputs of an earlier render, removed first


@dataclass
class Context:
    """What every section needs: where the run is, where to write, how to report trouble."""

    run_dir: Path
    out_dir: Path
    run: dict | None = None
    warnings: list[str] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)

    def path(self, *parts: str) -> Path:
        return self.run_dir.joinpath(*parts)

    def show(self, path: str | Path) -> str:
        """`path` as RUN_DIR/... when it lies inside the run directory."""
        path = Path(path)
        try:
            return "RUN_DIR/" + path.resolve().relative_to(self.run_dir).as_posix()
        except ValueError:
            return str(path)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        print(f"irgpt report: warning: {message}", file=sys.stderr)

    def not_run(self, exc: Missing, what: str = "") -> str:
        lead = f"{what}: not run" if what else "Not run"
        return H.note(f"{lead} — looked for {self.show(exc.path)}, which does not exist.", "notrun")

    def error(self, what: str, exc: BaseException) -> str:
        if isinstance(exc, Corrupt):
            msg = f"{what}: cannot read {self.show(exc.path)}: {exc.why}"
        else:
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            at = f" (at {Path(where.filename).name}:{where.lineno})" if where else ""
            msg = f"{what}: {type(exc).__name__}: {exc}{at}"
        self.warn(msg)
        return H.note(msg, "error")

    def guard(self, what: str, fn: Callable[..., str], *args, **kwargs) -> str:
        """`fn(...)`'s HTML, or a "not run" / error note in its place.

        A report shows a failure instead of dying, so any exception is caught.
        """
        return self.guard_value(what, fn, *args, **kwargs)

    def guard_value(self, what: str, fn: Callable, *args, **kwargs):
        """`fn(...)`'s value, or (a str) the "not run" / error note in its place."""
        try:
            return fn(*args, **kwargs)
        except Missing as exc:
            return self.not_run(exc, what)
        except Exception as exc:  # noqa: BLE001
            return self.error(what, exc)

    def figure(self, name: str, alt: str, plot: Callable, *args, **kwargs) -> str:
        """Draw `plot(...)`, save OUT/name.png at DPI, and return the embedded <img>."""
        def draw() -> str:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig = plot(*args, **kwargs)
            try:
                path = self.out_dir / f"{name}.png"
                fig.savefig(path, dpi=DPI)
            finally:
                plt.close(fig)
            self.images.append(path)
            return H.img(path, alt)

        return self.guard(f"plot {alt!r}", draw)

    def stages(self, *names: str) -> list[dict]:
        if not self.run or not isinstance(self.run.get("stages"), list):
            return []
        return [s for s in self.run["stages"] if isinstance(s, dict) and s.get("name") in names]

    def stage_note(self, *names: str) -> str:
        """One line per pipeline stage behind a section, from run.json."""
        out = []
        for s in self.stages(*names):
            status = s.get("status")
            secs = s.get("seconds")
            text = f"Stage {s.get('name')}: {status}"
            if isinstance(secs, (int, float)):
                text += f" in {seconds(secs)}"
            if s.get("message"):
                text += f" — {s['message']}"
            out.append(H.note(text, {"failed": "error", "skipped": "notrun"}.get(status, "info")))
        return "".join(out)


def seconds(s: float) -> str:
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    m, r = divmod(int(round(s)), 60)
    return f"{m} min {r:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


# (anchor, heading, pipeline stages behind it, renderer module.function)
SECTIONS: list[tuple[str, str, tuple[str, ...], str]] = [
    ("run", "Run overview", (), "sections:header"),
    ("data", "Data", ("synth", "import", "data"), "sections:data"),
    ("lesson1", "Lesson 1: IR–VIS distance", ("fe_train", "score_l1"), "sections:lesson1"),
    ("lesson2", "Lesson 2: IR–text alignment", ("score_l2",), "sections:lesson2"),
    ("curriculum", "Curriculum tiers", ("tier",), "sections:curriculum"),
    ("training", "Training", ("train_stage1", "train_stage2"), "sections_run:training"),
    ("benchmark", "Benchmark", ("eval",), "sections_run:benchmark"),
    ("tune", "Tune", ("tune",), "sections_run:tune"),
    ("provenance", "Provenance", (), "sections_run:provenance"),
]


def _renderer(spec: str) -> Callable[[Context], str]:
    import importlib

    module, attr = spec.split(":")
    return getattr(importlib.import_module(f"irgpt.report.{module}"), attr)


def _load_run(ctx: Context) -> str:
    """Read run.json into ctx.run; the note to show when it is absent or broken."""
    try:
        ctx.run = read_json(ctx.path("run.json"))
        return ""
    except Missing as exc:
        return ctx.not_run(exc, "run.json")
    except Corrupt as exc:
        return ctx.error("run.json", exc)


def render(ctx: Context) -> str:
    """The page's HTML (writes the PNGs and benchmark.md as it goes)."""
    run_note = _load_run(ctx)
    name = (ctx.run or {}).get("name") or ctx.run_dir.name
    parts = []
    for anchor, heading, stage_names, spec in SECTIONS:
        body = ctx.stage_note(*stage_names)
        if anchor == "run":
            body += run_note
        body += ctx.guard(heading, _renderer(spec), ctx)
        parts.append(H.section(anchor, heading, body))
    if ctx.warnings:
        items = "".join(f"<li>{H.esc(w)}</li>" for w in ctx.warnings)
        parts.insert(1, H.section("warnings", f"Problems found ({len(ctx.warnings)})",
                                  H.note(f"<ul>{items}</ul>", "warn", raw=True)))
    footer = f"Rendered {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by: irgpt report {ctx.run_dir}"
    nav = [(a, h) for a, h, _, _ in SECTIONS]
    return H.page(f"IRGPT run report: {name}", nav, parts, footer)


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Render RUN_DIR's report into OUT (default RUN_DIR/report); returns OUT/report.html.

    Raises CommandError only when RUN_DIR is not a directory or OUT cannot be
    written; anything wrong inside the run shows up in the page instead.
    """
    from irgpt.data.io import atomic_write_bytes

    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise CommandError(f"{run_dir}: not a run directory (does not exist)")
    out = Path(out_dir).resolve() if out_dir is not None else run_dir / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
        for pattern in MANAGED_GLOBS:
            for old in out.glob(pattern):
                old.unlink()
    except OSError as exc:
        raise CommandError(f"{out}: cannot write the report ({exc.strerror})") from None
    ctx = Context(run_dir=run_dir, out_dir=out)
    page = render(ctx)
    path = out / "report.html"
    atomic_write_bytes(path, page.encode("utf-8"))
    return path
