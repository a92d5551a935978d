"""Read benchmark annotations and model predictions.

Annotations use the IR-TD conversation layout (docs/method.md, "The benchmark"):
``{"id", "image": [path] or path, "conversations": [{"from": "human",
"value": "<image>\\n..."}, {"from": "gpt", "value": "..."}]}``, optionally
with a ``task`` field. A file may be a JSON array, JSONL, or JSON objects
concatenated with no enclosing array (the authors ship both of the latter
kinds); all three are read by ``read_json_records``.

Predictions are records ``{"id", "answer"}`` joined to annotations by id
(``load_predictions``), or the pairs layout ``{"answer", "label"}`` that the
IR-TD authors' scoring scripts read, where ``label`` is the ground truth and
no annotations file is needed (``load_pairs``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from irgpt.errors import CommandError
from irgpt.eval.tasks import parse_task_label

_SEPARATOR = re.compile(r"\s*,?\s*")  # between concatenated objects


@dataclass(frozen=True)
class Sample:
    """One benchmark item: its ground-truth answer and what scoring needs."""

    id: str
    answer: str  # ground truth, in the task's answer format
    question: str = ""  # the human turn without "<image>"; holds the options
    task: str | None = None  # from the record's "task" field, else inferred
    images: tuple[str, ...] = ()
    source: str = ""  # file name, for task inference and messages


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CommandError(f"{path}: is a directory, not a JSON file") from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise CommandError(f"{path}: cannot read ({exc.strerror})") from None


def _json_error(path: Path, exc: json.JSONDecodeError) -> CommandError:
    return CommandError(
        f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno} (char {exc.pos}): {exc.msg}"
    )


def read_located_records(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """``(where, record)`` pairs from a JSON array, JSONL or concatenated objects.

    ``where`` names the record for error messages ("record 3 (line 12)").
    Errors name the file and the line, column and character position.
    """
    p = Path(path)
    text = _read_text(p)
    start = _SEPARATOR.match(text, 0).end()
    if text.startswith("[", start):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _json_error(p, exc) from None
        except RecursionError:
            raise CommandError(f"{p}: JSON nested too deeply") from None
        located = [(f"record {i}", rec) for i, rec in enumerate(value)]
    else:
        located = []
        decoder = json.JSONDecoder()
        idx, line, counted = start, 1, 0
        while idx < len(text):
            line += text.count("\n", counted, idx)
            counted = idx
            where = f"record {len(located)} (line {line})"
            try:
                rec, end = decoder.raw_decode(text, idx)
            except json.JSONDecodeError as exc:
                raise _json_error(p, exc) from None
            except RecursionError:
                raise CommandError(f"{p}: {where}: JSON nested too deeply (char {idx})") from None
            located.append((where, rec))
            idx = _SEPARATOR.match(text, end).end()
    for where, rec in located:
        if not isinstance(rec, dict):
            raise CommandError(f"{p}: {where} is a JSON {type(rec).__name__}, not an object")
    return located


def read_json_records(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON array, JSONL or concatenated-objects file."""
    return [rec for _, rec in read_located_records(path)]


def _id(p: Path, where: str, rec: dict, default: str | None = None) -> str:
    if "id" not in rec:
        if default is not None:
            return default
        raise CommandError(f"{p}: {where} has no 'id'")
    value = rec["id"]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise CommandError(f"{p}: {where}: 'id' must be a string or number, got {value!r:.40}")
    return str(value)


def answer_as_text(value: object) -> str:
    """A predicted or labelled answer as text: null -> "", numbers as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return ""


def _task(p: Path, where: str, rec: dict) -> str | None:
    if rec.get("task") is None:
        return None
    try:
        return parse_task_label(rec["task"])
    except ValueError as exc:
        raise CommandError(f"{p}: {where}: {exc}") from None


def _images(rec: dict) -> tuple[str, ...]:
    image = rec.get("image")
    if isinstance(image, str):
        return (image,)
    if isinstance(image, list):
        return tuple(str(i) for i in image)
    return ()


def _question(text: str) -> str:
    return text.replace("<image>", "").strip()


def _exchange(p: Path, where: str, rec: dict) -> tuple[str, str]:
    """(question, answer) of the first human turn and the gpt turn after it."""
    conversations = rec.get("conversations")
    if not isinstance(conversations, list):
        raise CommandError(f"{p}: {where} has no 'conversations' list")
    question = None
    for turn in conversations:
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise CommandError(f"{p}: {where}: each conversation turn needs a string 'value'")
        if question is None and turn.get("from") == "human":
            question = turn["value"]
        elif question is not None and turn.get("from") == "gpt":
            return _question(question), turn["value"]
    raise CommandError(f"{p}: {where} has no human turn followed by a gpt turn")


def _check_unique(p: Path, seen: dict[str, str], sid: str, where: str) -> None:
    if sid in seen:
        raise CommandError(f"{p}: {where} repeats id {sid!r} (first at {seen[sid]})")
    seen[sid] = where


def load_annotations(path: str | os.PathLike) -> list[Sample]:
    """Benchmark samples from an IR-TD conversation-layout file (any of the 3 layouts)."""
    p = Path(path)
    samples, seen = [], {}
    for where, rec in read_located_records(p):
        sid = _id(p, where, rec)
        _check_unique(p, seen, sid, where)
        question, answer = _exchange(p, where, rec)
        samples.append(Sample(sid, answer, question, _task(p, where, rec), _images(rec), p.name))
    if not samples:
        raise CommandError(f"{p}: no annotation records")
    return samples


def load_predictions(path: str | os.PathLike) -> dict[str, str]:
    """``id -> answer`` from prediction records ``{"id", "answer"}`` (a label is ignored)."""
    p = Path(path)
    answers, seen = {}, {}
    for where, rec in read_located_records(p):
        sid = _id(p, where, rec)
        if "answer" not in rec:
            raise CommandError(f"{p}: {where} has no 'answer'")
        _check_unique(p, seen, sid, where)
        answers[sid] = answer_as_text(rec["answer"])
    return answers


def load_pairs(path: str | os.PathLike) -> tuple[list[Sample], dict[str, str]]:
    """Samples and answers from the pairs layout ``{"answer", "label"}``.

    Optional per-record ``id`` (else the record index), ``question`` (for
    option-text matching and task inference) and ``task``.
    """
    p = Path(path)
    samples, answers, seen = [], {}, {}
    for i, (where, rec) in enumerate(read_located_records(p)):
        for key in ("answer", "label"):
            if key not in rec:
                hint = " (pass --annotations to join predictions by id)" if key == "label" else ""
                raise CommandError(f"{p}: {where} has no '{key}'{hint}")
        sid = _id(p, where, rec, default=str(i))
        _check_unique(p, seen, sid, where)
        question = _question(answer_as_text(rec.get("question")))
        samples.append(
            Sample(
                sid, answer_as_text(rec["label"]), question, _task(p, where, rec), _images(rec), p.name
            )
        )
        answers[sid] = answer_as_text(rec["answer"])
    if not samples:
        raise CommandError(f"{p}: no prediction records")
    return samples, answers
