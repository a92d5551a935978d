"""`irgpt data import`: conversation files + image files -> a dataset directory.

Nothing is lost: every input record becomes a row or a row of the rejects
table (with a reason a person understands), and the manifest reconciles
`read == written + rejected`. The output depends only on the inputs and the
options (rows in input order, fixed shard size), not on `workers`.
Rules and tables: docs/import.md.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from irgpt.config.loader import config_hash, to_dict
from irgpt.config.sections import ImportConfig
from irgpt.data.images import ImageRejected, PreparedImage, prepare_image
from irgpt.data.infer import infer_band, infer_task
from irgpt.data.io import (
    REJECTS_DIR,
    REJECTS_FILE,
    base_manifest,
    count_by,
    shard_name,
    staged_output,
    write_manifest,
    write_rejects,
    write_table,
)
from irgpt.data.readers import (
    AnnotationFile,
    Record,
    RecordRejected,
    iter_annotation_files,
    parse_record,
)
from irgpt.data.schema import BANDS, SAMPLE_SCHEMA, SPLITS, TASKS, answer_text, human_text
from irgpt.errors import CommandError
from irgpt.progress import Progress

SHARD_ROWS = 1000
STAGE = "import"

# ----------------------------------------------------------------- paths ----
def _match_prefix(raw: str, root_map: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    """(mapped path, NEW) for the longest OLD prefix of `raw` (whole path components)."""
    best = None
    for old, new in root_map:
        old_n = old.rstrip("/") or "/"
        if raw == old_n or raw.startswith(old_n if old_n.endswith("/") else old_n + "/"):
            if best is None or len(old_n) > len(best[0]):
                best = (old_n, new)
    if best is None:
        return None
    old_n, new = best
    rest = raw[len(old_n) :].lstrip("/")
    return (str(Path(new) / rest) if rest else new), new


def remap_path(raw: str, root_map: Sequence[tuple[str, str]]) -> str:
    """`raw` with the longest matching OLD prefix replaced by its NEW (else unchanged)."""
    hit = _match_prefix(raw, root_map)
    return hit[0] if hit else raw


def resolve_image(raw: str, root: Path, root_map: Sequence[tuple[str, str]] = ()) -> Path:
    """The image file `raw` names, resolved, and checked to stay inside its root.

    A path under a `--image-root-map` OLD prefix is rewritten to NEW and must
    stay inside NEW; any other path (relative: joined to `root`) must stay
    inside `root`. Both sides are `Path.resolve()`d (symlinks followed), so
    `..` and symlinks pointing out are both caught.
    """
    hit = _match_prefix(raw, root_map)
    try:
        if hit:
            candidate, base = Path(hit[0]), Path(hit[1])
        else:
            p = Path(raw)
            candidate, base = (p if p.is_absolute() else root / p), root
        resolved, base_r = candidate.resolve(), base.resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # NUL bytes, symlink loops
        raise RecordRejected("invalid image path", f"{raw!r}: {exc}") from exc
    if not resolved.is_relative_to(base_r):
        raise RecordRejected("path escapes image root", f"{raw} -> {resolved} is outside {base_r}")
    return resolved


# ---------------------------------------------------------------- import ----
@dataclass(frozen=True)
class _Options:
    """What applies to every record (the command's flags)."""

    root_map: tuple[tuple[str, str], ...]
    band: str | None
    source: str | None
    task: str | None
    split: str
    keep_ids: bool


@dataclass
class _Pending:
    """A record that passed every check but the image's, waiting in a batch."""

    seq: int
    record: Record
    sample_id: str
    path: Path
    row: dict
    size: tuple[int | None, int | None]
    """The record's own width/height, if it gave them."""
    where: str
    """`FILE line N` (JSON Lines) or `FILE index N`, for duplicate-id messages."""


def _check_image(path: str, cfg: ImportConfig) -> PreparedImage | str:
    """Worker: the prepared image, or the reject reason (picklable either way)."""
    try:
        return prepare_image(path, cfg)
    except ImageRejected as exc:
        return exc.reason


def _check_options(band, task, split, root_map, image_root, workers, shard_rows) -> None:
    for name, value, allowed in (
        ("band", band, BANDS),
        ("task", task, TASKS),
        ("split", split, SPLITS),
    ):
        if value is not None and value not in allowed:
            raise CommandError(f"--{name} {value!r}: expected one of {', '.join(allowed)}")
    if shard_rows < 1 or workers < 1:
        raise CommandError("shard_rows and workers must be >= 1")
    for _old, new in root_map:
        if not Path(new).is_dir():
            raise CommandError(f"--image-root-map: NEW prefix {new} is not a directory")
    if image_root is not None and not Path(image_root).is_dir():
        raise CommandError(f"--image-root {image_root}: not a directory")


def import_files(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    image_root: str | Path | None = None,
    root_map: Sequence[tuple[str, str]] = (),
    band: str | None = None,
    source: str | None = None,
    task: str | None = None,
    split: str = "train",
    cfg: ImportConfig = ImportConfig(),
    workers: int = 1,
    shard_rows: int = SHARD_ROWS,
    keep_ids: bool = False,
    overwrite: bool = False,
    log=sys.stderr,
) -> dict:
    """Import conversation files into `out_dir`; returns the manifest written.

    Raises `CommandError` only when an input is unusable as a whole (missing,
    not JSON) or an option is wrong; every record-level problem is a reject.
    `workers` > 1 checks images in a process pool; the output is the same.
    """
    root_map = tuple((str(o), str(n)) for o, n in root_map)
    _check_options(band, task, split, root_map, image_root, workers, shard_rows)
    if not inputs:
        raise CommandError("no input files given")
    opts = _Options(root_map, band, source, task, split, keep_ids)
    # Parse every input before touching the output: a broken file fails the run cleanly.
    files = [f for p in inputs for f in iter_annotation_files(p, lambda s: remap_path(s, root_map))]
    # Written into a staging directory and swapped in whole (io.staged_output): an
    # interrupted import leaves the earlier dataset intact, never a mix of shards.
    with staged_output(Path(out_dir), overwrite=overwrite) as stage:
        return _import_into(stage, files, image_root, root_map, opts, cfg, shard_rows, workers, log,
                            dict(band=band, task=task, source=source, split=split, keep_ids=keep_ids))


def _import_into(out_dir: Path, files, image_root, root_map, opts, cfg, shard_rows, workers, log,
                 options: dict) -> dict:
    state = _ImportState(out_dir, cfg, shard_rows, workers, log, total=sum(len(f.records) for f in files))
    try:
        inputs_info = []
        for ann in files:
            root = ann.image_root or (
                Path(image_root) if image_root is not None else ann.path.parent
            )
            before = (state.read, state.written, len(state.rejects))
            for rec in ann.records:
                state.add(rec, _stage1(rec, ann, root, opts))
            state.flush_batch()
            info = {
                "path": str(ann.path),
                "layout": ann.layout,
                "source": _source(ann, opts),
                "image_root": str(root.resolve()),
                "read": state.read - before[0],
                "written": state.written - before[1],
                "rejected": len(state.rejects) - before[2],
            }
            if ann.meta_file is not None:
                info.update(
                    meta_file=str(ann.meta_file),
                    meta_name=ann.meta_name,
                    declared_length=ann.declared_length,
                )
            inputs_info.append(info)
        return state.finish(inputs_info, root_map, options)
    finally:
        state.close()


def _source(ann: AnnotationFile, opts: _Options) -> str:
    return opts.source or ann.meta_name or ann.path.stem


def _stage1(rec: Record, ann: AnnotationFile, root: Path, opts: _Options):
    """Every check but the image's: a `_Pending` row, or (sample_id, reason)."""
    ns = ann.meta_name or ann.path.stem  # id namespace: one per annotation file
    sample_id = None
    try:
        if rec.error:
            raise RecordRejected(*rec.error.split(": ", 1))
        raw_id = rec.obj.get("id") if isinstance(rec.obj, dict) else None
        if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) and raw_id != "":
            sample_id = str(raw_id) if opts.keep_ids else f"{ns}/{raw_id}"
        parsed = parse_record(rec.obj)
        if sample_id is None:
            sample_id = f"{ns}-{rec.line_or_index:07d}"
        question, answer = human_text(parsed.conversations), answer_text(parsed.conversations)
        task = opts.task or parsed.task or infer_task(question, answer)
        path = resolve_image(parsed.image, root, opts.root_map)
    except RecordRejected as exc:
        return sample_id, str(exc)
    src = _source(ann, opts)
    row = {
        "sample_id": sample_id,
        "image_path": str(path),
        "band": opts.band or parsed.band or infer_band(src, ann.path.stem, parsed.image),
        "source": src,
        "task": task,
        "split": opts.split,
        "conversations": parsed.conversations,
        "paired_vis_id": None,
        "rule": None,
    }
    where = f"{rec.source_file} {'line' if ann.layout == 'jsonl' else 'index'} {rec.line_or_index}"
    return _Pending(0, rec, sample_id, path, row, (parsed.width, parsed.height), where)


