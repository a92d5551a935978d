"""The distributed tiering engine (Ray Data): no score or sample rows on the driver.

1. Join (score columns only). The sample index (`sample_id`, split, band,
   task, source) and the score tables are tagged, hash-bucketed by
   `stable_hash(sample_id) % B`, unioned and grouped by bucket; each bucket is
   joined and classified in pyarrow (`ranking.join_scores`). Ray 2.60's
   `Dataset.join` would do this but needs `polars`, which is not a dependency.
2. Rank. Tier candidates get `composite_rank` and `_h`; a distributed sort
   (`ds.sort` on the total key composite, hash, id) orders them; tier and part
   boundaries are fixed positions (n, M, R), and only the rows at those
   positions are fetched (`rows_at`). Every row then finds its part by
   comparing its key with the boundary keys, which does not depend on the
   order rows stream in.
3. Attach and write. The rank table (sample_id + scores + part, ~100 B a
   row) is broadcast (object store) to the tasks that attach it to the sample
   rows read from the data shards; rows are grouped by part, and each group is sorted by
   key and written to `tier=K/part-JJJJJ.parquet` by `tier_write.write_part`.
   Only per-part stats, status counts and rejects come back to the driver.

The broadcast in step 3 costs O(scored rows) memory per worker process
(~150 MB per 1M rows); past ~50M scored rows, replace it by the bucketed join of step 1.
OUT must be on storage every Ray node can write (as for every dataset here).
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from irgpt import storage
from irgpt.curriculum.ranking import (
    INDEX_COLUMNS,
    JOINED_SCHEMA,
    L1_COLUMNS,
    L2_COLUMNS,
    SORT_KEY,
    STATUS_ORPHAN,
    STATUS_REJECT,
    STATUS_TIER,
    add_composite,
    join_scores,
    key_of,
    piece_plan,
    pieces_by_key,
    status_counts,
)
from irgpt.curriculum.tier_inputs import DatasetInput
from irgpt.curriculum.tier_local import ORPHAN_EXAMPLES, EngineResult, RankLookup
from irgpt.curriculum.tier_write import output_schema, write_part
from irgpt.data.schema import stable_hash
from irgpt.errors import CommandError
from irgpt.scoring.weights import distributed_eq5_weights, rows_at

UNION_SCHEMA = pa.schema(
    [("sample_id", pa.string()), ("_src", pa.int8()), ("_bucket", pa.int32())]
    + [(c, pa.string()) for c in INDEX_COLUMNS]
    + [(c, pa.float64()) for c in L1_COLUMNS + L2_COLUMNS]
)
SRC_DATA, SRC_L1, SRC_L2 = 0, 1, 2
ROWS_PER_BUCKET = 200_000


def ensure_ray(ray_cfg=None) -> None:
    """`ray.init` from a `RayConfig` unless Ray is already up (tests, jobs)."""
    import ray

    if ray.is_initialized():
        return
    kwargs = {"address": getattr(ray_cfg, "address", None)}
    if kwargs["address"] is None:
        kwargs["num_cpus"] = getattr(ray_cfg, "num_cpus", None)
        mb = getattr(ray_cfg, "object_store_memory_mb", None)
        if mb:
            kwargs["object_store_memory"] = int(mb) * 2**20
        kwargs["include_dashboard"] = False
    ray.init(**kwargs)


def _to_union(batch: pa.Table, src: int, buckets: int) -> pa.Table:
    n = batch.num_rows
    ids = batch.column("sample_id")
    cols = {
        "sample_id": ids.cast(pa.string()),
        "_src": pa.array(np.full(n, src, np.int8)),
        "_bucket": pa.array([stable_hash(s) % buckets for s in ids.to_pylist()], pa.int32()),
    }
    for f in UNION_SCHEMA:
        if f.name not in cols:
            cols[f.name] = batch.column(f.name).cast(f.type) if f.name in batch.column_names else pa.nulls(n, f.type)
    return pa.table(cols, schema=UNION_SCHEMA)


def _join_bucket(group: pa.Table, use_l1: bool, use_l2: bool, split: str | None, have: tuple[bool, bool]) -> pa.Table:
    src = group.column("_src")

    def part(code: int, cols):
        return group.filter(pc.equal(src, code)).select(["sample_id", *cols])

    index = part(SRC_DATA, INDEX_COLUMNS)
    l1 = part(SRC_L1, L1_COLUMNS) if have[0] else None
    l2 = part(SRC_L2, L2_COLUMNS) if have[1] else None
    return join_scores(index, l1, l2, use_l1=use_l1, use_l2=use_l2, split=split)


def _candidates(batch: pa.Table, cfg) -> pa.Table:
    cand = batch.filter(pc.equal(batch.column("status"), STATUS_TIER)).select(JOINED_SCHEMA.names)
    return add_composite(cand, cfg)


def _smallest_orphans(batch: pa.Table) -> pa.Table:
    ids = batch.filter(pc.equal(batch.column("status"), STATUS_ORPHAN)).column("sample_id").to_pylist()
    return pa.table({"sample_id": pa.array(sorted(ids)[:ORPHAN_EXAMPLES], pa.string())})


_LOOKUPS: dict[str, RankLookup] = {}


def _attach(batch: pa.Table, token: str, refs: list) -> pa.Table:
    """Attach the broadcast rank table to a batch of sample rows.

    A plain task, not an actor pool: on a small cluster an actor pool can
    hold every CPU while the following shuffle waits for one (seen on 2 CPUs:
    "Cluster resources are not enough"). Ray reuses worker processes, so the
    lookup is built once per worker process and cached under `token`.
    """
    import ray

    lookup = _LOOKUPS.get(token)
    if lookup is None:
        _LOOKUPS.clear()
        lookup = _LOOKUPS[token] = RankLookup(pa.concat_tables(ray.get(list(refs))))
    return lookup.attach(batch)


def _write_group(group: pa.Table, pieces: dict, out: str, schema: pa.Schema) -> pa.Table:
    import json

    index = int(group.column("_piece")[0].as_py())
    stats = write_part(group, pieces[index], out, schema)
    return pa.table({"stats": [json.dumps(stats)]})


def run_ray(
    data: DatasetInput,
    scores: dict[int, DatasetInput],
    out: Path,
    cfg,
    *,
    split: str | None,
    rows_per_part: int,
    reweight=None,
    ray_cfg=None,
) -> EngineResult:
    import json

    import ray
    import ray.data as rd

    ensure_ray(ray_cfg)
    total = data.rows + sum(s.rows for s in scores.values())
    buckets = max(2, min(512, math.ceil(total / ROWS_PER_BUCKET)))

    def read(inp: DatasetInput, cols):
        # Tasks run on any node: a file of the driver's work mirror is read from its store.
        return rd.read_parquet([storage.readable(f) for f in inp.files], partitioning=None).select_columns(list(cols))

    index_cols = ["sample_id"] + [c for c in INDEX_COLUMNS if c in data.schema.names]
    parts = [read(data, index_cols).map_batches(_to_union, fn_args=(SRC_DATA, buckets), batch_format="pyarrow")]
    weights_info = None
    if 1 in scores:
        l1 = read(scores[1], ["sample_id", *L1_COLUMNS])
        parts.append(l1.map_batches(_to_union, fn_args=(SRC_L1, buckets), batch_format="pyarrow"))
    if 2 in scores:
        l2 = read(scores[2], ["sample_id", *L2_COLUMNS])
        if reweight is not None:
            l2, weights_info = distributed_eq5_weights(l2.materialize(), reweight)
        parts.append(l2.map_batches(_to_union, fn_args=(SRC_L2, buckets), batch_format="pyarrow"))
    union = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    join_kwargs = dict(use_l1=cfg.use_l1, use_l2=cfg.use_l2, split=split, have=(1 in scores, 2 in scores))
    try:
        joined = union.groupby("_bucket", num_partitions=buckets).map_groups(_join_bucket, fn_kwargs=join_kwargs, batch_format="pyarrow").materialize()
        count_rows = joined.map_batches(status_counts, batch_format="pyarrow").take_all()
        reject_refs = joined.map_batches(
            lambda t: t.filter(pc.equal(t.column("status"), STATUS_REJECT)).select(["sample_id", "reason"]),
            batch_format="pyarrow",
        ).to_arrow_refs()
        rejects = pa.concat_tables([t for t in ray.get(reject_refs) if t.num_rows] or [pa.table({"sample_id": pa.array([], pa.string()), "reason": pa.array([], pa.string())})])
        orphans = sorted(r["sample_id"] for r in joined.map_batches(_smallest_orphans, batch_format="pyarrow").take_all())[:ORPHAN_EXAMPLES]

        ordered = joined.map_batches(_candidates, fn_args=(cfg,), batch_format="pyarrow").sort(list(SORT_KEY)).materialize()
        n = ordered.count()
        plan = piece_plan(n, cfg.m, rows_per_part)
        nonempty = [p for p in plan if p.rows]
        keys = [key_of(r) for r in rows_at(ordered, [p.start for p in nonempty[1:]])]
        piece_ids = [p.index for p in nonempty]
        rank = ordered.map_batches(
            lambda t: t.append_column("_piece", pa.array(pieces_by_key(t, keys, piece_ids), pa.int64())),
            batch_format="pyarrow",
        ).materialize()
        refs = rank.to_arrow_refs()

        schema = output_schema(data.schema)
        stats = []
        if n:
            samples = read(data, data.schema.names)
            token = uuid.uuid4().hex
            attached = samples.map_batches(_attach, fn_kwargs={"token": token, "refs": refs}, batch_format="pyarrow")
            cpus = int(ray.cluster_resources().get("CPU", 1))
            if storage.remote_of(out):  # a staging prefix left by a killed run (same pid) must not mix in
                storage.delete(storage.remote_of(out))  # (the local staging directory is new and empty)
            written = attached.groupby("_piece", num_partitions=max(1, min(len(nonempty), 2 * cpus, 200))).map_groups(
                _write_group, fn_kwargs={"pieces": {p.index: p for p in nonempty}, "out": storage.readable(out),
                                         "schema": schema}, batch_format="pyarrow"
            )
            stats = [json.loads(r["stats"]) for r in written.take_all()]
            if storage.remote_of(out):  # parts the tasks wrote to the store: into the staging directory
                storage.pull(storage.remote_of(out), out, delete=False)
                storage.delete(storage.remote_of(out))
    except Exception as exc:
        cause = _user_error(exc)
        if cause is not None:
            raise CommandError(str(cause)) from exc
        raise
    got = sorted(s["piece"] for s in stats)
    if got != (piece_ids if n else []):
        raise RuntimeError(f"tier_ray: parts written {got} != planned {piece_ids}")
    for p in plan:
        if not p.rows:
            stats.append(write_part(schema.empty_table(), p, out, schema))
    rejects = rejects.take(pc.sort_indices(rejects, sort_keys=[("sample_id", "ascending")]))
    return EngineResult(n, stats, count_rows, rejects, orphans, weights_info, notes={"buckets": buckets})


def _user_error(exc: BaseException):
    """The CommandError inside a Ray task error, if that is what failed."""
    seen = exc
    for _ in range(5):
        if isinstance(seen, CommandError) and type(seen) is CommandError:
            return seen
        cause = getattr(seen, "cause", None) or seen.__cause__
        if cause is None:
            break
        seen = cause
    if isinstance(exc, CommandError):
        msg = str(exc).strip().splitlines()
        return CommandError(msg[-1] if msg else "tiering failed")
    return None
