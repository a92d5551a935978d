"""The in-process tiering engine (pyarrow): for small inputs and as the reference.

Every step calls the same functions as the Ray engine (`ranking`,
`tier_write`, `RankLookup`) on whole tables instead of buckets and batches;
`tests/curriculum/test_tiers_ray.py` checks both write identical bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from irgpt.curriculum.ranking import (
    INDEX_COLUMNS,
    JOINED_SCHEMA,
    L1_COLUMNS,
    L2_COLUMNS,
    STATUS_ORPHAN,
    STATUS_REJECT,
    STATUS_TIER,
    add_composite,
    join_scores,
    piece_plan,
    sort_by_key,
    status_counts,
)
from irgpt.curriculum.tier_inputs import DatasetInput, read_input
from irgpt.curriculum.tier_write import output_schema, write_part
from irgpt.scoring.weights import (
    eq5_weights,
    exact_sum,
    scorable,
    weight_medians,
    weights_from_config,
)

ORPHAN_EXAMPLES = 5
RANK_COLUMNS = ["sample_id", "composite_rank", "_h", "_piece", "rank_l1", "rank_l2", "d_ir_vis", "alpha", "weight"]
"""What the sample rows are joined with (the 'rank table')."""


@dataclass
class EngineResult:
    """What an engine hands back to `build_tiers` for the manifest."""

    n: int
    parts: list[dict]
    count_rows: list[dict]
    rejects: pa.Table
    orphan_examples: list[str]
    weights: dict | None = None
    notes: dict = field(default_factory=dict)


class RankLookup:
    """sample_id -> rank-table row; attaches the tier columns to sample rows."""

    def __init__(self, rank: pa.Table):
        self.table = rank.select(RANK_COLUMNS).combine_chunks()
        self.index = {s: i for i, s in enumerate(self.table.column("sample_id").to_pylist())}

    def attach(self, samples: pa.Table) -> pa.Table:
        """The sample rows that are tiered, with the rank columns appended."""
        pos = [self.index.get(s) for s in samples.column("sample_id").to_pylist()]
        keep = [i for i, p in enumerate(pos) if p is not None]
        rank = self.table.take(pa.array([pos[i] for i in keep], pa.int64()))
        base = samples.take(pa.array(keep, pa.int64()))
        base = base.drop_columns([c for c in RANK_COLUMNS if c in base.column_names and c != "sample_id"] + [c for c in ("tier",) if c in base.column_names])
        for name in RANK_COLUMNS[1:]:
            base = base.append_column(name, rank.column(name))
        return base


def reweight_table(table: pa.Table, weights_cfg, medians=None) -> tuple[pa.Table, dict]:
    """Recompute the Eq. 5 `weight` column of a Lesson 2 table (tier --reweight)."""
    a = table.column("alpha").to_numpy(zero_copy_only=False).astype(np.float64)
    meds = weight_medians(a) if medians is None else medians
    w = weights_from_config(a, weights_cfg, meds)
    mean = None
    ok = a[scorable(a)]
    if weights_cfg.normalize and ok.size:
        mean = exact_sum(eq5_weights(ok, weights_cfg.temperature, medians=meds)) / ok.size
    out = table.set_column(table.schema.get_field_index("weight"), "weight", pa.array(w, pa.float64()))
    return out, {"medians": {"positive": meds[0], "non_positive": meds[1]}, "mean": mean}


def run_local(
    data: DatasetInput,
    scores: dict[int, DatasetInput],
    out: Path,
    cfg,
    *,
    split: str | None,
    rows_per_part: int,
    reweight=None,
) -> EngineResult:
    index = read_input(data, ["sample_id"] + [c for c in INDEX_COLUMNS if c in data.schema.names])
    l1 = read_input(scores[1], ["sample_id", *L1_COLUMNS]) if 1 in scores else None
    l2 = read_input(scores[2], ["sample_id", *L2_COLUMNS]) if 2 in scores else None
    weights_info = None
    if reweight is not None and l2 is not None:
        l2, weights_info = reweight_table(l2, reweight)
    joined = join_scores(index, l1, l2, use_l1=cfg.use_l1, use_l2=cfg.use_l2, split=split)
    counts = status_counts(joined).to_pylist()
    status = joined.column("status")
    rejects = joined.filter(pc.equal(status, STATUS_REJECT)).select(["sample_id", "reason"])
    orphans = sorted(joined.filter(pc.equal(status, STATUS_ORPHAN)).column("sample_id").to_pylist())[:ORPHAN_EXAMPLES]

    cand = sort_by_key(add_composite(joined.filter(pc.equal(status, STATUS_TIER)).select(JOINED_SCHEMA.names), cfg))
    plan = piece_plan(cand.num_rows, cfg.m, rows_per_part)
    piece_col = np.repeat([p.index for p in plan], [p.rows for p in plan]).astype(np.int64)
    cand = cand.append_column("_piece", pa.array(piece_col, pa.int64()))
    lookup = RankLookup(cand)

    schema = output_schema(data.schema)
    attached = [lookup.attach(pq.read_table(f, columns=data.schema.names)) for f in data.files]
    rows = pa.concat_tables(attached, promote_options="permissive") if attached else None
    parts = []
    pieces = rows.column("_piece").to_numpy(zero_copy_only=False) if rows is not None else np.array([])
    for piece in plan:
        mine = rows.take(pa.array(np.flatnonzero(pieces == piece.index))) if rows is not None else schema.empty_table()
        parts.append(write_part(mine, piece, out, schema))
    return EngineResult(cand.num_rows, parts, counts, rejects, orphans, weights_info)
