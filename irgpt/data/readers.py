"""Reading LLaVA / InternVL conversation files, whatever their layout.

Layouts (detected from the content, never from the file name; docs/import.md):

- JSON array `[{...}, {...}]` (also several arrays back to back);
- JSON Lines, one object per line (blank lines skipped);
- concatenated objects with no enclosing array, pretty-printed or not,
  separated by whitespace, by commas (a trailing one too) or by nothing
  (`{...}{...}`, `{...},\n{...},`): the IR-TD authors' files;
- an InternVL meta file `{name: {"root": DIR, "annotation": FILE, ...}}`,
  which names annotation files to read (each with its own image root).

Record positions (`Record.line_or_index`): JSON Lines -> the 1-based line
number; every other layout -> the 0-based position of the record in the file.

A record that cannot be parsed on its own (a bad JSON Lines line, a broken
object or array element, nesting too deep, an integer too long for Python)
is yielded with `error` set, naming its line, column and byte offset; reading
resumes at the next record start, so the damage costs that record only.
Bytes that are not UTF-8 reach `parse_record` as lone surrogates and reject
the record holding them. A file that is not JSON records at all, or cannot be
read, raises `CommandError` naming the file and the line/column.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irgpt.data.json_scan import Record, parse_file
from irgpt.data.schema import BANDS, TASKS
from irgpt.errors import CommandError

ROLE_ALIASES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt"}
"""Accepted `from` values of a turn and what they are stored as."""


@dataclass
class AnnotationFile:
    """One annotation file's records, with what its layout and meta entry say."""

    path: Path
    layout: str
    """`array`, `jsonl`, `concatenated` or `empty`."""
    records: list[Record]
    image_root: Path | None = None
    """The meta entry's `root` (None for files given directly)."""
    meta_name: str | None = None
    meta_file: Path | None = None
    declared_length: int | None = None
    """The meta entry's `length`, for the manifest (not enforced)."""
    extra: dict = field(default_factory=dict)


class RecordRejected(Exception):
    """A record that cannot become a row. `str(exc)` = `kind` or `kind: detail`."""

    def __init__(self, kind: str, detail: str | None = None):
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}" if detail else kind)


def _is_meta(values: list) -> bool:
    if len(values) != 1 or not isinstance(values[0], dict) or not values[0]:
        return False
    return all(
        isinstance(v, dict) and isinstance(v.get("annotation"), str) for v in values[0].values()
    )


def _read_bytes(path: Path, what: str = "input file") -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise CommandError(f"{path}: {what} not found") from exc
    except IsADirectoryError as exc:
        raise CommandError(f"{path}: is a directory, expected an annotation file") from exc
    except OSError as exc:
        raise CommandError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _meta_path(raw: str, base: Path, remap: Callable[[str], str] | None) -> Path:
    mapped = Path(remap(raw) if remap else raw).expanduser()
    return mapped if mapped.is_absolute() else base / mapped


def iter_annotation_files(
    path: str | Path, remap: Callable[[str], str] | None = None
) -> Iterator[AnnotationFile]:
    """The annotation files behind one input: itself, or a meta file's entries.

    `remap` (the importer's `--image-root-map`) is applied to a meta file's
    `root` and `annotation` strings; relative ones resolve against the meta
    file's directory.
    """
    path = Path(path)
    layout, records, values = parse_file(path, _read_bytes(path))
    if layout == "array" or not _is_meta(values):  # a meta file is one object, never an array element
        yield AnnotationFile(path, layout, records)
        return
    for name, entry in values[0].items():
        ann = _meta_path(entry["annotation"], path.parent, remap)
        root = entry.get("root")
        if root is not None and not isinstance(root, str):
            raise CommandError(
                f"{path}: meta entry {name!r}: 'root' must be a string, got {root!r}"
            )
        root_path = _meta_path(root, path.parent, remap) if root else None
        sub_layout, sub_records, _ = parse_file(
            ann, _read_bytes(ann, f"annotation file of meta entry {name!r} in {path}")
        )
        length = entry.get("length")
        yield AnnotationFile(
            ann,
            sub_layout,
            sub_records,
            image_root=root_path,
            meta_name=str(name),
            meta_file=path,
            declared_length=length if isinstance(length, int) else None,
            extra={k: v for k, v in entry.items() if k not in ("annotation", "root", "length")},
        )


def iter_records(path: str | Path, remap: Callable[[str], str] | None = None) -> Iterator[Record]:
    """Every record of an input file (meta files expanded), in file order."""
    for ann in iter_annotation_files(path, remap):
        yield from ann.records


