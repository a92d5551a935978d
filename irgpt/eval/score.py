"""Score predictions against benchmark samples: per task, then psum / nsum.

docs/method.md, "The benchmark: 9 tasks, psum and nsum". ``score_records`` scores
one task; ``score_all`` groups samples by task (``tasks.assign_tasks``),
scores each and adds psum / nsum over the tasks present. Both are plain
functions over in-memory data so ``irgpt eval run`` can reuse them; the
``eval score`` CLI only adds file reading and printing.

An unparseable prediction, or a sample with no prediction, is wrong and is
counted in ``n``; ``parse_rate`` is the fraction of the ``n`` predictions
that parsed. A sample whose *ground truth* does not parse is a data error:
it is left out of ``n`` and reported (``gt_unparseable``, with example ids).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from irgpt.eval import metrics, parse
from irgpt.eval.readers import Sample
from irgpt.eval.tasks import BENCHMARK_TASKS, LABELS, METRICS, NSUM_TASKS, PSUM_TASKS, assign_tasks

_EXAMPLES = 5  # ids listed per kind of problem
_HIGHER_IS_BETTER = set(PSUM_TASKS)


def _choice_options(sample: Sample) -> dict[str, str]:
    """Options from the question, completed with the ground truth's own options."""
    options = parse.parse_options(sample.question)
    for letter, text in parse.parse_options(sample.answer).items():
        options.setdefault(letter, text)
    return options


def _parse_pair(task: str, sample: Sample, prediction: str | None):
    """(ground truth, prediction) parsed for ``task``; None where unparseable."""
    if task in ("scene", "recognition"):
        options = _choice_options(sample)
        pred = None if prediction is None else parse.parse_choice(prediction, options)
        return parse.parse_choice(sample.answer, options), pred
    if task == "security":
        options = _choice_options(sample)
        pred = None if prediction is None else parse.parse_choice_set(prediction, options)
        return parse.parse_choice_set(sample.answer, options), pred
    fn = {
        "grounding": parse.parse_boxes,
        "relationship": parse.parse_yes_no,
        "reid": parse.parse_index,
        "location": parse.parse_location,
        "aerial_counting": parse.parse_count,
        "pedestrian_counting": parse.parse_count,
    }[task]
    gt = fn(sample.answer)
    if task == "grounding" and gt == []:
        gt = None  # no GT box: the sample has no defined score
    return gt, (None if prediction is None else fn(prediction))


def score_records(
    task: str,
    records: Sequence[Sample],
    predictions: Mapping[str, str],
    *,
    per_sample: bool = False,
) -> dict:
    """Score one task's samples against ``predictions`` (id -> answer text).

    Returns ``task``, ``label``, ``metric``, ``higher_is_better``, ``score``
    (accuracy %, grounding %, mean point error, or MAE), ``n``,
    ``n_parsed``, ``parse_rate``, ``missing_predictions``,
    ``gt_unparseable`` (+ ``*_ids`` examples) and the task's secondary
    metrics (``metrics.grounding_metrics`` etc.). With ``per_sample`` a
    ``samples`` list gives each id's ``parsed`` flag and ``value`` (1/0
    correct, grounding fraction, point error or absolute count error).
    """
    if task not in BENCHMARK_TASKS:
        raise ValueError(f"unknown task {task!r}")
    ids, gts, preds, missing, bad_gt = [], [], [], [], []
    for sample in records:
        prediction = predictions.get(sample.id)
        gt, pred = _parse_pair(task, sample, prediction)
        if gt is None:
            bad_gt.append(sample.id)
            continue
        if prediction is None:
            missing.append(sample.id)
        ids.append(sample.id)
        gts.append(gt)
        preds.append(pred)
    n = len(gts)
    n_parsed = sum(1 for p in preds if p is not None)
    values: list[float]
    if task == "grounding":
        extra = metrics.grounding_metrics(gts, preds)
        values = (
            [metrics.match_boxes(g, p).matched / len(g) for g, p in zip(gts, preds)]
            if per_sample
            else []
        )
    elif task == "location":
        extra = metrics.location_metrics(
            [g.points for g in gts], [None if p is None else p.points for p in preds]
        )
        values = (
            [
                metrics.match_points(g.points, None if p is None else p.points).error
                for g, p in zip(gts, preds)
            ]
            if per_sample
            else []
        )
    elif task in ("aerial_counting", "pedestrian_counting"):
        extra = metrics.counting_metrics(gts, preds)
        values = [abs((p or 0) - g) for g, p in zip(gts, preds)]
    else:
        correct = [p is not None and p == g for g, p in zip(gts, preds)]
        extra = {"score": metrics.accuracy_pct(correct), "correct": sum(correct)}
        values = [1.0 if c else 0.0 for c in correct]
    result = {
        "task": task,
        "label": LABELS[task],
        "metric": METRICS[task],
        "higher_is_better": task in _HIGHER_IS_BETTER,
        "score": extra.pop("score"),
        "n": n,
        "n_parsed": n_parsed,
        "parse_rate": n_parsed / n if n else None,
        "missing_predictions": len(missing),
        "missing_prediction_ids": missing[:_EXAMPLES],
        "gt_unparseable": len(bad_gt),
        "gt_unparseable_ids": bad_gt[:_EXAMPLES],
        **extra,
    }
    if per_sample:
        result["samples"] = [
            {"id": i, "parsed": p is not None, "value": float(v)}
            for i, p, v in zip(ids, preds, values)
        ]
    return result


