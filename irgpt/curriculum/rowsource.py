"""Fetch rows by global row id from tier (or plain dataset) Parquet files.

Global row ids lay the tiers end to end in file-name and row order (the
composite order `irgpt tier` wrote). A read takes any list of ids (repeats
allowed, any order), reads only the row groups that hold them, with only the
requested columns, and returns the rows in the list's order. No Ray, no
reliance on stream order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from irgpt.data import contracts
from irgpt.data.io import shard_paths
from irgpt.errors import CommandError


@dataclass
class FileRows:
    """One Parquet file and the rows of it that belong to the source (None = all)."""

    path: Path
    select: np.ndarray | None
    row_group_starts: np.ndarray
    """Start row of each row group, plus the file's row count at the end."""

    @property
    def size(self) -> int:
        return int(self.row_group_starts[-1]) if self.select is None else len(self.select)


def _file_rows(path: Path, select: np.ndarray | None = None) -> FileRows:
    meta = pq.ParquetFile(path).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    return FileRows(path, select, np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64))


class RowSource:
    """The rows of M tiers (lists of files), addressable by global row id."""

    def __init__(self, tiers: list[list[FileRows]], columns: list[str], constants: dict | None = None, origin: str = ""):
        self.tiers = tiers
        self.files = [f for tier in tiers for f in tier]
        self.tier_sizes = [sum(f.size for f in tier) for tier in tiers]
        sizes = [f.size for f in self.files]
        self.file_starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        self.columns = columns
        """Columns in the files."""
        self.constants = constants or {}
        """Columns not in the files, with their constant value (e.g. tier 0, weight 1)."""
        self.origin = origin

    @classmethod
    def from_tier_dir(cls, tier_dir: str | Path) -> RowSource:
        tier_dir = Path(tier_dir)
        manifest = contracts.read(contracts.TiersManifest, tier_dir)
        tiers = []
        for k in range(manifest.num_tiers):
            files = shard_paths(tier_dir / f"tier={k}")
            if not files:
                raise CommandError(f"{tier_dir}/tier={k}: no part-*.parquet files")
            tiers.append([_file_rows(f) for f in files])
        source = cls(tiers, pq.ParquetFile(tiers[0][0].path).schema_arrow.names, origin=str(tier_dir))
        if source.tier_sizes != manifest.tier_sizes:
            raise CommandError(f"{tier_dir}: tier files hold {source.tier_sizes} rows, manifest says {manifest.tier_sizes}")
        return source

    @classmethod
    def from_dataset_dir(cls, data_dir: str | Path | list, filter=None) -> RowSource:
        """All rows of a samples dataset (or those `filter` keeps) as one tier;
        a list of dataset directories gives one tier per directory, in order.

        filter: None; a dict {column: value or list of values} (all must
        match); a `pyarrow.dataset.Expression`; or a callable(table) -> bool
        mask, given every column but `image`. Columns the files lack get
        constants: `tier` (the directory's index) and `weight` 1.0.
        """
        dirs = list(data_dir) if isinstance(data_dir, (list, tuple)) else [data_dir]
        tiers, schema = [], None
        for d in dirs:
            files = shard_paths(d)
            if not files:
                raise CommandError(f"{d}: no part-*.parquet shards")
            schema = schema or pq.ParquetFile(files[0]).schema_arrow
            tiers.append([_file_rows(f, None if filter is None else _select(f, schema, filter)) for f in files])
        constants = {c: v for c, v in (("tier", 0), ("weight", 1.0)) if c not in schema.names}
        source = cls(tiers, schema.names, constants, origin=", ".join(str(d) for d in dirs))
        if sum(source.tier_sizes) == 0:
            raise CommandError(f"{source.origin}: the filter {filter!r} keeps no rows")
        return source

    def tier_of(self, rows: np.ndarray) -> np.ndarray:
        """Tier index of each global row id."""
        return np.searchsorted(np.cumsum(self.tier_sizes), rows, side="right")

    def read(self, rows: np.ndarray, columns: list[str]) -> pa.Table:
        """The rows with these global ids, in this order, with these file columns."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.file_starts[-1]):
            raise IndexError("row id out of range")
        uniq, inverse = np.unique(rows, return_inverse=True)
        which = np.searchsorted(self.file_starts, uniq, side="right") - 1
        pieces = []
        for fi in np.unique(which):
            f = self.files[fi]
            local = uniq[which == fi] - self.file_starts[fi]
            in_file = local if f.select is None else f.select[local]
            groups = np.searchsorted(f.row_group_starts, in_file, side="right") - 1
            wanted = np.unique(groups)
            table = pq.ParquetFile(f.path).read_row_groups([int(g) for g in wanted], columns=columns)
            # Row positions inside the concatenation of the wanted row groups.
            group_sizes = np.diff(f.row_group_starts)[wanted]
            base = np.concatenate([[0], np.cumsum(group_sizes)[:-1]])
            pos = base[np.searchsorted(wanted, groups)] + (in_file - f.row_group_starts[groups])
            pieces.append(table.take(pa.array(pos, pa.int64())))
        if not pieces:
            return pa.table({c: pa.array([]) for c in columns})
        return pa.concat_tables(pieces).take(pa.array(inverse.reshape(-1), pa.int64()))


def _select(path: Path, schema: pa.Schema, filter) -> np.ndarray:
    cols = [c for c in schema.names if c != "image"]
    if isinstance(filter, dict):
        unknown = [c for c in filter if c not in schema.names]
        if unknown:
            raise CommandError(f"{path}: filter columns {unknown} not in the data")
        table = pq.read_table(path, columns=list(filter))
        mask = np.ones(table.num_rows, dtype=bool)
        for c, v in filter.items():
            values = set(v) if isinstance(v, (list, tuple, set)) else {v}
            mask &= np.array([x in values for x in table.column(c).to_pylist()], dtype=bool)
        return np.flatnonzero(mask).astype(np.int64)
    table = pq.read_table(path, columns=cols)
    if isinstance(filter, pds.Expression):
        indexed = table.append_column("__row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
        kept = pds.dataset(indexed).to_table(columns=["__row"], filter=filter)
        return np.sort(kept.column("__row").to_numpy())
    if callable(filter):
        mask = np.asarray(filter(table), dtype=bool)
        if mask.shape != (table.num_rows,):
            raise ValueError(f"filter returned a mask of shape {mask.shape}, expected ({table.num_rows},)")
        return np.flatnonzero(mask).astype(np.int64)
    raise TypeError(f"unsupported filter {type(filter).__name__}: use a dict, a pyarrow Expression or a callable")
