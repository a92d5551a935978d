"""Which rows each stage trains and validates on (defined once).

- Stage 1 (incremental pre-training, docs/method.md): infrared caption pairs; the
  training rows come from the tier datasets (`irgpt tier`), already filtered.
- Stage 2 (instruction fine-tuning): the instruction samples of all task
  types (every task but `caption`) of the data directory's `train` split.
- Validation, both stages: the same kind of rows from the `val` split; for
  stage 1 only the clean ones (not flagged `gt_misaligned`: on synthetic data
  the held-out captions that truly describe their image; on real data, where
  the flag is null, the `val` split as it is).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds

from irgpt import storage
from irgpt.data.io import shard_paths
from irgpt.data.schema import ir_caption_filter
from irgpt.errors import CommandError

COLUMNS = ["sample_id", "image", "conversations", "task", "band", "split"]


def stage_filter(stage: int, split: str) -> pds.Expression:
    """Row filter for `stage` (1 or 2) on `split`."""
    if stage == 1:
        kind = ir_caption_filter()
    elif stage == 2:
        kind = pc.field("task") != "caption"
    else:
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    return kind & (pc.field("split") == split)


def read_stage_rows(data_dir: str | Path, stage: int, split: str, columns: list[str] | None = None,
                    *, clean: bool = False) -> pa.Table:
    """The stage's rows of `split`, sorted by sample_id (a canonical order).

    clean: also drop rows flagged `gt_misaligned` (null counts as clean)."""
    paths = shard_paths(data_dir)
    if not paths:
        raise CommandError(f"{data_dir}: no part-*.parquet shards")
    dataset = pds.dataset([str(p) for p in paths], format="parquet")
    where = stage_filter(stage, split)
    if clean and "gt_misaligned" in dataset.schema.names:
        flag = pc.field("gt_misaligned")
        where = where & (flag.is_null() | (flag == pa.scalar(False)))
    table = dataset.to_table(columns=columns or COLUMNS, filter=where)
    return table.sort_by("sample_id")


def val_rows(data_dir: str | Path, stage: int, limit: int) -> list[dict]:
    """The stage's held-out rows (stage 1: the clean ones), the first `limit` by sample_id."""
    table = read_stage_rows(data_dir, stage, "val", ["sample_id", "image", "conversations"], clean=stage == 1)
    return table.slice(0, limit).to_pylist()


BATCH_COLUMNS = ["sample_id", "image", "conversations", "weight", "tier"]


def make_iterator(spec: dict, rank: int, world_size: int, micro_batch_size: int, grad_accum: int):
    """The stage's `TierIterator` from a plain spec (what the loop config carries).

    spec: {"kind": "tiers" | "stage2", "source": DIR, "curriculum": dict, "epochs": int,
    "fraction": float (optional, the budget: irgpt.curriculum.budget)}.
    Stage 1 follows the curriculum (tiers, schedule, weights); stage 2 reads the
    train-split instruction rows as one tier with weights 1, reshuffled per epoch.
    """
    from irgpt.config import CurriculumConfig
    from irgpt.config.loader import from_dict
    from irgpt.curriculum.iterator import TierIterator

    curriculum = from_dict(CurriculumConfig, spec["curriculum"])
    fraction = float(spec.get("fraction", 1.0))
    spec = {**spec, "source": str(storage.fetch(spec["source"]))}  # this node's copy, if not shared
    if spec["kind"] == "tiers":
        return TierIterator(spec["source"], rank, world_size, micro_batch_size, curriculum, spec["epochs"],
                            BATCH_COLUMNS, grad_accum=grad_accum, fraction=fraction)
    if spec["kind"] == "stage2":
        plain = CurriculumConfig(m=1, weights=False, seed=curriculum.seed)
        return TierIterator.from_dataset_dir(spec["source"], rank, world_size, micro_batch_size, spec["epochs"],
                                             filter=stage_filter(2, "train"), cfg=plain,
                                             columns=BATCH_COLUMNS, grad_accum=grad_accum, fraction=fraction)
    raise ValueError(f"unknown iterator kind {spec['kind']!r}")