def summarise(task_results: Mapping[str, dict]) -> dict:
    """psum / nsum over the tasks present (with a score), and which they cover.

    psum = Scene + Rec. + Gro. + Rel. + ReID + Sec.; nsum = Loc. + A.C. +
    P.C. (docs/method.md), the authors' mean errors. None when no task of that
    sum is present. Beside nsum, two robust companions that one absurd answer
    cannot dominate: ``nsum_median`` (the same sum of the tasks' median
    errors) and ``far_off_share`` (the share of counting answers more than
    10x off, over both counting tasks).
    """
    out = {}
    for name, members in (("psum", PSUM_TASKS), ("nsum", NSUM_TASKS)):
        present = [t for t in members if task_results.get(t, {}).get("score") is not None]
        out[name] = sum(task_results[t]["score"] for t in present) if present else None
        out[f"{name}_tasks"] = present
    medians = [task_results[t]["median_error"] for t in out["nsum_tasks"]]
    out["nsum_median"] = sum(medians) if medians and None not in medians else None
    counted = [task_results[t] for t in ("aerial_counting", "pedestrian_counting") if t in out["nsum_tasks"]]
    n = sum(r["n"] for r in counted)
    out["far_off_share"] = sum(r["far_off_share"] * r["n"] for r in counted) / n if n else None
    return out


def score_all(
    samples: Sequence[Sample],
    predictions: Mapping[str, str],
    *,
    task: str | None = None,
    per_sample: bool = False,
) -> dict:
    """Score every task present in ``samples``; the ``--out`` JSON of ``eval score``.

    Tasks come from each sample's ``task``, else ``task``, else inference
    (``tasks.assign_tasks``; raises ``CommandError`` when it cannot decide).
    Prediction ids not among the samples are counted and ignored.
    """
    groups, how, skipped = assign_tasks(samples, task)
    results = {}
    for name, group in groups.items():
        results[name] = score_records(name, group, predictions, per_sample=per_sample)
        results[name]["task_source"] = how[name]
    known = {s.id for s in samples}
    unknown = [pid for pid in predictions if pid not in known]
    return {
        **summarise(results),
        "tasks": results,
        "skipped_other_tasks": skipped,
        "unknown_prediction_ids": len(unknown),
        "unknown_prediction_id_examples": unknown[:_EXAMPLES],
    }


def _cell(value: float | None, width: int) -> str:
    return f"{'-' if value is None else f'{value:.2f}':>{width}}"


def format_table(report: Mapping) -> str:
    """The paper's table row (Scene ... psum, Loc. ... nsum) plus per-task notes."""
    tasks = report["tasks"]
    columns = [*PSUM_TASKS, "psum", *NSUM_TASKS, "nsum"]
    width = 8
    header = f"{'':<10}" + "".join(f"{LABELS.get(c, c):>{width}}" for c in columns)
    rows = [header]
    for row, key in (("score", "score"), ("n", "n"), ("parsed %", "parse_rate")):
        cells = []
        for c in columns:
            if c in ("psum", "nsum"):
                cells.append(_cell(report[c], width) if key == "score" else " " * width)
            elif c not in tasks or tasks[c][key] is None:
                cells.append(f"{'-':>{width}}")
            elif key == "n":
                cells.append(f"{tasks[c]['n']:>{width}d}")
            else:
                scale = 100.0 if key == "parse_rate" else 1.0
                cells.append(_cell(tasks[c][key] * scale, width))
        rows.append(f"{row:<10}" + "".join(cells))
    lines = ["\n".join(rows), ""]
    if report.get("nsum_median") is not None:
        far = report.get("far_off_share")
        lines.append(f"robust companions of nsum: nsum_median {report['nsum_median']:.2f} (the same sum of the "
                     f"tasks' median errors)" + ("" if far is None else f"; {100 * far:.1f}% of counting answers "
                                                 "more than 10x off"))
    for name, res in tasks.items():
        notes = [
            f"{name}: {res['metric']} = {_cell(res['score'], 0).strip()} over {res['n']} samples"
        ]
        if res["missing_predictions"]:
            notes.append(f"{res['missing_predictions']} without a prediction (scored as wrong)")
        if res["gt_unparseable"]:
            notes.append(
                f"{res['gt_unparseable']} with an unparseable ground truth left out "
                f"(e.g. {', '.join(map(repr, res['gt_unparseable_ids']))})"
            )
        notes.append(f"task: {res['task_source']}")
        lines.append("; ".join(notes))
    if report["unknown_prediction_ids"]:
        examples = ", ".join(map(repr, report["unknown_prediction_id_examples"]))
        lines.append(
            f"{report['unknown_prediction_ids']} prediction ids not in the annotations, ignored (e.g. {examples})"
        )
    if report["skipped_other_tasks"]:
        lines.append(
            f"{report['skipped_other_tasks']} annotation records of other tasks skipped (--task)"
        )
    return "\n".join(lines)
