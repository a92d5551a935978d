"""``irgpt eval ...`` commands (registered by ``irgpt/cli.py``).

``irgpt eval score`` scores a predictions file against benchmark annotations
with no model involved (docs/method.md, "The benchmark"); ``irgpt eval run``
generates a model's answers on a dataset's benchmark rows (Ray Data) and
scores them (``irgpt.eval.run``); see docs/eval.md.

Cheap to import: the scoring modules (numpy, scipy) and ``irgpt.eval.run``
(torch, ray) load inside the commands. Each subcommand is a registrar in
``_SUBCOMMANDS``: a function ``(subparsers) -> None`` that calls
``add_parser(...)`` and sets ``func``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from irgpt.errors import CommandError


def _cmd_score(args: argparse.Namespace) -> int:
    from irgpt.eval.readers import load_annotations, load_pairs, load_predictions
    from irgpt.eval.score import format_table, score_all
    from irgpt.eval.tasks import parse_task_label

    task = None
    if args.task is not None:
        try:
            task = parse_task_label(args.task)
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
        from irgpt.eval.outputs import write_json

        write_json(args.out, report)
        print(f"wrote {args.out}")
    return 0


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


def _cmd_run(args: argparse.Namespace) -> int:
    from irgpt.config import load_config
    from irgpt.eval.run import run_benchmark
    from irgpt.eval.score import format_table

    if args.limit is not None and args.limit < 1:
        raise CommandError(f"--limit must be >= 1, got {args.limit}")
    cfg = load_config(args.config, args.set)
    report = run_benchmark(cfg, args.model, args.bench, args.out, split=args.split,
                           tasks=args.tasks, limit=args.limit)
    print(format_table(report))
    out = Path(args.out) if args.out is not None else Path(report["model"]) / "eval"
    print(f"wrote {out / 'predictions.jsonl'}, {out / 'metrics.json'}, {out / 'table.md'}")
    return 0


def register_run(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval run``."""
    from irgpt.cli_util import add_config_arguments

    p = subparsers.add_parser(
        "run",
        help="generate answers on the benchmark rows with a model (Ray Data), then score them",
        description=(
            "Greedy, batched generation on the benchmark rows of a dataset directory on a Ray Data "
            "actor pool (eval.batch_size, eval.max_new_tokens, eval.concurrency, eval.num_gpus), "
            "then scoring against the rows' own answers. Writes predictions.jsonl, metrics.json "
            "and table.md. See docs/eval.md."
        ),
    )
    p.add_argument("--model", required=True, metavar="DIR",
                   help="model directory (a trained model of this project, or a local HF checkpoint)")
    p.add_argument("--bench", metavar="DIR",
                   help="dataset directory holding the benchmark rows (default: eval.bench_dir, else data.dir)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: MODEL/eval)")
    p.add_argument("--split", default="benchmark", choices=["train", "val", "benchmark"],
                   help="rows of this split (default: benchmark)")
    p.add_argument("--tasks", metavar="T1,T2",
                   help="only these tasks (names or the paper's labels; default: all 9)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N selected rows, by id")
    add_config_arguments(p)
    p.set_defaults(func=_cmd_run)


# Registrars of the `eval` subcommands, in help order.
_SUBCOMMANDS = [register_score, register_run]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` command and its subcommands to the top-level parser."""
    parser = subparsers.add_parser(
        "eval",
        help="benchmark evaluation: run a model on the benchmark, score predictions (psum / nsum)",
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
