"""Defensive readers for the files a run directory may hold.

The report must render any run, finished or not, so every reader here tells
three cases apart and never guesses:

- the file is absent           -> `Missing` (the section says "not run");
- the file is there but broken -> `Corrupt` (the section shows an error note
  and the report warns on stderr);
- it reads                     -> plain Python / pandas objects.

Columns are read when present: a dataset that lacks a column the report would
like gives a DataFrame without it, and the plot that needs it says so.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pandas as pd

from irgpt.data.io import MANIFEST, shard_paths


class Missing(Exception):
    """An input the report looked for does not exist (that stage has not run)."""

    def __init__(self, path: Path, what: str = ""):
        super().__init__(str(path))
        self.path = Path(path)
        self.what = what


class Corrupt(Exception):
    """An input exists but cannot be read; the message says why."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"{path}: {why}")
        self.path = Path(path)
        self.why = why


def read_json(path: str | Path) -> dict:
    """A JSON object from `path` (Missing / Corrupt otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise Missing(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Corrupt(path, f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise Corrupt(path, f"expected a JSON object, found {type(obj).__name__}")
    return obj


def read_jsonl(path: str | Path) -> tuple[list[dict], int]:
    """The JSON objects of a JSON-lines file and how many lines were unreadable.

    A run that is still training may have a half-written last line, so bad
    lines are counted, not fatal; a file with no readable line is Corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise Missing(path)
    records, bad = [], 0
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise Corrupt(path, f"cannot read ({exc.strerror})") from None
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(obj, dict):
            records.append(obj)
        else:
            bad += 1
    if bad and not records:
        raise Corrupt(path, f"none of its {bad} lines is a JSON object")
    return records, bad


def read_manifest(directory: str | Path) -> dict:
    """`DIR/manifest.json` of a dataset directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise Missing(directory / MANIFEST)
    return read_json(directory / MANIFEST)


def read_columns(paths: list[Path], wanted: list[str], where: Path) -> pd.DataFrame:
    """The `wanted` columns that the Parquet files hold, as one DataFrame."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not paths:
        raise Missing(where / "part-*.parquet")
    tables = []
    for p in paths:
        try:
            names = pq.read_schema(p).names
            cols = [c for c in wanted if c in names]
            tables.append(pq.read_table(p, columns=cols))
        except (OSError, pa.ArrowException) as exc:
            raise Corrupt(p, f"not a readable Parquet file ({exc})") from None
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowException as exc:
        raise Corrupt(where, f"shards disagree on their schema ({exc})") from None
    return table.to_pandas()


def read_dataset(directory: str | Path, wanted: list[str]) -> pd.DataFrame:
    """Columns of `DIR/part-*.parquet` (those of `wanted` that exist)."""
    directory = Path(directory)
    return read_columns(shard_paths(directory), wanted, directory)


def read_tier_rows(directory: str | Path, wanted: list[str]) -> pd.DataFrame:
    """Rows of `tiers/tier=K/part-*.parquet`, with `tier` taken from the folder when absent."""
    directory = Path(directory)
    frames = []
    for sub in sorted(directory.glob("tier=*")):
        try:
            k = int(sub.name.split("=", 1)[1])
        except ValueError:
            continue
        paths = shard_paths(sub)
        if not paths:
            continue
        df = read_columns(paths, wanted, sub)
        if "tier" not in df.columns:
            df["tier"] = k
        frames.append(df)
    if not frames:
        raise Missing(directory / "tier=K" / "part-*.parquet")
    return pd.concat(frames, ignore_index=True)


def read_csv(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise Missing(path)
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, csv.Error, pd.errors.ParserError) as exc:
        raise Corrupt(path, f"not a readable CSV file ({exc})") from None
    return df


def read_text(path: str | Path, limit: int = 200_000) -> str:
    path = Path(path)
    if not path.is_file():
        raise Missing(path)
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:limit]
    except OSError as exc:
        raise Corrupt(path, f"cannot read ({exc.strerror})") from None


def number(value) -> float | None:
    """`value` as a finite float, or None (for fields written by other stages)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None
