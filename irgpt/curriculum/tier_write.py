"""Writing tier parts and the tier manifest (shared by both engines).

Layout (docs/curriculum.md):

    OUT/manifest.json                   per-tier sizes, ranges, composition, config, inputs
    OUT/tier=K/part-JJJJJ.parquet       tier K's rows, in composite order, R rows a part
    OUT/_rejects/rejects.parquet        samples that could not be tiered, with why

`tier` is also a column inside the files (int32): `ray.data.read_parquet(OUT)`
and DuckDB read it cleanly either way (file and path agree), and
`pandas.read_parquet(OUT / "tier=0")` keeps it (see docs/curriculum.md for
why pandas cannot read OUT itself).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa

from irgpt import storage
from irgpt.curriculum.ranking import SCORE_COLUMNS, Piece, sort_by_key

EXTRA_FIELDS = [pa.field("tier", pa.int32(), nullable=False)] + [pa.field(c, pa.float64()) for c in SCORE_COLUMNS]
RANGE_COLUMNS = ("composite_rank", "d_ir_vis", "alpha", "weight", "rank_l1", "rank_l2")
COMPOSITION_COLUMNS = ("band", "task", "source", "split")


def output_schema(data_schema: pa.Schema) -> pa.Schema:
    """The sample columns (in the data's order) + `tier` + the score columns."""
    names = {f.name for f in EXTRA_FIELDS}
    fields = [f for f in data_schema if f.name not in names]
    return pa.schema(fields + EXTRA_FIELDS)


def write_part(rows: pa.Table, piece: Piece, out_dir: str | Path, schema: pa.Schema) -> dict:
    """Write one part (rows sorted by the global key) and return its stats.

    The table is cast to `schema` and made contiguous first, so the bytes do
    not depend on which engine or how many chunks produced the rows.
    """
    if rows.num_rows != piece.rows:
        raise RuntimeError(f"{piece.relpath}: expected {piece.rows} rows, got {rows.num_rows}")
    if rows.num_rows:
        rows = sort_by_key(rows)
        tier = pa.array(np.full(rows.num_rows, piece.tier, dtype=np.int32))
        rows = rows.drop_columns(["tier"]) if "tier" in rows.column_names else rows
        rows = rows.append_column("tier", tier)
        table = pa.table([rows.column(f.name).cast(f.type) for f in schema], schema=schema)
    else:
        table = schema.empty_table()
    table = table.combine_chunks()
    storage.write_parquet(storage.join(str(out_dir), piece.relpath), table)
    return part_stats(table, piece)


def part_stats(table: pa.Table, piece: Piece) -> dict:
    stats = {"piece": piece.index, "tier": piece.tier, "part": piece.part, "file": piece.relpath, "rows": table.num_rows}
    for c in RANGE_COLUMNS:
        vals = table.column(c).drop_null().to_numpy(zero_copy_only=False) if c in table.column_names else np.array([])
        stats[c] = {"min": float(vals.min()), "max": float(vals.max())} if vals.size else {"min": None, "max": None}
    w = table.column("weight").to_numpy(zero_copy_only=False)
    stats["weight_sum"] = float(np.sum(w, dtype=np.float64)) if w.size else 0.0
    stats["composition"] = {
        c: dict(Counter("null" if v is None else str(v) for v in table.column(c).to_pylist()))
        for c in COMPOSITION_COLUMNS
        if c in table.column_names
    }
    return stats


def merge_tier_stats(parts: list[dict], m: int) -> list[dict]:
    """Per-tier summary from the per-part stats (order-independent)."""
    parts = sorted(parts, key=lambda s: s["piece"])
    tiers = []
    for k in range(m):
        mine = [p for p in parts if p["tier"] == k]
        entry = {"tier": k, "dir": f"tier={k}", "rows": sum(p["rows"] for p in mine), "files": [{"name": Path(p["file"]).name, "rows": p["rows"]} for p in mine]}
        for c in RANGE_COLUMNS:
            lo = [p[c]["min"] for p in mine if p[c]["min"] is not None]
            hi = [p[c]["max"] for p in mine if p[c]["max"] is not None]
            entry[c] = {"min": min(lo) if lo else None, "max": max(hi) if hi else None}
        comp: dict[str, Counter] = {}
        for p in mine:
            for col, counts in p["composition"].items():
                comp.setdefault(col, Counter()).update(counts)
        entry["weight"]["mean"] = (sum(p["weight_sum"] for p in mine) / entry["rows"]) if entry["rows"] else None
        entry["composition"] = {col: dict(sorted(c.items())) for col, c in sorted(comp.items())}
        tiers.append(entry)
    return tiers


def summarize_counts(rows: list[dict]) -> dict:
    """Manifest `counts` from (status, reason, in_l1, in_l2, n) rows."""
    by_status: Counter = Counter()
    reasons: Counter = Counter()
    orphans = Counter()
    for r in rows:
        by_status[r["status"]] += r["n"]
        if r["status"] == "reject":
            reasons[r["reason"]] += r["n"]
        if r["status"] == "orphan":
            if r["in_l1"]:
                orphans["lesson1"] += r["n"]
            if r["in_l2"]:
                orphans["lesson2"] += r["n"]
    data_rows = sum(n for s, n in by_status.items() if s != "orphan")
    return {
        "data_rows": data_rows,
        "tiered": by_status.get("tier", 0),
        "rejected": by_status.get("reject", 0),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "unscored_not_scorable": by_status.get("unscored", 0),
        "scored_other_split": by_status.get("scored_other_split", 0),
        "other_split": by_status.get("other_split", 0),
        "orphan_scores": {"lesson1": orphans.get("lesson1", 0), "lesson2": orphans.get("lesson2", 0)},
    }


def stable_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
