"""The inputs of `irgpt tier`: the samples dataset and the score tables.

A score table's lesson is detected from its columns (`rank_l1`: Lesson 1,
`rank_l2`: Lesson 2). Only Parquet footers and manifests are read here, so
inspecting a 1M-row input costs milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from irgpt.curriculum.ranking import L1_COLUMNS, L2_COLUMNS
from irgpt.data.io import MANIFEST, read_manifest, shard_paths
from irgpt.errors import CommandError

REQUIRED = {1: ("sample_id",) + L1_COLUMNS, 2: ("sample_id",) + L2_COLUMNS}
_PROVENANCE_KEYS = ("kind", "lesson", "untrained", "schema_version", "code_version", "created_unix", "command", "seed", "rank_by", "weights", "rows", "num_rows", "counts")


@dataclass
class DatasetInput:
    """A dataset directory: its shards, unified schema, row count and manifest."""

    path: Path
    files: list[Path]
    schema: pa.Schema
    rows: int
    manifest: dict
    lesson: int | None = None
    """1 or 2 for a score table; None for the samples."""

    def provenance(self) -> dict:
        """The manifest fields that say where the input came from."""
        keep = {k: v for k, v in self.manifest.items() if k in _PROVENANCE_KEYS or any(s in k for s in ("provenance", "scorer", "hash", "config"))}
        return {"dir": str(self.path), "num_rows": self.rows, "files": len(self.files), "manifest": keep}


def parquet_files(path: Path) -> list[Path]:
    """A dataset's Parquet files: `part-*.parquet` shards, else any `*.parquet`, or the file itself.

    Score tables made by hand or by another tool (pandas, DuckDB, Spark) need no
    manifest and no `part-` prefix; hidden and `_`-prefixed files are ignored.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise CommandError(f"{path}: no such file or directory")
    files = shard_paths(path) or sorted(
        p for p in path.glob("*.parquet") if p.is_file() and not p.name.startswith(("_", "."))
    )
    if not files:
        raise CommandError(f"{path}: no Parquet files (part-*.parquet or *.parquet)")
    return files


def inspect_dataset(path: str | Path) -> DatasetInput:
    """Footers of `path`'s Parquet files (a directory or one file); `manifest.json` if present."""
    path = Path(path)
    files = parquet_files(path)
    manifest = read_manifest(path) if path.is_dir() and (path / MANIFEST).is_file() else {}
    schemas, rows = [], 0
    for f in files:
        try:
            meta = pq.ParquetFile(f)
        except Exception as exc:  # noqa: BLE001 - a corrupt shard is a user error
            raise CommandError(f"{f}: not a readable Parquet file: {exc}") from exc
        schemas.append(meta.schema_arrow)
        rows += meta.metadata.num_rows
    try:
        schema = pa.unify_schemas(schemas).remove_metadata()
    except pa.ArrowInvalid as exc:
        raise CommandError(f"{path}: shards have incompatible schemas: {exc}") from exc
    if "sample_id" not in schema.names:
        raise CommandError(f"{path}: no sample_id column")
    id_type = schema.field("sample_id").type
    if not (pa.types.is_string(id_type) or pa.types.is_large_string(id_type) or pa.types.is_string_view(id_type)):
        raise CommandError(f"{path}: sample_id must be a string column, not {id_type}")
    return DatasetInput(path, files, schema, rows, manifest)


def read_input(inp: DatasetInput, columns: list[str]) -> pa.Table:
    """The given columns of every row of an input (small and medium inputs: the local engine).

    `sample_id` comes back as `string` whatever string type the writer chose
    (pandas and Polars often write `large_string`).
    """
    table = pds.dataset([str(f) for f in inp.files], format="parquet").to_table(columns=columns)
    i = table.schema.get_field_index("sample_id")
    return table.set_column(i, "sample_id", table.column(i).cast(pa.string())) if i >= 0 else table


def detect_scores(dirs: list[str | Path]) -> dict[int, DatasetInput]:
    """{1: Lesson 1 table, 2: Lesson 2 table} from one or two score directories."""
    found: dict[int, DatasetInput] = {}
    for d in dirs:
        inp = inspect_dataset(d)
        names = set(inp.schema.names)
        lessons = [k for k, col in ((1, "rank_l1"), (2, "rank_l2")) if col in names]
        if len(lessons) != 1:
            raise CommandError(
                f"{d}: cannot tell which lesson this score table is: it needs exactly one of "
                f"rank_l1 (Lesson 1) / rank_l2 (Lesson 2); columns are {sorted(names)}"
            )
        lesson = lessons[0]
        missing = [c for c in REQUIRED[lesson] if c not in names]
        if missing:
            raise CommandError(f"{d}: Lesson {lesson} score table lacks columns {missing}")
        for c in REQUIRED[lesson][1:]:
            t = inp.schema.field(c).type
            if not (pa.types.is_floating(t) or pa.types.is_integer(t)):
                raise CommandError(f"{d}: column {c} must be numeric, not {t}")
        if lesson in found:
            raise CommandError(f"two Lesson {lesson} score tables: {found[lesson].path} and {d}")
        inp.lesson = lesson
        found[lesson] = inp
    return found


def check_inputs(data: DatasetInput, scores: dict[int, DatasetInput], cfg, split: str | None) -> None:
    """Fail early, naming the flag, when the config needs an input that is missing."""
    for lesson, used in ((1, cfg.use_l1), (2, cfg.use_l2)):
        if used and lesson not in scores:
            raise CommandError(
                f"curriculum.use_l{lesson} is true but no Lesson {lesson} score table was given "
                f"(--scores DIR with a rank_l{lesson} column), or set curriculum.use_l{lesson}=false"
            )
    if split is not None and "split" not in data.schema.names:
        raise CommandError(f"{data.path}: no split column; pass --split all to tier every split")