# -------------------------------------------------------------- fields ----
@dataclass(frozen=True)
class ParsedRecord:
    """A record's fields, checked; `id` is None when the record has none."""

    id: str | None
    image: str
    conversations: list[dict]
    task: str | None = None
    band: str | None = None
    width: int | None = None
    height: int | None = None


def normalise_task(name: str) -> str | None:
    """`Aerial Counting`, `aerial-counting`, `AerialCounting` -> `aerial_counting`."""
    key = re.sub(r"[\s_\-]+", "", name.lower())
    for task in TASKS:
        if task.replace("_", "") == key:
            return task
    return None


def _optional_int(obj: dict, key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RecordRejected("invalid width/height", f"{key}={value!r} is not a positive integer")
    return value


def _conversations(obj: dict) -> list[dict]:
    turns = obj.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise RecordRejected("no conversations", "expected a non-empty 'conversations' list")
    out = []
    for n, turn in enumerate(turns):
        if (
            not isinstance(turn, dict)
            or not isinstance(turn.get("value"), str)
            or not isinstance(turn.get("from"), str)
        ):
            raise RecordRejected(
                "malformed conversation turn", f"turn {n} needs string 'from' and 'value'"
            )
        role = ROLE_ALIASES.get(turn["from"].strip().lower())
        if role is None:
            raise RecordRejected(
                "unsupported turn role",
                f"turn {n} is from {turn['from']!r} (accepted: {sorted(ROLE_ALIASES)})",
            )
        out.append({"from": role, "value": turn["value"]})
    humans = [t for t in out if t["from"] == "human"]
    answers = [t for t in out if t["from"] == "gpt"]
    if not humans:
        raise RecordRejected("no human turn")
    if not answers:
        raise RecordRejected("no gpt turn")
    if not answers[0]["value"].strip():
        raise RecordRejected("empty answer", "the first gpt turn is empty")
    return out


def _check_text(obj: dict) -> None:
    """Every string of a record (keys too) must be encodable as UTF-8.

    JSON may spell a lone surrogate (`"\\ud83d"`), and undecodable input bytes
    arrive as lone surrogates too; Parquet cannot store either.
    """
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                stack.append((key, f"{where}.{key}".lstrip(".") + " (key)"))
                stack.append((item, f"{where}.{key}".lstrip(".")))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{n}]") for n, item in enumerate(value))
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                bad = value[exc.start]
                what = (
                    f"undecodable byte 0x{ord(bad) - 0xDC00:02x}"
                    if 0xDC80 <= ord(bad) <= 0xDCFF
                    else f"lone surrogate U+{ord(bad):04X}"
                )
                raise RecordRejected("invalid text", f"{what} in {where or 'the record'}") from None


def parse_record(obj: Any) -> ParsedRecord:
    """Check one record's fields; raises `RecordRejected` naming what is wrong."""
    if not isinstance(obj, dict):
        raise RecordRejected("not a JSON object", f"got {type(obj).__name__}")
    _check_text(obj)
    raw_id = obj.get("id")
    if raw_id is None or raw_id == "":
        rid = None
    elif isinstance(raw_id, str):
        rid = raw_id
    elif isinstance(raw_id, int) and not isinstance(raw_id, bool):
        rid = str(raw_id)
    else:
        raise RecordRejected("invalid id", f"{raw_id!r} is not a string or an integer")
    image = obj.get("image")
    if isinstance(image, list):
        if len(image) > 1:
            raise RecordRejected("multi-image records are not supported", f"{len(image)} images")
        image = image[0] if image else None
    if image is None or image == "":
        raise RecordRejected("no image field")
    if not isinstance(image, str):
        raise RecordRejected("invalid image field", f"{image!r} is not a path string")
    conversations = _conversations(obj)
    task = obj.get("task")
    if task is not None:
        norm = normalise_task(task) if isinstance(task, str) else None
        if norm is None:
            raise RecordRejected("unknown task name", f"{task!r} (accepted: {', '.join(TASKS)})")
        task = norm
    band = obj.get("band")
    if band is not None:
        if not isinstance(band, str) or band.strip().lower() not in BANDS:
            raise RecordRejected("unknown band name", f"{band!r} (accepted: {', '.join(BANDS)})")
        band = band.strip().lower()
    return ParsedRecord(
        rid,
        image,
        conversations,
        task,
        band,
        _optional_int(obj, "width"),
        _optional_int(obj, "height"),
    )
