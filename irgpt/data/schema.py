"""The Arrow row schema of a sample, and the vocabularies it uses.

One row = one image + one conversation. Documented in docs/data.md.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

SCHEMA_VERSION = 1

BANDS = ("vis", "vis_gray", "nir", "swir", "mwir", "lwir", "unknown")
INFRARED_BANDS = ("nir", "swir", "mwir", "lwir", "unknown")
VISIBLE_BANDS = ("vis", "vis_gray")

# Synthetic ground truth: how far each band's appearance departs from visible.
GT_BAND_RANK = {"vis_gray": 0, "nir": 1, "swir": 2, "mwir": 3, "lwir": 4}

TASKS = (
    "caption",
    "scene",
    "recognition",
    "grounding",
    "relationship",
    "reid",
    "security",
    "location",
    "aerial_counting",
    "pedestrian_counting",
)
BENCHMARK_TASKS = TASKS[1:]
SPLITS = ("train", "val", "benchmark")
"""`val` is held out for validation loss / Tune objectives; `benchmark` for evaluation."""

CONVERSATION_TYPE = pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))

SAMPLE_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("image", pa.binary()),
        pa.field("image_path", pa.string()),
        pa.field("band", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("conversations", CONVERSATION_TYPE, nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("paired_vis_id", pa.string()),
        pa.field("rule", pa.string()),
    ]
)
"""Columns every dataset has. `image` holds encoded PNG/JPEG bytes (or null
when only `image_path` is stored); `rule` names the builder rule that made a
generated sample (null for imported rows)."""

SYNTH_COLUMNS = [
    pa.field("scene_id", pa.string()),
    pa.field("gt_band_rank", pa.int8()),
    pa.field("gt_misaligned", pa.bool_()),
]
SYNTH_SCHEMA = pa.schema(list(SAMPLE_SCHEMA) + SYNTH_COLUMNS)
"""The synthetic dataset adds ground-truth columns: `scene_id`,
`gt_band_rank` (vis_gray 0 < nir 1 < swir 2 < mwir 3 < lwir 4; null for vis)
and `gt_misaligned` (caption describes another scene)."""

REJECTS_SCHEMA = pa.schema(
    [
        pa.field("source_file", pa.string()),
        pa.field("line_or_index", pa.int64()),
        pa.field("sample_id", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("stage", pa.string()),
    ]
)
"""Every input record that did not become an output row, with why."""


def stable_hash(text: str, bits: int = 63) -> int:
    """A platform- and process-independent integer hash (tie-breaks, seeds)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << bits) - 1)


def is_ir_caption(band: str | None, task: str | None) -> bool:
    """An infrared image-caption pair: what Lesson 1 and Lesson 2 score and stage 1 trains on
    (a band in `INFRARED_BANDS`, task `caption`). `ir_caption_filter` is the same rule for
    Arrow datasets and tables."""
    return task == "caption" and band in INFRARED_BANDS


def ir_caption_filter():
    """`is_ir_caption` as a pyarrow compute expression (datasets, `Table.filter`)."""
    import pyarrow.compute as pc

    return (pc.field("task") == "caption") & pc.field("band").isin(list(INFRARED_BANDS))


def human_text(conversations: list[dict]) -> str:
    """The first human turn, without the `<image>` placeholder."""
    for turn in conversations:
        if turn.get("from") == "human":
            return turn.get("value", "").replace("<image>", "").strip()
    return ""


def answer_text(conversations: list[dict]) -> str:
    """The first gpt turn (the answer)."""
    for turn in conversations:
        if turn.get("from") == "gpt":
            return turn.get("value", "")
    return ""
