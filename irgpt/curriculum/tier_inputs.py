"""The inputs of `irgpt tier`: the samples dataset and the score tables.

A score table's lesson is detected from its columns (`rank_l1`: Lesson 1,
`rank_l2`: Lesson 2). Only Parquet footers and manifests are read here, so
inspecting a 1M-row input costs milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from irgpt.curriculum.ranking import L1_COLUMNS, L2_COLUMNS
from irgpt.data.io import read_manifest, shard_paths
from irgpt.errors import CommandError

REQUIRED = {1: ("sample_id",) + L1_COLUMNS, 2: ("sample_id",) + L2_COLUMNS}
_PROVENANCE_KEYS = ("kind", "schema_version", "code_version", "created_unix", "command", "seed", "rank_by", "weights", "rows", "num_rows", "counts")


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
        return {"dir": str(self.path), "rows": self.rows, "files": len(self.files), "manifest": keep}


def inspect_dataset(path: str | Path) -> DatasetInput:
    path = Path(path)
    if not path.is_dir():
        raise CommandError(f"{path}: not a directory")
    manifest = read_manifest(path)
    files = shard_paths(path)
    if not files:
        raise CommandError(f"{path}: no part-*.parquet shards")
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
    return DatasetInput(path, files, schema, rows, manifest)


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
