"""Dataset directories: Parquet shards + `manifest.json` (+ rejects).

Layout of every dataset this project writes:

    DIR/manifest.json            schema version, counts, command, config hash, seed
    DIR/part-00000.parquet ...   the rows (one schema for all shards)
    DIR/_rejects/rejects.parquet every input record that was not written, with why

`ray.data.read_parquet(DIR)` and DuckDB's `read_parquet('DIR/*.parquet')` read
the rows as they are (the rejects live in a `_`-prefixed folder, which Arrow's
and Ray's discovery skip and a non-recursive glob does not reach). pandas
(through Arrow) would also try to read `manifest.json` as Parquet, so give it
the ignore list: `pd.read_parquet(DIR, ignore_prefixes=PANDAS_IGNORE)`, or
`read_pandas(DIR)`.

Writes are atomic (temp name, then rename) so a crash never leaves a
half-written shard or manifest under its final name.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from irgpt import __version__, storage
from irgpt.data.schema import REJECTS_SCHEMA, SCHEMA_VERSION
from irgpt.errors import CommandError

MANIFEST = "manifest.json"
REJECTS_DIR = "_rejects"
REJECTS_FILE = "rejects.parquet"
PANDAS_IGNORE = [MANIFEST, "_", "."]
"""`ignore_prefixes` for `pandas.read_parquet(DIR, ...)` / `pyarrow.parquet.read_table`."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Temp name, fsync, rename (`storage.write_bytes`; an object-storage URI: one upload)."""
    storage.write_bytes(path, data)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def write_table(path: str | Path, table: pa.Table) -> None:
    """Write one Parquet file atomically (`storage.write_parquet`)."""
    storage.write_parquet(path, table)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _existing_output(out: Path) -> str | None:
    """What an existing `out` holds: None (absent or empty), "dataset", "partial" or "other"."""
    if not out.exists():
        return None
    if not out.is_dir():
        return "other"
    names = [p.name for p in out.iterdir()]
    if not names:
        return None
    if MANIFEST in names:
        return "dataset"
    if all(n.startswith(("part-", "_", ".")) for n in names):
        return "partial"
    return "other"


def manifest_hash(directory: str | Path) -> str:
    """16 hex digits identifying a dataset's contents: the hash of its manifest (which names
    its shards, counts and creation time), so a rewritten dataset gets a new value. A
    folder of shards without a manifest is identified by its shards' names, sizes and
    modification times instead."""
    import hashlib

    directory = Path(directory)
    if (directory / MANIFEST).is_file():
        return hashlib.sha256((directory / MANIFEST).read_bytes()).hexdigest()[:16]
    shards = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in shard_paths(directory)]
    return hashlib.sha256(json.dumps(shards).encode()).hexdigest()[:16]


