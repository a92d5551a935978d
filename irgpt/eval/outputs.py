"""Writing an evaluation run's outputs: predictions, metrics and the Markdown table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from irgpt.errors import CommandError
from irgpt.eval.tasks import LABELS, NSUM_TASKS, PSUM_TASKS

PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
TABLE_FILE = "table.md"


def write_json(path: str | Path, report: dict) -> None:
    """Write a report as indented JSON (no NaN), atomically, creating parent folders."""
    from irgpt.data.io import atomic_write_bytes

    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, (json.dumps(report, indent=2, allow_nan=False) + "\n").encode("utf-8"))
    except OSError as exc:
        raise CommandError(f"{out}: cannot write ({exc.strerror})") from None


# ---------------------------------------------------------------- output ----
def md_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown_table(report: dict) -> str:
    """The paper's columns (Scene ... psum, Loc. ... nsum) as a Markdown table: score, n, parsed %."""
    tasks = report["tasks"]
    columns = [*PSUM_TASKS, "psum", *NSUM_TASKS, "nsum"]
    lines = ["| | " + " | ".join(LABELS.get(c, c) for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name, key in (("score", "score"), ("n", "n"), ("parsed %", "parse_rate")):
        cells = []
        for c in columns:
            if c in ("psum", "nsum"):
                cells.append(md_cell(report[c]) if key == "score" else "")
            elif c not in tasks or tasks[c][key] is None:
                cells.append("-")
            elif key == "n":
                cells.append(str(tasks[c]["n"]))
            else:
                cells.append(md_cell(tasks[c][key] * (100.0 if key == "parse_rate" else 1.0)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _table_md(report: dict) -> str:
    from irgpt.eval.score import format_table

    notes = format_table(report).split("\n\n", 1)
    gen = report["generation"]
    head = [
        f"# Benchmark: {report['model']}",
        "",
        f"Data `{report['bench']}`, split `{report['split']}`, {report['n']} rows; greedy, "
        f"max_new_tokens={gen['max_new_tokens']}, batch_size={gen['batch_size']}; "
        f"{report['seconds']:.1f} s ({report['samples_per_s']:.2f} rows/s); "
        f"{gen['errors']} generation errors (empty answers, scored as unparseable).",
        "",
        markdown_table(report),
        "",
        "psum = Scene + Rec. + Gro. + Rel. + ReID + Sec. (higher is better); "
        "nsum = Loc. + A.C. + P.C. (lower is better).",
    ]
    if len(notes) > 1:
        head += [""] + [f"- {line}" for line in notes[1].splitlines() if line.strip()]
    return "\n".join(head) + "\n"


def write_outputs(out_dir: Path, rows: Sequence, answers: dict[str, str], report: dict) -> None:
    """`predictions.jsonl` (rows: `BenchRow`s, by id), `metrics.json` and `table.md` in `out_dir`."""
    from irgpt.data.io import atomic_write_bytes

    lines = [json.dumps({"id": r.id, "task": r.task, "answer": answers.get(r.id, ""), "label": r.answer,
                         "question": r.question}, ensure_ascii=False) for r in rows]
    from irgpt.data import contracts

    contracts.parse(contracts.EvalManifest, report, f"{out_dir / METRICS_FILE} (being written)")
    try:
        atomic_write_bytes(out_dir / PREDICTIONS_FILE, ("\n".join(lines) + "\n").encode("utf-8"))
        write_json(out_dir / METRICS_FILE, report)
        atomic_write_bytes(out_dir / TABLE_FILE, _table_md(report).encode("utf-8"))
    except OSError as exc:
        raise CommandError(f"{out_dir}: cannot write the results ({exc.strerror}); choose another --out") from None
