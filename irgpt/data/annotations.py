"""Detection annotations (COCO JSON, Pascal VOC XML) -> one common `Annotated` record.

The rule-based instruction builder (`irgpt.data.builder`, the paper's
Pipeline V) reads only `Annotated`; the synthetic generator converts its scene
graphs into the same record. Readers never raise on a bad record: they return
`(records, rejects)`, each reject a dict with REJECTS_SCHEMA's fields and a
person-readable `reason` naming the file and record.

    COCO (FLIR ADAS, M3FD): {"images": [{id, file_name, width, height}],
                             "annotations": [{image_id, category_id, bbox: [x, y, w, h]}],
                             "categories": [{id, name}]}
    VOC (LLVIP): <annotation><filename/><size><width/><height/></size>
                 <object><name/><bndbox><xmin/><ymin/><xmax/><ymax/></bndbox></object>...

Boxes become `(category, x1, y1, x2, y2)` in pixels (x2 = x + w, exclusive).
A box that overruns the image by more than `BOX_TOLERANCE` pixels rejects the
whole image record (dropping just the box would leave counting, security and
recognition answers wrong: the object is there but no longer annotated);
smaller overruns are clipped.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from irgpt.errors import CommandError

BOX_TOLERANCE = 1.0
"""Pixels a box may overrun the image and be clipped instead of rejected."""

MAX_ANNOTATION_BYTES = 512 * 1024 * 1024
"""Annotation files larger than this are refused (they are read whole)."""

_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)

Obj = tuple[str, float, float, float, float]


@dataclass(frozen=True)
class Annotated:
    """One annotated image: what every builder rule reads."""

    image_id: str
    image_path: str | None
    width: int
    """Pixels; 0 = unknown (VOC files without <size>): filled from the image."""
    height: int
    objects: tuple[Obj, ...] = ()
    """(category, x1, y1, x2, y2) in pixel coordinates, x2/y2 exclusive."""
    scene: str | None = None
    """Scene name when known (synthetic data); used by the caption rule."""
    notes: tuple[str, ...] = ()
    """Extra caption sentences (synthetic thermal notes)."""


def _reject(source: str, index: int | None, reason: str, sample_id: str | None = None) -> dict:
    return {"source_file": source, "line_or_index": index, "sample_id": sample_id,
            "reason": reason, "stage": "read"}


def check_boxes(ann: Annotated) -> tuple[Annotated | None, str | None]:
    """Validate boxes against the image size; clip small overruns.

    Returns (record, None) or (None, reason). Needs a known size.
    """
    if ann.width <= 0 or ann.height <= 0:
        return None, f"image {ann.image_id}: unknown or empty image size {ann.width}x{ann.height}"
    out = []
    for i, (cat, x1, y1, x2, y2) in enumerate(ann.objects):
        coords = (x1, y1, x2, y2)
        where = f"image {ann.image_id}: box {i} ({cat} [{x1:g}, {y1:g}, {x2:g}, {y2:g}])"
        if not all(math.isfinite(v) for v in coords):
            return None, f"{where} has a non-finite coordinate"
        if x2 <= x1 or y2 <= y1:
            return None, f"{where} is empty (x2 <= x1 or y2 <= y1)"
        t = BOX_TOLERANCE
        if x1 < -t or y1 < -t or x2 > ann.width + t or y2 > ann.height + t:
            return None, f"{where} lies outside the {ann.width}x{ann.height} image"
        cx1, cy1 = max(0.0, x1), max(0.0, y1)
        cx2, cy2 = min(float(ann.width), x2), min(float(ann.height), y2)
        if cx2 <= cx1 or cy2 <= cy1:
            return None, f"{where} lies outside the {ann.width}x{ann.height} image"
        out.append((cat, cx1, cy1, cx2, cy2))
    return Annotated(ann.image_id, ann.image_path, ann.width, ann.height, tuple(out),
                     ann.scene, ann.notes), None


def _resolve(root: Path | None, name: str) -> str:
    return str(root / name) if root is not None else name


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise CommandError(f"annotation file not found: {path}")
    if path.stat().st_size > MAX_ANNOTATION_BYTES:
        raise CommandError(f"{path}: annotation file larger than {MAX_ANNOTATION_BYTES} bytes")
    return path.read_bytes()


# ------------------------------------------------------------------ COCO ----
def read_coco(path: str | Path, image_root: str | Path | None = None) -> tuple[list[Annotated], list[dict], list[str]]:
    """Read a COCO detection file. Returns (records, rejects, category names).

    A file that is not valid COCO JSON at all raises CommandError; bad
    individual images / annotations become rejects. Images without any
    annotation are kept with no objects (the builder rejects them per task).
    """
    path = Path(path)
    src = str(path)
    try:
        data = json.loads(_read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise CommandError(f"{path}: not a COCO file (needs an 'images' list)")
    root = Path(image_root) if image_root is not None else None
    rejects: list[dict] = []
    categories: dict[object, str] = {}
    for i, cat in enumerate(data.get("categories") or []):
        if isinstance(cat, dict) and "id" in cat and isinstance(cat.get("name"), str):
            categories[cat["id"]] = cat["name"].strip()
        else:
            rejects.append(_reject(src, i, f"{path}: categories[{i}] has no id/name"))
    images: dict[object, dict] = {}
    order: list[object] = []
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            rejects.append(_reject(src, i, f"{path}: images[{i}] has no id/file_name"))
            continue
        if img["id"] in images:
            rejects.append(_reject(src, i, f"{path}: images[{i}] repeats image id {img['id']!r}"))
            continue
        images[img["id"]] = {"meta": img, "index": i, "objects": [], "bad": None}
        order.append(img["id"])
    for j, a in enumerate(data.get("annotations") or []):
        if not isinstance(a, dict):
            rejects.append(_reject(src, j, f"{path}: annotations[{j}] is not an object"))
            continue
        entry = images.get(a.get("image_id"))
        if entry is None:
            rejects.append(_reject(src, j, f"{path}: annotations[{j}] refers to unknown image_id {a.get('image_id')!r}"))
            continue
        name = categories.get(a.get("category_id"))
        bbox = a.get("bbox")
        if name is None:
            entry["bad"] = entry["bad"] or f"annotations[{j}] has unknown category_id {a.get('category_id')!r}"
            continue
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
            entry["bad"] = entry["bad"] or f"annotations[{j}] has a malformed bbox {bbox!r}"
            continue
        x, y, w, h = (float(v) for v in bbox)
        entry["objects"].append((name, x, y, x + w, y + h))
    records = []
    for image_id in order:
        entry = images[image_id]
        meta = entry["meta"]
        sid = str(image_id)
        if entry["bad"]:
            rejects.append(_reject(src, entry["index"], f"image {sid}: {entry['bad']}", sid))
            continue
        try:
            width, height = int(meta.get("width") or 0), int(meta.get("height") or 0)
        except (TypeError, ValueError):
            rejects.append(_reject(src, entry["index"], f"image {sid}: non-integer width/height", sid))
            continue
        ann = Annotated(sid, _resolve(root, meta["file_name"]), width, height, tuple(entry["objects"]))
        if width > 0 and height > 0:
            ann, reason = check_boxes(ann)
            if reason:
                rejects.append(_reject(src, entry["index"], reason, sid))
                continue
        records.append(ann)
    return records, rejects, sorted(set(categories.values()))


# ------------------------------------------------------------------- VOC ----
def _text(node: ET.Element | None, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text is not None else None


def parse_voc(data: bytes, source: str, image_root: Path | None = None) -> Annotated:
    """One VOC XML document -> Annotated. Raises ValueError with the reason.

    Files with a DTD (`<!DOCTYPE` / `<!ENTITY`) are refused before parsing:
    entity declarations are how "billion laughs" expansion attacks work, and
    VOC files never need them.
    """
    if _DTD.search(data):
        raise ValueError(f"{source}: contains a <!DOCTYPE>/<!ENTITY> declaration (refused: entity expansion)")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ValueError(f"{source}: not well-formed XML: {exc}") from exc
    if root.tag != "annotation":
        raise ValueError(f"{source}: root element is <{root.tag}>, expected <annotation>")
    filename = _text(root, "filename")
    if not filename:
        raise ValueError(f"{source}: no <filename>")
    size = root.find("size")
    try:
        width = int(float(_text(size, "width") or 0))
        height = int(float(_text(size, "height") or 0))
    except ValueError as exc:
        raise ValueError(f"{source}: non-numeric <size>") from exc
    objects = []
    for k, obj in enumerate(root.findall("object")):
        name = _text(obj, "name")
        box = obj.find("bndbox")
        if not name or box is None:
            raise ValueError(f"{source}: object {k} has no <name> or <bndbox>")
        try:
            coords = [float(_text(box, t) or "nan") for t in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError as exc:
            raise ValueError(f"{source}: object {k} ({name}) has a non-numeric box") from exc
        objects.append((name, *coords))
    image_id = Path(filename).stem
    return Annotated(image_id, _resolve(image_root, filename), width, height, tuple(objects))


def read_voc(path: str | Path, image_root: str | Path | None = None) -> tuple[list[Annotated], list[dict], list[str]]:
    """Read one VOC XML file or a directory of them (sorted by name).

    Returns (records, rejects, category names); a refused or malformed file
    and a box outside its image are rejects.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".xml" and p.is_file())
        if not files:
            raise CommandError(f"{path}: no .xml files")
    elif path.is_file():
        files = [path]
    else:
        raise CommandError(f"annotation file not found: {path}")
    root = Path(image_root) if image_root is not None else None
    records, rejects, names = [], [], set()
    seen: set[str] = set()
    for i, f in enumerate(files):
        try:
            ann = parse_voc(_read_bytes(f), str(f), root)
        except ValueError as exc:
            rejects.append(_reject(str(f), i, str(exc)))
            continue
        if ann.image_id in seen:
            rejects.append(_reject(str(f), i, f"{f}: repeats image id {ann.image_id!r}", ann.image_id))
            continue
        if ann.width > 0 and ann.height > 0:
            checked, reason = check_boxes(ann)
            if reason:
                rejects.append(_reject(str(f), i, f"{f}: {reason}", ann.image_id))
                continue
            ann = checked
        seen.add(ann.image_id)
        names.update(o[0] for o in ann.objects)
        records.append(ann)
    return records, rejects, sorted(names)


def read_annotations(path: str | Path, fmt: str, image_root: str | Path | None = None) -> tuple[list[Annotated], list[dict], list[str]]:
    """Dispatch on `fmt` (`coco` or `voc`)."""
    if fmt == "coco":
        return read_coco(path, image_root)
    if fmt == "voc":
        return read_voc(path, image_root)
    raise CommandError(f"unknown annotation format {fmt!r}: expected coco or voc")


def vocabulary(names: Sequence[str]) -> tuple[str, ...]:
    """Distinct category names in a stable order."""
    return tuple(sorted({n.strip() for n in names if n and n.strip()}))
