"""``irgpt eval ...`` commands (registered by ``irgpt/cli.py``).

``irgpt eval score`` scores a predictions file against benchmark annotations
with no model involved (METHOD.md, "The benchmark"); see docs/eval.md.

Cheap to import: the scoring modules (numpy, scipy) load inside the command.
Adding ``irgpt eval run`` is one more registrar in ``_SUBCOMMANDS``: a
function ``(subparsers) -> None`` that calls ``add_parser("run", ...)`` and
sets ``func``, importing ``irgpt.eval.run`` only inside that ``func``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from irgpt.errors import CommandError


def _cmd_score(args: argparse.Namespace) -> int:
    from irgpt.eval.readers import load_annotations, load_pairs, load_predictions
    from irgpt.eval.score import format_table, score_all
    from irgpt.eval.tasks import normalise_task

    task = None
    if args.task is not None:
        try:
            task = normalise_task(args.task)
        except ValueError as exc:
            raise CommandError(f"--task: {exc}") from None
    if args.annotations is not None:
        samples = load_annotations(args.annotations)
        predictions = load_predictions(args.predictions)
    else:
        samples, predictions = load_pairs(args.predictions)
    report = score_all(samples, predictions, task=task)
    report["predictions"] = str(args.predictions)
    report["annotations"] = None if args.annotations is None else str(args.annotations)
    print(format_table(report))
    if args.out is not None:
        write_json(args.out, report)
        print(f"wrote {args.out}")
    return 0


def write_json(path: str | Path, report: dict) -> None:
    """Write a report as indented JSON, creating parent folders."""
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"{out}: cannot write ({exc.strerror})") from None


def register_score(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval score``."""
    p = subparsers.add_parser(
        "score",
        help="score a predictions file against benchmark annotations (no model)",
        description=(
            "Score predictions against IR-TD benchmark annotations and print the paper's "
            "table (Scene ... psum, Loc. ... nsum). See docs/eval.md."
        ),
    )
    p.add_argument(
        "--predictions",
        required=True,
        metavar="P",
        help='JSONL/JSON records {"id", "answer"}; or, without --annotations, '
        'the pairs layout {"answer", "label"}',
    )
    p.add_argument(
        "--annotations",
        metavar="A",
        help="benchmark conversation records (JSON array, JSONL or concatenated objects); "
        "omit when the predictions carry labels",
    )
    p.add_argument(
        "--task",
        metavar="T",
        help="task of records without a 'task' field (default: inferred from the answers); "
        "with tagged records, score only this task",
    )
    p.add_argument("--out", metavar="FILE", help="write the full results as JSON")
    p.set_defaults(func=_cmd_score)


# Registrars of the `eval` subcommands, in help order (add `run` here).
_SUBCOMMANDS = [register_score]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` command and its subcommands to the top-level parser."""
    parser = subparsers.add_parser(
        "eval",
        help="benchmark evaluation: score predictions (psum / nsum)",
        description="Benchmark evaluation on the 9 IR-TD tasks (docs/eval.md).",
    )
    sub = parser.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")
    sub.required = True
    for add in _SUBCOMMANDS:
        add(sub)


def main(argv: list[str] | None = None) -> int:
    """Run ``eval`` alone (``python -m irgpt.eval.cli score ...``), for debugging."""
    parser = argparse.ArgumentParser(prog="irgpt")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"irgpt eval: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
