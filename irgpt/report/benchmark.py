"""The benchmark table in the paper's column order, as HTML rows and as Markdown.

Columns (docs/method.md, "The benchmark"): Scene, Rec., Gro., Rel., ReID, Sec.,
psum, Loc., A.C., P.C., nsum; the task keys and labels are `irgpt.eval.tasks`'.
Input: `eval/metrics.json` as `irgpt eval score --out` writes it
({"psum", "nsum", "psum_tasks", "nsum_tasks", "tasks": {task: {"score",
"parse_rate" (0-1), "n", ...}}}).
"""

from __future__ import annotations

from irgpt.eval.tasks import LABELS, NSUM_TASKS, PSUM_TASKS
from irgpt.report.inputs import number

COLUMNS = (*PSUM_TASKS, "psum", *NSUM_TASKS, "nsum")
HEADERS = tuple(LABELS.get(c, c) for c in COLUMNS)

# The paper's published row for IRGPT (CL, fine-tune, 8B), in COLUMNS order.
PAPER_LABEL = "Paper: IRGPT (CL, fine-tune, 8B) †"
PAPER_NOTE = ("† The paper's published number at 8B scale (InternVL2-8B), for orientation only: "
              "not comparable to a tiny model.")
PAPER_ROW = (85.12, 99.79, 51.58, 98.69, 50.79, 99.82, 485.79, 3.32, 0.25, 0.82, 4.39)


def _task(metrics: dict, name: str) -> dict:
    tasks = metrics.get("tasks") if isinstance(metrics.get("tasks"), dict) else {}
    t = tasks.get(name)
    return t if isinstance(t, dict) else {}


def rows(metrics: dict) -> list[tuple[str, list[float | int | None]]]:
    """(label, cells) for this run's score, parse rate (%), n, and the paper's row."""
    score, parsed, count = [], [], []
    for c in COLUMNS:
        if c in ("psum", "nsum"):
            score.append(number(metrics.get(c)))
            parsed.append(None)
            count.append(None)
            continue
        t = _task(metrics, c)
        score.append(number(t.get("score")))
        rate = number(t.get("parse_rate"))
        parsed.append(None if rate is None else 100.0 * rate)
        n = number(t.get("n"))
        count.append(None if n is None else int(n))
    return [("This run: score", score), ("This run: answers parsed (%)", parsed),
            ("This run: samples (n)", count), (PAPER_LABEL, list(PAPER_ROW))]


def cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:d}" if isinstance(value, int) else f"{value:.2f}"


def coverage_notes(metrics: dict) -> list[str]:
    """Warnings when psum / nsum sum fewer tasks than the paper's."""
    notes = []
    for name, members in (("psum", PSUM_TASKS), ("nsum", NSUM_TASKS)):
        present = [t for t in members if number(_task(metrics, t).get("score")) is not None]
        if len(present) < len(members):
            absent = [LABELS[t] for t in members if t not in present]
            notes.append(f"{name} sums {len(present)} of {len(members)} tasks (no score for "
                         f"{', '.join(absent)}): not comparable to the paper's {name}.")
    return notes


def markdown(metrics: dict) -> str:
    """benchmark.md: the table plus what the numbers mean."""
    lines = ["| | " + " | ".join(HEADERS) + " |", "|---|" + "---:|" * len(HEADERS)]
    for label, cells in rows(metrics):
        lines.append(f"| {label} | " + " | ".join(cell(v) for v in cells) + " |")
    text = "\n".join(lines)
    notes = [
        "Scene, Rec., Gro., Rel., ReID, Sec.: accuracy % (higher is better); psum is their sum.",
        "Loc.: mean point error; A.C., P.C.: mean absolute count error (lower is better); nsum is their sum.",
        "An unparseable answer counts as wrong; 'answers parsed' is each task's parse rate.",
        PAPER_NOTE,
        *coverage_notes(metrics),
    ]
    return "# Benchmark\n\n" + text + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
