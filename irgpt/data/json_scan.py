"""Reading JSON records tolerantly: every top-level value of a file, damage confined to one record.

Layouts (detected from the content): a JSON array (several back to back too),
JSON Lines, or values one after another separated by whitespace, commas or
nothing (docs/import.md). A value that does not parse (broken JSON, nesting too
deep, an integer too long for Python) becomes a `Record` with `error` naming
its line, column and byte offset, and reading resumes at the next record start.
`irgpt.data.readers` builds the annotation-file layer (meta files, field
checks) on `parse_file`.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irgpt.errors import CommandError

_WS = re.compile(r"[ \t\n\r]*")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Record:
    """One input record: where it came from and its parsed JSON (or why not)."""

    source_file: str
    line_or_index: int
    obj: Any = None
    error: str | None = None
    """A reject reason when the record could not be parsed (obj is then None)."""


def _line_col(buf: str | bytes, pos: int) -> tuple[int, int]:
    nl = "\n" if isinstance(buf, str) else b"\n"
    line = buf.count(nl, 0, pos) + 1
    col = pos - (buf.rfind(nl, 0, pos) + 1) + 1
    return line, col


_PARSE_ERRORS = (ValueError, RecursionError)
"""What `json` raises on a broken value: JSONDecodeError (a ValueError), ValueError for an
integer over `sys.get_int_max_str_digits()` digits, RecursionError for deep nesting."""

_RECORD_START = re.compile(r"\n([ \t]*)\{")


def _json_problem(exc: Exception) -> str:
    """A person-readable reason for a `_PARSE_ERRORS` exception (no position)."""
    if isinstance(exc, RecursionError):
        return "nesting too deep"
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if "integer string conversion" in str(exc):
        return f"integer with more than {sys.get_int_max_str_digits()} digits"
    return str(exc)


@dataclass(frozen=True)
class _Value:
    """One top-level value (or array element) of a file: parsed, or why not."""

    start: int
    end: int
    value: Any = None
    error: str | None = None


class _Locator:
    """Line, column and byte offset of positions in one text, counted on from the last
    position asked for, so a file with many broken records is still read in linear time."""

    def __init__(self, text: str):
        self.text, self.pos, self.line, self.byte = text, 0, 1, 0

    def at(self, pos: int) -> tuple[int, int, int]:
        if pos < self.pos:  # rare (an error found past the next record start): count from the top
            self.pos, self.line, self.byte = 0, 1, 0
        chunk = self.text[self.pos : pos]
        self.line += chunk.count("\n")
        self.byte += len(chunk.encode("utf-8", "surrogateescape"))
        self.pos = pos
        return self.line, pos - (self.text.rfind("\n", 0, pos) + 1) + 1, self.byte


def _resync(text: str, start: int, column: int | None, decoder: json.JSONDecoder) -> int:
    """Where the next record starts after a broken one that began at `start`.

    A candidate is a `{` that opens a line (at the column of the records read so
    far, when known), parses as a whole value, and is followed by a separator
    (`,` `]` `{` `[`) or the end of the file. No candidate: the end of the file.
    """
    for match in _RECORD_START.finditer(text, start + 1):
        if column is not None and len(match.group(1)) != column:
            continue
        candidate = match.end() - 1
        try:
            _value, end = decoder.raw_decode(text, candidate)
        except _PARSE_ERRORS:
            continue
        after = _WS.match(text, end).end()
        if after >= len(text) or text[after] in ",]{[":
            return candidate
    return len(text)


def _scan_values(text: str, array_file: bool) -> list[_Value]:
    """Every record-level value of a JSON text, damage confined to the value it hits.

    Accepts a JSON array (its elements; several arrays back to back too) or
    values one after another, separated by whitespace, commas or nothing (the
    IR-TD authors' `{...},\n{...},` files, a trailing comma included). A value
    that does not parse becomes an entry with `error` (its line, column and
    byte offset), and reading resumes at the next record start (`_resync`).
    """
    decoder = json.JSONDecoder()
    locate = _Locator(text)
    out: list[_Value] = []
    pos = _WS.match(text, 0).end()
    depth, column = 0, None
    while pos < len(text):
        char = text[pos]
        if array_file and char == "[" and depth == 0:
            depth, pos = 1, _WS.match(text, pos + 1).end()
            continue
        if array_file and char == "]" and depth == 1:
            depth, pos = 0, _WS.match(text, pos + 1).end()
            continue
        if char == ",":
            pos = _WS.match(text, pos + 1).end()
            continue
        try:
            value, end = decoder.raw_decode(text, pos)
        except _PARSE_ERRORS as exc:
            where = exc.pos if isinstance(exc, json.JSONDecodeError) else pos
            nxt = _resync(text, pos, column, decoder)
            line, col, byte = locate.at(where)
            reason = f"invalid JSON: {_json_problem(exc)} at line {line} column {col} (byte {byte})"
            if nxt < len(text):
                reason += f"; reading resumed at line {locate.at(nxt)[0]}"
            else:
                reason += "; no record start found after it, the rest of the file is skipped"
            out.append(_Value(pos, nxt, error=reason))
            pos = nxt
            continue
        if column is None:
            column = _line_col(text, pos)[1] - 1
        out.append(_Value(pos, end, value))
        pos = _WS.match(text, end).end()
    return out


def _looks_line_delimited(data: bytes, sample: int = 50) -> bool:
    """True when at least half of the first `sample` non-blank lines are JSON objects."""
    lines = [raw for raw in data.split(b"\n") if raw.strip()][:sample]
    good = 0
    for raw in lines:
        try:
            good += isinstance(json.loads(raw.decode("utf-8")), dict)
        except (UnicodeDecodeError, *_PARSE_ERRORS):
            pass
    return bool(lines) and 2 * good >= len(lines)


def _jsonl_records(path: Path, data: bytes) -> list[Record]:
    """Line by line: a bad line is a rejected record, the others are kept."""
    out = []
    name = str(path)
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            out.append(
                Record(name, number, error=f"invalid UTF-8: byte {exc.start + 1} of line {number}")
            )
            continue
        try:
            out.append(Record(name, number, json.loads(text)))
        except _PARSE_ERRORS as exc:
            col = f" column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            out.append(
                Record(name, number, error=f"invalid JSON: {_json_problem(exc)} at line {number}{col}")
            )
    return out


def _line_spans(text: str, values: list[_Value]) -> list[tuple[int, int]]:
    """(first line, last line) of each value; one pass over the text (values are in order)."""
    spans, line, pos = [], 1, 0
    for v in values:
        line += text.count("\n", pos, v.start)
        last = line + text.count("\n", v.start, v.end)
        spans.append((line, last))
        line, pos = last, v.end
    return spans


def _records(name: str, values: list[_Value], positions: list[int]) -> list[Record]:
    return [Record(name, n, v.value, v.error) for n, v in zip(positions, values)]


def _values_to_records(path: Path, text: str, values: list[_Value], array_file: bool) -> tuple[str, list[Record]]:
    name = str(path)
    if array_file:  # arrays: elements numbered across all arrays
        return "array", _records(name, values, list(range(len(values))))
    spans = _line_spans(text, values)
    one_per_line = all(a == b for (a, b), v in zip(spans, values) if v.error is None)
    if one_per_line and len({a for a, _ in spans}) == len(spans):
        return "jsonl", _records(name, values, [a for a, _ in spans])
    return "concatenated", _records(name, values, list(range(len(values))))


def parse_file(path: Path, data: bytes) -> tuple[str, list[Record], list]:
    """(layout, records, top-level values) of one file's bytes.

    A broken record costs that record (a `Record` with `error`), never the file:
    line-delimited files are read line by line; other layouts are scanned value
    by value and resynchronised after a broken one (`_scan_values`). Bytes that
    are not UTF-8 are kept as lone surrogates, so the record holding them is
    rejected by `parse_record`.
    """
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    stripped = data.lstrip(b" \t\r\n")
    if not stripped:
        return "empty", [], []
    first = stripped[:1]
    if first not in (b"[", b"{"):
        line, col = _line_col(data, len(data) - len(stripped))
        shown = stripped[:1].decode("utf-8", "replace")
        raise CommandError(
            f"{path}: not JSON records: expected '[' or '{{' at line {line} column {col}, found {shown!r}"
        )
    try:
        text, utf8 = data.decode("utf-8"), True
    except UnicodeDecodeError:
        text, utf8 = data.decode("utf-8", "surrogateescape"), False
    array_file = first == b"["
    values = _scan_values(text, array_file)
    damaged = any(v.error for v in values)
    if not array_file and (damaged or not utf8) and _looks_line_delimited(data):
        return "jsonl", _jsonl_records(path, data), []
    layout, records = _values_to_records(path, text, values, array_file)
    return layout, records, [v.value for v in values if v.error is None]