def _pid_alive(pid: str) -> bool:
    """Whether the process that named a staging directory still runs (on this host)."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


@contextmanager
def staged_output(out: str | Path, *, overwrite: bool):
    """Write a whole dataset into a sibling staging directory, then swap it in.

        with staged_output(out, overwrite=args.overwrite) as stage:
            ...write shards, rejects and the manifest into `stage`...

    A kill at any moment leaves `out` as it was (the old dataset, intact) or the
    new one complete: the swap is one atomic `renameat2(RENAME_EXCHANGE)` on
    Linux (elsewhere two renames, with a window of microseconds where `out` is
    absent and the old data sits beside it as `.NAME.old-PID`). A failed or
    interrupted write removes its staging directory; one left by `kill -9`
    (`.NAME.incoming-PID`) is removed by the next write. An existing dataset is
    replaced only with `overwrite`; a directory that holds something other than a
    dataset is never replaced.
    """
    out = Path(out)
    found = _existing_output(out)
    if found == "other":
        raise CommandError(f"{out}: exists and does not hold a dataset (no {MANIFEST}, other files); "
                           "choose another output directory")
    if found and not overwrite:
        what = ("a dataset" if found == "dataset" else
                "an incomplete dataset (shards without a manifest: an interrupted write of an older version)")
        raise CommandError(f"{out}: already holds {what}; pass --overwrite to replace it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"{out}: cannot create its parent directory: {exc.strerror or exc}") from exc
    for stale in out.parent.glob(f".{out.name}.incoming-*"):
        if not _pid_alive(stale.name.rsplit("-", 1)[-1]):  # a live writer keeps its stage
            shutil.rmtree(stale, ignore_errors=True)
    stage = out.parent / f".{out.name}.incoming-{os.getpid()}"
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    swap_in(stage, out)


def swap_in(stage: Path, out: Path) -> None:
    """Put the complete directory `stage` where `out` is, in one atomic step where the
    OS allows (see `staged_output`); the old `out`, if any, is removed afterwards."""
    if not out.exists():
        os.rename(stage, out)
    elif _exchange(stage, out):  # `out` is the new output; `stage` now holds the old one
        shutil.rmtree(stage, ignore_errors=True)
    else:
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.rename(out, old)
        os.rename(stage, out)
        shutil.rmtree(old, ignore_errors=True)


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def shard_paths(directory: str | Path) -> list[Path]:
    """The shards of a dataset directory (on a node without the driver's work mirror of an
    object-storage dataset, those of this node's fetched copy: `storage.fetch`)."""
    return sorted(storage.fetch(directory).glob("part-*.parquet"))


def read_manifest(directory: str | Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise CommandError(f"{directory}: not a dataset directory (no {MANIFEST})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path}: corrupt manifest: {exc}") from exc


def read_table(directory: str | Path, columns: list[str] | None = None, filter=None) -> pa.Table:
    """All rows of a dataset directory as one Arrow table (small data, tests)."""
    paths = shard_paths(directory)
    if not paths:
        raise CommandError(f"{directory}: no part-*.parquet shards")
    dataset = pds.dataset([str(p) for p in paths], format="parquet")
    return dataset.to_table(columns=columns, filter=filter)


def read_pandas(directory: str | Path, columns: list[str] | None = None):
    """The rows of a dataset directory as a pandas DataFrame."""
    import pandas as pd

    return pd.read_parquet(directory, columns=columns, ignore_prefixes=PANDAS_IGNORE)


def write_rejects(directory: str | Path, rejects: list[dict] | pa.Table) -> int:
    """Write the rejects table (possibly empty, so readers can rely on it)."""
    if isinstance(rejects, pa.Table):
        table = rejects.cast(REJECTS_SCHEMA)
    else:
        rows = [{name: r.get(name) for name in REJECTS_SCHEMA.names} for r in rejects]
        table = pa.Table.from_pylist(rows, schema=REJECTS_SCHEMA)
    write_table(Path(directory) / REJECTS_DIR / REJECTS_FILE, table)
    return table.num_rows


def read_rejects(directory: str | Path) -> pa.Table:
    path = Path(directory) / REJECTS_DIR / REJECTS_FILE
    if not path.is_file():
        return REJECTS_SCHEMA.empty_table()
    return pq.read_table(path)


def count_by(values: Iterable) -> dict[str, int]:
    return dict(sorted(Counter("null" if v is None else str(v) for v in values).items()))


def composition(table: pa.Table, columns: Iterable[str] = ("band", "task", "source", "split")) -> dict:
    """Row counts per value of each column present (for manifests)."""
    return {c: count_by(table.column(c).to_pylist()) for c in columns if c in table.column_names}


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])


def base_manifest(kind: str, **fields) -> dict:
    """Fields every manifest carries (provenance)."""
    return {
        "kind": kind,
        "schema_version": SCHEMA_VERSION,
        "code_version": __version__,
        "created_unix": round(time.time(), 3),
        "command": command_line(),
        "python": platform.python_version(),
        **fields,
    }


def write_manifest(directory: str | Path, manifest: dict) -> None:
    """Write `DIR/manifest.json` atomically, after checking it against its kind's contract
    (`irgpt.data.contracts`): a stage cannot hand a malformed manifest to the next."""
    from irgpt.data.contracts import BY_KIND, parse

    contract = BY_KIND.get(manifest.get("kind"))
    if contract is not None:
        parse(contract, manifest, f"{Path(directory) / MANIFEST} (being written)")
    atomic_write_json(Path(directory) / MANIFEST, manifest)


def read_part(spec: dict, columns: list[str] | None = None) -> pa.Table:
    """Rows [start, stop) of one shard, reading only the row groups needed (a shard of the
    driver's work mirror that this node lacks is read from the store: `storage.fetch`)."""
    pf = pq.ParquetFile(storage.fetch(spec["file"]))
    start, stop = spec["start"], spec["stop"]
    groups, offset, first = [], 0, None
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if offset + n > start and offset < stop:
            groups.append(g)
            first = offset if first is None else first
        offset += n
    table = pf.read_row_groups(groups, columns=columns)
    return table.slice(start - first, stop - start)
