"""`irgpt data build`: instruction samples from detection annotations (Pipeline V).

    irgpt data build --annotations FILE_OR_DIR --format coco|voc --image-root DIR --out DIR \\
        [--tasks caption,recognition,...] [--seed S] [--band lwir] [--split train] [--source NAME]

Reads COCO JSON or Pascal VOC XML (`irgpt.data.annotations`), applies the
builder rules (`irgpt.data.builder`) and writes a SAMPLE_SCHEMA dataset:
shards, manifest and rejects. Every record that did not become a row is in
the rejects table with its reason: unreadable or refused annotation files,
missing or undecodable images, sizes that disagree with the image, boxes
outside the image, and (task, record) pairs a rule cannot serve (e.g. no
objects, no uniquely describable target).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def source_name(annotations: str | Path) -> str:
    """Dataset `source` from the annotation file (or directory) name: `FLIR_train.json` -> `flir_train`."""
    p = Path(annotations)
    stem = p.name if p.is_dir() else p.stem
    return _SAFE.sub("_", stem).strip("_").lower() or "annotations"


def build_dataset(records, rejects: list[dict], out_dir: str | Path, *, tasks: Sequence[str], seed: int = 0,
                  band: str = "unknown", source: str = "annotations", split: str = "train",
                  vocabulary: Sequence[str] = (), shard_rows: int = 2000, extra_manifest: dict | None = None) -> dict:
    """Build and write the dataset for `records` (Annotated); `rejects` are the reader's. Returns the manifest."""
    import pyarrow as pa

    from irgpt.data.annotations import check_boxes
    from irgpt.data.builder import build_samples, conversation
    from irgpt.data.images import ImageRejected, prepare_image
    from irgpt.data.io import (
        base_manifest,
        composition,
        shard_name,
        shard_paths,
        write_manifest,
        write_rejects,
        write_table,
    )
    from irgpt.data.schema import SAMPLE_SCHEMA

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rejects = list(rejects)
    rows: list[dict] = []
    shards: list[str] = []
    seen: set[str] = set()
    total, images_used = 0, 0
    comp_cols = {"band": [], "task": [], "source": [], "split": [], "rule": []}

    def reject(ann, reason, sample_id=None, index=None):
        rejects.append({"source_file": ann.image_path, "line_or_index": index, "sample_id": sample_id or ann.image_id,
                        "reason": reason, "stage": "build"})

    def flush():
        nonlocal rows
        if rows:
            write_table(out / shard_name(len(shards)), pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA))
            shards.append(shard_name(len(shards)))
            rows = []

    for i, ann in enumerate(records):
        key = _SAFE.sub("_", str(ann.image_id))
        if key in seen:
            reject(ann, f"image {ann.image_id}: its id collides with another image's after sanitising", index=i)
            continue
        if not ann.image_path:
            reject(ann, f"image {ann.image_id}: no image path", index=i)
            continue
        try:
            image = prepare_image(ann.image_path)
        except ImageRejected as exc:
            reject(ann, f"image {ann.image_id}: {exc.reason}", index=i)
            continue
        if ann.width <= 0 or ann.height <= 0:
            ann = type(ann)(ann.image_id, ann.image_path, image.width, image.height, ann.objects, ann.scene, ann.notes)
        elif (ann.width, ann.height) != (image.width, image.height):
            reject(ann, f"image {ann.image_id}: annotation says {ann.width}x{ann.height} but the image is "
                        f"{image.width}x{image.height}", index=i)
            continue
        ann, reason = check_boxes(ann)
        if reason:
            reject(records[i], reason, index=i)
            continue
        seen.add(key)
        samples, skipped = build_samples(ann, tasks, seed, vocabulary, band, key=f"{source}/{ann.image_id}")
        for task, why in skipped:
            reject(ann, f"{task}: {why}", f"{source}-{key}-{band}-{task}", i)
        images_used += bool(samples)
        for s in samples:
            row = {"sample_id": f"{source}-{key}-{band}-{s.task}", "image": image.data, "image_path": ann.image_path,
                   "band": band, "source": source, "task": s.task, "split": split,
                   "conversations": conversation(s.question, s.answer), "width": ann.width,
                   "height": ann.height, "paired_vis_id": None, "rule": s.rule}
            rows.append(row)
            for c in comp_cols:
                comp_cols[c].append(row[c])
            total += 1
        if len(rows) >= shard_rows:
            flush()
    flush()
    if not shards:  # an empty dataset still has one (empty) shard, so readers need no special case
        write_table(out / shard_name(0), SAMPLE_SCHEMA.empty_table())
        shards.append(shard_name(0))
    for stale in shard_paths(out):
        if stale.name not in shards:
            stale.unlink()
    n_rejects = write_rejects(out, rejects)
    comp = composition(pa.table({c: pa.array(v, pa.string()) for c, v in comp_cols.items()}))
    manifest = base_manifest("dataset", source=source, schema="sample", num_rows=total, num_images=images_used,
                             num_records=len(records), num_rejects=n_rejects, seed=seed, band=band, split=split,
                             tasks=list(tasks), shards=shards, composition=comp, **(extra_manifest or {}))
    write_manifest(out, manifest)
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from irgpt.data.builder import BUILDER_TASKS, DEFAULT_BUILD_TASKS
    from irgpt.data.schema import BANDS, SPLITS

    parser.add_argument("--annotations", required=True, help="COCO JSON file, VOC XML file or directory of XMLs")
    parser.add_argument("--format", choices=["coco", "voc"], help="annotation format (default: .json -> coco, else voc)")
    parser.add_argument("--image-root", help="directory the annotations' file names are relative to "
                                             "(default: the annotation file's directory)")
    parser.add_argument("--out", required=True, help="dataset directory to write")
    parser.add_argument("--tasks", default=",".join(DEFAULT_BUILD_TASKS),
                        help=f"comma-separated, among {','.join(BUILDER_TASKS)} (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--band", default="unknown", choices=BANDS, help="band of the images (default: unknown)")
    parser.add_argument("--split", default="train", choices=SPLITS, help="split of every row (default: train)")
    parser.add_argument("--source", help="`source` column (default: from the annotation file name)")


def run(args: argparse.Namespace) -> int:
    from irgpt.data.annotations import read_annotations, vocabulary
    from irgpt.data.builder import BUILDER_TASKS
    from irgpt.errors import CommandError

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in BUILDER_TASKS]
    if unknown or not tasks:
        raise CommandError(f"--tasks: unknown task(s) {unknown}; choose among {', '.join(BUILDER_TASKS)}")
    path = Path(args.annotations)
    fmt = args.format or ("coco" if path.suffix.lower() == ".json" else "voc")
    root = Path(args.image_root) if args.image_root else (path if path.is_dir() else path.parent)
    records, rejects, names = read_annotations(path, fmt, root)
    source = args.source or source_name(path)
    manifest = build_dataset(records, rejects, args.out, tasks=tasks, seed=args.seed, band=args.band,
                             source=source, split=args.split, vocabulary=vocabulary(names),
                             extra_manifest={"annotations": str(path), "format": fmt, "image_root": str(root)})
    print(f"wrote {manifest['num_rows']} rows from {manifest['num_images']} of {len(records)} images to "
          f"{args.out}; {manifest['num_rejects']} rejects (see {args.out}/_rejects)")
    for task, n in manifest["composition"].get("task", {}).items():
        print(f"    {task:<20} {n:>8}")
    return 0
