"""The nine benchmark tasks: names, table order, psum/nsum, task inference.

docs/method.md, "The benchmark: 9 tasks, psum and nsum": psum = Scene + Rec. +
Gro. + Rel. + ReID + Sec. (higher is better), nsum = Loc. + A.C. + P.C.
(lower is better). ``BENCHMARK_TASKS`` is the paper's column order.

A record's task comes from, in order: its own ``task`` field, ``--task``, or
inference from its ground-truth answer format (``infer_benchmark_task``). A file with
no ``task`` fields holds one task, so inference is resolved per file
(``assign_tasks``).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol

from irgpt.data.schema import BENCHMARK_TASKS  # the 9 tasks, in the paper's column order
from irgpt.errors import CommandError

PSUM_TASKS = BENCHMARK_TASKS[:6]
NSUM_TASKS = BENCHMARK_TASKS[6:]
LABELS = {
    "scene": "Scene",
    "recognition": "Rec.",
    "grounding": "Gro.",
    "relationship": "Rel.",
    "reid": "ReID",
    "security": "Sec.",
    "location": "Loc.",
    "aerial_counting": "A.C.",
    "pedestrian_counting": "P.C.",
}
# Headline metric per task, in the paper's units.
METRICS = {
    "scene": "accuracy_pct",
    "recognition": "accuracy_pct",
    "grounding": "gt_boxes_matched_pct",
    "relationship": "accuracy_pct",
    "reid": "accuracy_pct",
    "security": "exact_set_accuracy_pct",
    "location": "mean_point_error",
    "aerial_counting": "mae",
    "pedestrian_counting": "mae",
}
_ALIASES = {
    "rec": "recognition",
    "gro": "grounding",
    "rel": "relationship",
    "relation": "relationship",
    "re_id": "reid",
    "sec": "security",
    "loc": "location",
    "ac": "aerial_counting",
    "a_c": "aerial_counting",
    "pc": "pedestrian_counting",
    "p_c": "pedestrian_counting",
}


class HasAnswer(Protocol):
    """What inference reads from a record (``irgpt.eval.readers.Sample``)."""

    id: str
    answer: str
    question: str
    task: str | None
    images: tuple[str, ...]
    source: str


def parse_task_label(name: str) -> str:
    """Canonical task name from a task name or the paper's label ("A.C.", "Rec.").

    Raises ValueError for an unknown name.
    """
    key = re.sub(r"[\s.\-]+", "_", str(name).strip().lower()).strip("_")
    key = _ALIASES.get(key, key)
    if key not in BENCHMARK_TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(BENCHMARK_TASKS)}")
    return key


_COUNT = re.compile(r"<\s*num\s*>", re.IGNORECASE)
_BOX = re.compile(r"<\s*box\s*>", re.IGNORECASE)
_LOC = re.compile(r"<\s*(?:ref|pos)\s*>", re.IGNORECASE)
_MARKER = re.compile(r"\(\s*[A-Za-z]\s*\)")
_VEHICLES = re.compile(r"\b(?:cars?|vehicles?|trucks?|bus(?:es)?|vans?)\b", re.IGNORECASE)
_PEOPLE = re.compile(
    r"\b(?:people|persons?|pedestrians?|humans?|crowds?|men|women)\b", re.IGNORECASE
)
_AERIAL_NAMES = ("aerial", "vedai", "drone", "uav")
_PEDESTRIAN_NAMES = ("pedestrian", "crowd", "people", "person")


def _names_flavour(text: str) -> tuple[str, str] | None:
    """'aerial'/'pedestrian' and the keyword, when a name holds one kind only."""
    low = text.lower()
    aerial = [k for k in _AERIAL_NAMES if k in low]
    pedestrian = [k for k in _PEDESTRIAN_NAMES if k in low]
    if aerial and not pedestrian:
        return "aerial", aerial[0]
    if pedestrian and not aerial:
        return "pedestrian", pedestrian[0]
    return None


def _counting_flavour(
    question: str, names: Sequence[str], images: Sequence[str]
) -> tuple[str | None, str]:
    """Aerial vs pedestrian counting: file name, then image paths, then question."""
    for name in names:
        hit = _names_flavour(os.path.basename(name))
        if hit:
            return (
                f"{hit[0]}_counting",
                f"{hit[0]}: '{hit[1]}' in file name {os.path.basename(name)}",
            )
    for image in images[:4]:
        hit = _names_flavour(image)
        if hit:
            return f"{hit[0]}_counting", f"{hit[0]}: '{hit[1]}' in image path"
    vehicles, people = _VEHICLES.search(question), _PEOPLE.search(question)
    if vehicles and not people:
        return "aerial_counting", f"aerial: question mentions '{vehicles.group().lower()}'"
    if people and not vehicles:
        return "pedestrian_counting", f"pedestrian: question mentions '{people.group().lower()}'"
    return (
        None,
        "<num> count, but neither the file name, the image path nor the question says vehicles or people",
    )


def infer_benchmark_task(
    answer: str,
    question: str = "",
    names: Sequence[str] = (),
    images: Sequence[str] = (),
) -> tuple[str | None, str]:
    """(task, reason) from a ground-truth answer's format; task None if unknown.

    ``<num>`` -> counting (aerial vs pedestrian from ``names`` (file names),
    image paths, then the question mentioning vehicles or people); ``<box>``
    -> grounding; ``<ref>``/``<pos>`` -> location; yes/no -> relationship; a
    single digit 1-8 -> reid; two or more ``(X)`` options -> security; one
    option -> scene if "scene" is in a file name or the question, else
    recognition.
    """
    a = answer.strip()[:4096]
    if _COUNT.search(a):
        task, why = _counting_flavour(question[:4096], names, images)
        return task, f"<num> count answer; {why}"
    if _BOX.search(a):
        return "grounding", "<box> answer"
    if _LOC.search(a):
        return "location", "<ref>/<pos> answer"
    if a.lower().rstrip(".!") in ("yes", "no"):
        return "relationship", "yes/no answer"
    if re.fullmatch(r"[1-8]", a.rstrip(".")):
        return "reid", "single digit 1-8 answer"
    markers = len(_MARKER.findall(a))
    if markers >= 2:
        return "security", "answer lists several options"
    if markers == 1:
        for name in names:
            if "scene" in os.path.basename(name).lower():
                return (
                    "scene",
                    f"single option answer; 'scene' in file name {os.path.basename(name)}",
                )
        if "scene" in question.lower():
            return "scene", "single option answer; question mentions 'scene'"
        return "recognition", "single option answer; no 'scene' in file name or question"
    return None, f"answer {a[:40]!r} matches no benchmark answer format"


def _infer_group(records: Sequence[HasAnswer]) -> tuple[str, str]:
    """One task for the untagged records of a file, with the reason."""
    votes: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {}
    for rec in records:
        names = [rec.source] if rec.source else []
        task, why = infer_benchmark_task(rec.answer, rec.question, names, rec.images)
        if task is None:
            raise CommandError(
                f"{rec.source or 'annotations'}: cannot infer the task of record id "
                f"{rec.id!r}: {why}; pass --task or give each record a 'task' field"
            )
        votes[task] += 1
        reasons.setdefault(task, Counter())[why] += 1
    kinds = set(votes)
    note = ""
    if "security" in kinds and kinds <= {"security", "scene", "recognition"} and len(kinds) > 1:
        # A security answer naming a single absent target looks like one option.
        single = sum(votes[k] for k in kinds - {"security"})
        note = f"; {single} single-option answers read as security too"
        votes = Counter({"security": sum(votes.values())})
    if len(votes) > 1:
        found = ", ".join(f"{k}: {v}" for k, v in sorted(votes.items()))
        raise CommandError(
            f"{records[0].source or 'annotations'}: the ground-truth answers look like several "
            f"tasks ({found}); pass --task or give each record a 'task' field"
        )
    task = next(iter(votes))
    why = reasons[task].most_common(1)[0][0]
    others = len(reasons[task]) - 1
    extra = f" (and {others} other reasons)" if others > 0 else ""
    return task, f"inferred from {len(records)} ground-truth answers: {why}{extra}{note}"


def assign_tasks(
    records: Iterable[HasAnswer], task: str | None = None
) -> tuple[dict[str, list[HasAnswer]], dict[str, str], int]:
    """Group records by task: ``(groups, how each task was decided, n skipped)``.

    A record's ``task`` field wins. With ``task`` given, records whose field
    names another task are skipped (counted); untagged records take ``task``.
    Without it, the untagged records are inferred together as one task.
    """
    groups: dict[str, list[HasAnswer]] = {}
    sources: dict[str, set[str]] = {}
    untagged: list[HasAnswer] = []
    skipped = 0
    for rec in records:
        if rec.task is not None:
            if task is not None and rec.task != task:
                skipped += 1
                continue
            groups.setdefault(rec.task, []).append(rec)
            sources.setdefault(rec.task, set()).add("record 'task' field")
        elif task is not None:
            groups.setdefault(task, []).append(rec)
            sources.setdefault(task, set()).add("--task")
        else:
            untagged.append(rec)
    if untagged:
        inferred, why = _infer_group(untagged)
        groups.setdefault(inferred, []).extend(untagged)
        sources.setdefault(inferred, set()).add(why)
    ordered = {t: groups[t] for t in BENCHMARK_TASKS if t in groups}
    return ordered, {t: "; ".join(sorted(sources[t])) for t in ordered}, skipped
