"""Typed stage contracts: what each stage's output promises its readers.

One dataclass per output kind, read and written through this module:

| kind      | file                       | written by                                  |
|-----------|----------------------------|---------------------------------------------|
| `dataset` | `DIR/manifest.json`        | `irgpt data synth / import / build`         |
| `scores`  | `DIR/manifest.json`        | `irgpt score ir-vis / ir-text`              |
| `tiers`   | `DIR/manifest.json`        | `irgpt tier`                                |
| `model`   | `MODEL/irgpt_vlm.json`     | training (`irgpt.models.vlm.save_vlm`)      |
| `eval`    | `OUT/metrics.json`         | `irgpt eval run`                            |

`write_manifest` (irgpt.data.io) checks a manifest against its contract before
it lands, and `read(Contract, directory)` checks it again on the way in, with
an error naming the file and the field. Every contract keeps the whole JSON
in `raw` for provenance; the typed fields are what other stages may rely on.
The same key names everywhere: a row count is `num_rows`.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from irgpt.errors import CommandError


@dataclass(frozen=True, kw_only=True)
class Contract:
    """Base: subclasses declare typed fields; `raw` holds the whole file."""

    FILE: ClassVar[str] = "manifest.json"
    KIND: ClassVar[str | None] = None
    """The `kind` the file must declare (None: the file has no `kind`)."""
    raw: dict = field(default_factory=dict, repr=False, compare=False)


def _accepts(annotation, value) -> bool:
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return isinstance(value, list) and all(_accepts(item, v) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def parse(contract: type[Contract], data: Any, where: str) -> Contract:
    """`data` (a JSON object) as `contract`, or `CommandError` naming `where` and the field."""
    if not isinstance(data, dict):
        raise CommandError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if contract.KIND is not None and data.get("kind") != contract.KIND:
        raise CommandError(f"{where}: field 'kind' is {data.get('kind')!r}, expected {contract.KIND!r} "
                           f"(a {contract.KIND} directory)")
    hints = typing.get_type_hints(contract)
    values = {}
    for f in fields(contract):
        if f.name == "raw":
            continue
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise CommandError(f"{where}: field {f.name!r} is missing")
            continue
        value = data[f.name]
        if not _accepts(hints[f.name], value):
            expected = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
            raise CommandError(f"{where}: field {f.name!r} must be {expected}, got {value!r:.80}")
        values[f.name] = value
    return contract(raw=data, **values)


def read(contract: type[Contract], directory: str | Path) -> Contract:
    """The contract file of `directory` (a directory in object storage too), checked."""
    from irgpt import storage

    path = storage.join(str(directory), contract.FILE)
    if not storage.is_file(path):
        what = contract.KIND or contract.__name__
        raise CommandError(f"{directory}: not a {what} directory (no {contract.FILE})")
    try:
        text = storage.read_bytes(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path}: cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return parse(contract, data, str(path))


# ---------------------------------------------------------------- kinds ----
@dataclass(frozen=True, kw_only=True)
class DatasetManifest(Contract):
    KIND: ClassVar[str] = "dataset"
    num_rows: int
    image_size: int | None = None
    """The side of every image (synthetic data); None when sizes vary (imported data)."""
    config_hash: str | None = None
    source: str | None = None
    created_unix: float | None = None


@dataclass(frozen=True, kw_only=True)
class ScoresManifest(Contract):
    KIND: ClassVar[str] = "scores"
    lesson: typing.Literal["l1", "l2"]
    num_rows: int
    rejected: int
    columns: list[str] = field(default_factory=list)
    untrained: bool | None = None
    """True when a random-init extractor / CLIP made the scores."""


@dataclass(frozen=True, kw_only=True)
class TiersManifest(Contract):
    KIND: ClassVar[str] = "tiers"
    num_tiers: int
    tier_sizes: list[int]
    num_rows: int
    split: str = "all"
    curriculum: dict = field(default_factory=dict)
    """The `curriculum` config the tiers were made with (`m`, `lam`, the anti flags, ...)."""
    tiers: list[dict] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ModelManifest(Contract):
    FILE: ClassVar[str] = "irgpt_vlm.json"
    family: str
    image_size: int
    num_image_tokens: int
    image_token: str = "<image>"
    prompt_format: str = "irgpt"


@dataclass(frozen=True, kw_only=True)
class EvalManifest(Contract):
    FILE: ClassVar[str] = "metrics.json"
    psum: float | None
    nsum: float | None
    tasks: dict
    """Per task: `score`, `n`, `parse_rate`, ... (`irgpt.eval.score`)."""
    n: int | None = None
    """Rows evaluated (`irgpt eval run`; `irgpt eval score` reports per task only)."""


BY_KIND: dict[str, type[Contract]] = {c.KIND: c for c in (DatasetManifest, ScoresManifest, TiersManifest)}
"""Manifests with a `kind` that `write_manifest` checks before writing."""