def _storable(text: str) -> str:
    """`text` as valid UTF-8: lone surrogates become `\\udXXX` escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _ImportState:
    """Batches pending rows through the image check and writes shards, in input order."""

    def __init__(self, out_dir: Path, cfg: ImportConfig, shard_rows: int, workers: int, log, total: int):
        self.out_dir, self.cfg, self.shard_rows, self.log = out_dir, cfg, shard_rows, log
        # a bar when `log` is a terminal; otherwise one line per batch into `log`
        self.bar, self.shown = Progress(total, "import", "record", file=log), 0
        # spawn, not fork: safe inside a threaded caller (a Ray driver); same choice as synth
        ctx = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(workers, mp_context=ctx) if workers > 1 else None
        self.read = self.written = self.reencoded = 0
        self.rejects: list[tuple[int, dict]] = []  # (input sequence number, reject row)
        self.batch: list[_Pending] = []
        self.rows: list[dict] = []
        self.shards: list[str] = []
        self.seen: dict[str, str] = {}  # written sample_id -> where it came from
        self.columns: dict[str, list[str]] = {c: [] for c in ("band", "task", "source", "split")}

    def reject(self, seq: int, rec: Record, sample_id: str | None, reason: str) -> None:
        row = {  # text the record could not store is kept readable (backslash escapes)
            "source_file": _storable(rec.source_file),
            "line_or_index": rec.line_or_index,
            "sample_id": None if sample_id is None else _storable(sample_id),
            "reason": _storable(reason),
            "stage": STAGE,
        }
        self.rejects.append((seq, row))

    def add(self, rec: Record, result: _Pending | tuple[str | None, str]) -> None:
        seq = self.read
        self.read += 1
        if not isinstance(result, _Pending):
            return self.reject(seq, rec, *result)
        result.seq = seq
        self.batch.append(result)
        if len(self.batch) >= self.shard_rows:
            self.flush_batch()

    def flush_batch(self) -> None:
        if not self.batch:
            return
        paths = [str(p.path) for p in self.batch]
        if self.pool is not None:  # map() keeps input order: the output does not depend on workers
            results = list(self.pool.map(_check_image, paths, [self.cfg] * len(paths), chunksize=8))
        else:
            results = [_check_image(p, self.cfg) for p in paths]
        for pending, result in zip(self.batch, results):
            self._finalise(pending, result)
        self.bar.update(self.read - self.shown,
                        f"import: {self.read} records read, {self.written} written, {len(self.rejects)} rejected")
        self.shown = self.read
        self.batch = []

    def _problem(self, p: _Pending, img: PreparedImage) -> str | None:
        want_w, want_h = p.size
        if (want_w not in (None, img.width)) or (want_h not in (None, img.height)):
            return (
                f"size mismatch: the record says {want_w}x{want_h}, "
                f"the image is {img.width}x{img.height}"
            )
        if p.sample_id in self.seen:  # ids are claimed by written rows only
            return (
                f"duplicate id: {p.sample_id!r} was already imported from {self.seen[p.sample_id]}"
            )
        return None

    def _finalise(self, p: _Pending, result: PreparedImage | str) -> None:
        reason = result if isinstance(result, str) else self._problem(p, result)
        if reason is not None:
            return self.reject(p.seq, p.record, p.sample_id, reason)
        self.seen[p.sample_id] = p.where
        self.rows.append(
            {**p.row, "image": result.data, "width": result.width, "height": result.height}
        )
        self.reencoded += result.reencoded
        self.written += 1
        for c, values in self.columns.items():
            values.append(p.row[c])
        if len(self.rows) >= self.shard_rows:
            self._write_shard()

    def _write_shard(self) -> None:
        name = shard_name(len(self.shards))
        write_table(self.out_dir / name, pa.Table.from_pylist(self.rows, schema=SAMPLE_SCHEMA))
        self.shards.append(name)
        self.rows = []

    def close(self) -> None:
        self.bar.close()
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None

    def finish(self, inputs_info: list[dict], root_map, options: dict) -> dict:
        self.flush_batch()
        if self.rows or not self.shards:  # always >= 1 shard, so readers find the schema
            self._write_shard()
        rejects = [r for _seq, r in sorted(self.rejects, key=lambda t: t[0])]
        write_rejects(self.out_dir, rejects)
        if self.read != self.written + len(rejects):  # a bug, never a data problem
            raise RuntimeError(
                f"import lost records: {self.read} != {self.written} + {len(rejects)}"
            )
        roots = {i["image_root"] for i in inputs_info} | {
            str(Path(n).resolve()) for _o, n in root_map
        }
        manifest = base_manifest(
            "dataset",
            num_rows=self.written,
            counts={"read": self.read, "written": self.written, "rejected": len(rejects)},
            rejects_by_reason=reason_counts(r["reason"] for r in rejects),
            composition={c: count_by(v) for c, v in self.columns.items()},
            inputs=inputs_info,
            image_roots=sorted(roots),
            root_map=[list(m) for m in root_map],
            options=options,
            images={
                "embedded": self.cfg.embed_images,
                "reencoded_png": self.reencoded if self.cfg.embed_images else 0,
                "original_bytes": self.written - self.reencoded if self.cfg.embed_images else 0,
            },
            config={"data": {"importer": to_dict(self.cfg)}},
            config_hash=config_hash(self.cfg),
            shards=self.shards,
            shard_rows=self.shard_rows,
            rejects_file=f"{REJECTS_DIR}/{REJECTS_FILE}",
        )
        write_manifest(self.out_dir, manifest)
        return manifest


def reason_category(reason: str) -> str:
    """The fixed part of a reject reason (the text before the first ': ')."""
    return reason.split(": ", 1)[0]


def reason_counts(reasons: Iterable[str]) -> dict[str, int]:
    """Rejects per reason category, sorted by name (the manifest's `rejects_by_reason`)."""
    return dict(sorted(Counter(reason_category(r) for r in reasons).items()))
