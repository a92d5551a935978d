"""`irgpt data import INPUT [INPUT ...] --out DIR`: thin wrapper over `import_files`.

    irgpt data import IR-TD/json_sft/*.json --out runs/irtd/data \\
        --image-root-map /mnt/jixie16t/zhe/Dataset/Datasets/Data4MLLM=/data/irtd --split train

Rules, reject reasons and an example summary: docs/import.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from irgpt.data.schema import BANDS, SPLITS, TASKS
from irgpt.errors import CommandError


def parse_root_map(items: list[str] | None) -> list[tuple[str, str]]:
    """`OLD=NEW` strings -> pairs (split at the first `=`)."""
    out = []
    for item in items or []:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise CommandError(f"--image-root-map {item!r}: expected OLD_PREFIX=NEW_PREFIX")
        out.append((old.strip(), new.strip()))
    return out


def format_summary(manifest: dict, out_dir: str | Path) -> str:
    """The person-readable summary the command prints (example in docs/import.md)."""
    c = manifest["counts"]
    lines = [
        f"read {c['read']} records from {len(manifest['inputs'])} annotation file(s): "
        f"{c['written']} written, {c['rejected']} rejected"
    ]
    for info in manifest["inputs"]:
        lines.append(
            f"  {info['path']} ({info['layout']}): read {info['read']}, "
            f"written {info['written']}, rejected {info['rejected']}"
        )
    if manifest["rejects_by_reason"]:
        lines.append("rejects by reason:")
        width = max(len(k) for k in manifest["rejects_by_reason"])
        lines += [f"  {k:<{width}}  {v}" for k, v in manifest["rejects_by_reason"].items()]
    for col in ("band", "task", "source"):
        counts = manifest["composition"].get(col, {})
        lines.append(f"{col}: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "-"))
    lines.append(
        f"wrote {out_dir} ({len(manifest['shards'])} shard(s)); rejects in "
        f"{Path(out_dir) / manifest['rejects_file']}"
    )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="conversation files: JSON array, JSON Lines, concatenated objects, or InternVL meta",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="dataset directory to write")
    parser.add_argument(
        "--image-root",
        metavar="DIR",
        help="relative image paths resolve here (default: each annotation file's directory); "
        "images must lie inside it",
    )
    parser.add_argument(
        "--image-root-map",
        action="append",
        default=[],
        metavar="OLD_PREFIX=NEW_PREFIX",
        help="rewrite paths starting with OLD_PREFIX (repeatable; longest prefix wins); "
        "mapped images must lie inside NEW_PREFIX",
    )
    parser.add_argument(
        "--band", choices=BANDS, help="band of every row (default: record field, else keywords)"
    )
    parser.add_argument(
        "--source", help="source name of every row (default: meta entry name or file stem)"
    )
    parser.add_argument(
        "--task", choices=TASKS, help="task of every row (default: record field, else inferred)"
    )
    parser.add_argument("--split", choices=SPLITS, default="train")
    parser.add_argument(
        "--config", metavar="FILE", help="YAML config; its data.importer section is used"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="config override, e.g. data.importer.max_pixels=1000000 (repeatable)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="processes checking images (output is identical)"
    )
    parser.add_argument(
        "--keep-ids",
        action="store_true",
        help="use record ids verbatim instead of FILESTEM/ID (ids must then be unique across files)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a dataset already in --out"
    )


def run(args: argparse.Namespace) -> int:
    from irgpt.config import load_config
    from irgpt.data.importer import import_files

    cfg = load_config(args.config, args.overrides).data.importer
    manifest = import_files(
        [Path(p) for p in args.inputs],
        args.out,
        image_root=args.image_root,
        root_map=parse_root_map(args.image_root_map),
        band=args.band,
        source=args.source,
        task=args.task,
        split=args.split,
        cfg=cfg,
        workers=args.workers,
        keep_ids=args.keep_ids,
        overwrite=args.overwrite,
        log=sys.stderr,
    )
    print(format_summary(manifest, args.out))
    return 0
