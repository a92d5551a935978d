"""Composite rank, tie-breaks and the tier split (docs/method.md "Curriculum schedule").

Pure pyarrow / numpy functions shared by both tiering engines (`tier_local`
and `tier_ray`): the local engine applies them to whole tables, the Ray engine
to one hash bucket or one batch at a time. Whatever the engine, a row's
status, composite rank and tier depend only on its own scores and the global
order, so both engines write the same bytes.

Global order: ascending by the sort key (`composite_rank`, `_h`, `sample_id`)
where `_h = stable_hash(sample_id)` breaks ties (docs/method.md), and the id itself
breaks the (2^-63) hash collisions, so the order is total.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from irgpt.data.schema import is_ir_caption, stable_hash
from irgpt.errors import CommandError

L1_COLUMNS = ("rank_l1", "d_ir_vis")
"""Lesson 1 score columns used by tiering (the table also has `band`)."""
L2_COLUMNS = ("rank_l2", "alpha", "weight")
"""Lesson 2 score columns used by tiering (the table also has the two losses)."""
SCORE_COLUMNS = ("composite_rank", "weight", "rank_l1", "rank_l2", "d_ir_vis", "alpha")
INDEX_COLUMNS = ("split", "band", "task", "source")
"""Sample columns read for joining and reporting (each optional but `split`
when a split filter is used)."""
SORT_KEY = ("composite_rank", "_h", "sample_id")

STATUS_TIER = "tier"
STATUS_REJECT = "reject"
STATUS_ORPHAN = "orphan"
STATUS_OTHER_SPLIT = "other_split"
STATUS_SCORED_OTHER_SPLIT = "scored_other_split"
STATUS_UNSCORED = "unscored"

JOINED_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("in_l1", pa.bool_()),
        ("in_l2", pa.bool_()),
        ("rank_l1", pa.float64()),
        ("rank_l2", pa.float64()),
        ("d_ir_vis", pa.float64()),
        ("alpha", pa.float64()),
        ("weight", pa.float64()),
    ]
)
"""One row per sample id seen in any input (data or score table)."""


# ------------------------------------------------------------ the split ----
def tier_sizes(n: int, m: int) -> list[int]:
    """M tier sizes for n rows: equal up to 1; the first n % M tiers get one extra."""
    if m < 1 or n < 0:
        raise ValueError(f"tier_sizes: need n >= 0 and m >= 1, got n={n}, m={m}")
    base, extra = divmod(n, m)
    return [base + (1 if k < extra else 0) for k in range(m)]


def offsets(sizes: list[int]) -> list[int]:
    """Start of each run when the runs are laid end to end."""
    return [int(x) for x in np.concatenate([[0], np.cumsum(sizes)[:-1]])] if sizes else []


@dataclass(frozen=True)
class Piece:
    """One output file: rows [start, start + rows) of the global order."""

    index: int
    tier: int
    part: int
    start: int
    rows: int

    @property
    def relpath(self) -> str:
        return f"tier={self.tier}/part-{self.part:05d}.parquet"


def piece_plan(n: int, m: int, rows_per_part: int) -> list[Piece]:
    """Files of every tier: part j of tier k holds its rows [j*R, (j+1)*R).

    An empty tier (n < M) still gets one empty part, so every `tier=K` folder
    is a readable dataset.
    """
    if rows_per_part < 1:
        raise ValueError("rows_per_part must be >= 1")
    pieces: list[Piece] = []
    for tier, (size, start) in enumerate(zip(tier_sizes(n, m), offsets(tier_sizes(n, m)))):
        parts = max(1, -(-size // rows_per_part))
        for part in range(parts):
            lo = part * rows_per_part
            pieces.append(Piece(len(pieces), tier, part, start + lo, max(0, min(rows_per_part, size - lo))))
    return pieces


# ------------------------------------------------------------- the join ----
def join_scores(
    index: pa.Table,
    l1: pa.Table | None,
    l2: pa.Table | None,
    *,
    use_l1: bool,
    use_l2: bool,
    split: str | None,
) -> pa.Table:
    """Full outer join of the sample index with the score tables, classified.

    Status per sample id (JOINED_SCHEMA):
    - `tier`: in the data (and split), with every score in use -> tiered;
    - `reject` (+ reason): in the data and split, and either scored by some
      lesson in use but missing another (`no Lesson 2 score`), or an infrared
      caption row no lesson in use scored (`no Lesson 1 score; no Lesson 2
      score`), which the scorers should have scored;
    - `unscored`: in the split, no score, not an infrared caption (visible,
      instruction rows...): not tiered, counted;
    - `scored_other_split` / `other_split`: outside the split filter;
    - `orphan`: a score row whose sample id is not in the data.
    """
    _check_unique(index, "the data")
    tables = {"l1": l1, "l2": l2}
    for name, t in tables.items():
        if t is not None:
            _check_unique(t, f"the Lesson {name[1]} scores")
    parts = [index.column("sample_id")] + [t.column("sample_id") for t in tables.values() if t is not None]
    ids = pc.unique(pa.chunked_array([c.combine_chunks() for c in parts], type=pa.string()).combine_chunks())
    n = len(ids)

    def lookup(t: pa.Table | None):
        if t is None:
            return None, np.zeros(n, dtype=bool)
        pos = pc.index_in(ids, value_set=t.column("sample_id").combine_chunks())
        return pos, pos.is_valid().to_numpy(zero_copy_only=False)

    pos_d, in_data = lookup(index)
    pos_1, in_l1 = lookup(l1)
    pos_2, in_l2 = lookup(l2)

    def column(t, pos, name):
        if t is None or name not in t.column_names:
            return pa.nulls(n, pa.float64())
        return t.column(name).combine_chunks().take(pos).cast(pa.float64())

    def index_col(name):
        if name not in index.column_names:
            return np.full(n, None, dtype=object)
        return np.asarray(index.column(name).combine_chunks().take(pos_d).to_pylist(), dtype=object)

    scored_used = (use_l1 & in_l1) | (use_l2 & in_l2)
    has_all = (~np.bool_(use_l1) | in_l1) & (~np.bool_(use_l2) | in_l2)
    in_split = in_data & (True if split is None else index_col("split") == split)
    band, task = index_col("band"), index_col("task")
    scorable = in_data & np.array([is_ir_caption(b, t) for b, t in zip(band, task)], dtype=bool)

    status = np.full(n, STATUS_UNSCORED, dtype=object)
    status[~in_data] = STATUS_ORPHAN
    status[in_data & ~in_split & scored_used] = STATUS_SCORED_OTHER_SPLIT
    status[in_data & ~in_split & ~scored_used] = STATUS_OTHER_SPLIT
    status[in_split & scored_used & has_all] = STATUS_TIER
    rejected = in_split & ((scored_used & ~has_all) | (~scored_used & scorable))
    status[rejected] = STATUS_REJECT
    reason = np.full(n, None, dtype=object)
    for i in np.flatnonzero(rejected):
        missing = [f"no Lesson {k} score" for k, used, have in ((1, use_l1, in_l1[i]), (2, use_l2, in_l2[i])) if used and not have]
        reason[i] = "; ".join(missing)
    # A score that is NaN, infinite or null (a scorer that failed on the row) must not
    # be ranked: the row is rejected with the columns named.
    bad = np.zeros(n, dtype=object)
    for lesson, t, used, present, names in ((1, l1, use_l1, in_l1, ("rank_l1", "d_ir_vis")),
                                            (2, l2, use_l2, in_l2, ("rank_l2", "alpha", "weight"))):
        if t is None or not used:
            continue
        pos = pos_1 if lesson == 1 else pos_2
        for name in names:
            if name not in t.column_names:
                continue
            values = np.asarray(column(t, pos, name).to_numpy(zero_copy_only=False), dtype=np.float64)
            broken = present & ~np.isfinite(values)
            for i in np.flatnonzero(broken & (status == STATUS_TIER)):
                bad[i] = (f"{bad[i]}, " if bad[i] else "") + f"non-finite {name}"
    for i in np.flatnonzero(bad != 0):
        status[i], reason[i] = STATUS_REJECT, bad[i]
    return pa.table(
        {
            "sample_id": ids,
            "status": pa.array(status, pa.string()),
            "reason": pa.array(reason, pa.string()),
            "in_l1": pa.array(in_l1),
            "in_l2": pa.array(in_l2),
            "rank_l1": column(l1, pos_1, "rank_l1"),
            "rank_l2": column(l2, pos_2, "rank_l2"),
            "d_ir_vis": column(l1, pos_1, "d_ir_vis"),
            "alpha": column(l2, pos_2, "alpha"),
            "weight": column(l2, pos_2, "weight"),
        },
        schema=JOINED_SCHEMA,
    )


def _check_unique(table: pa.Table, name: str) -> None:
    ids = table.column("sample_id")
    if ids.null_count:
        raise CommandError(f"{name}: {ids.null_count} rows with a null sample_id")
    if pc.count_distinct(ids).as_py() != table.num_rows:
        counts = table.group_by("sample_id").aggregate([("sample_id", "count")])
        dup = counts.filter(pc.greater(counts.column("sample_id_count"), 1)).column("sample_id")[0]
        raise CommandError(f"{name}: duplicate sample_id {dup.as_py()!r}")


def status_counts(joined: pa.Table) -> pa.Table:
    """Rows per (status, reason, in_l1, in_l2): what the manifest's counts are made of."""
    keys = ["status", "reason", "in_l1", "in_l2"]
    return joined.select(keys + ["sample_id"]).group_by(keys).aggregate([("sample_id", "count")]).rename_columns(keys + ["n"])


# ------------------------------------------------------- composite rank ----
def add_composite(cand: pa.Table, cfg) -> pa.Table:
    """Add `composite_rank` (r = lam * r1 + (1 - lam) * r2), the final `weight` and `_h`.

    Anti switches reverse a lesson's normalised rank (1 - r); with one lesson
    in use, r is that lesson's rank. `weight` is the Lesson 2 column when
    `cfg.weights` and `cfg.use_l2`, else 1.0.
    """
    ids = cand.column("sample_id").to_pylist()

    def rank(name: str, anti: bool) -> np.ndarray:
        r = cand.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        bad = ~np.isfinite(r) | (r < 0) | (r > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise CommandError(f"{name} of sample {ids[i]!r} is {r[i]}: normalised ranks must be in [0, 1]")
        return 1.0 - r if anti else r

    if cfg.use_l1 and cfg.use_l2:
        composite = cfg.lam * rank("rank_l1", cfg.anti_l1) + (1.0 - cfg.lam) * rank("rank_l2", cfg.anti_l2)
    elif cfg.use_l1:
        composite = rank("rank_l1", cfg.anti_l1)
    else:
        composite = rank("rank_l2", cfg.anti_l2)
    if cfg.weights and cfg.use_l2:
        weight = cand.column("weight").to_numpy(zero_copy_only=False).astype(np.float64)
        bad = ~np.isfinite(weight) | (weight < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise CommandError(f"weight of sample {ids[i]!r} is {weight[i]}: weights must be finite and >= 0")
    else:
        weight = np.ones(cand.num_rows, dtype=np.float64)
    out = cand.drop_columns([c for c in ("composite_rank", "_h") if c in cand.column_names])
    out = out.set_column(out.schema.get_field_index("weight"), "weight", pa.array(weight, pa.float64()))
    out = out.append_column("composite_rank", pa.array(composite + 0.0, pa.float64()))  # + 0.0: no -0.0
    return out.append_column("_h", pa.array([stable_hash(s) for s in ids], pa.int64()))


def sort_by_key(table: pa.Table) -> pa.Table:
    """Rows in the global order (SORT_KEY, ascending)."""
    return table.take(pc.sort_indices(table, sort_keys=[(k, "ascending") for k in SORT_KEY]))


def key_of(row) -> tuple:
    return (float(row["composite_rank"]), int(row["_h"]), str(row["sample_id"]))


def pieces_by_key(table: pa.Table, boundaries: list[tuple], piece_ids: list[int]) -> np.ndarray:
    """Piece index of each row from the sort keys of the pieces' first rows.

    `boundaries[i]` is the key of the first row of piece `piece_ids[i + 1]`;
    a row belongs to the last piece whose first key is <= its own key. Only
    depends on the row and the boundaries, not on the order rows arrive in.
    """
    c = table.column("composite_rank").to_numpy(zero_copy_only=False)
    h = table.column("_h").to_numpy(zero_copy_only=False)
    ids = np.asarray(table.column("sample_id").to_pylist(), dtype=object)
    count = np.zeros(table.num_rows, dtype=np.int64)
    for bc, bh, bid in boundaries:
        tie = (c == bc) & (h == bh)
        ge = (c > bc) | ((c == bc) & (h > bh))
        if tie.any():
            ge = ge | (tie & (ids >= bid))
        count += ge
    return np.asarray(piece_ids, dtype=np.int64)[count]
