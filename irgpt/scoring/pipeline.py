"""The Ray Data scoring pipeline shared by both lessons: planned parts, an actor
pool, committed outputs, resumption after a crash.

How a pass runs:
1. The driver *plans* parts from the input's Parquet metadata alone: part k is
   rows [start, stop) of one shard file. The plan depends on the input files
   and `part_rows` only, never on Ray's block layout or the number of actors.
2. `ray.data.from_items(parts)` feeds the part descriptors to
   `map_batches(_PartWorker, compute=ActorPoolStrategy(size=N), num_cpus/num_gpus=...)`: each actor
   builds the scorer once, reads its part's rows itself (rows never travel
   through the driver), scores them and *commits* the part: rejects first,
   then `part-KKKKK.parquet` under a temp name renamed into place.
   When `out_dir` is a work mirror of object storage (`storage.remote_of`), the
   actors commit to the store instead, in the same order (rejects, node, part
   last; one upload each), so an actor on any node writes where the driver
   looks, and the driver copies the committed parts into its mirror after the pass.
3. A part whose output file exists (here or in the store) is done. Re-running the same command after
   a crash (even `kill -9`) skips done parts, so the pass ends with exactly one
   row per scored input row. `_state/plan.json` records the plan and a key of
   the inputs + config; a different key refuses to mix results (use --force).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from irgpt import storage
from irgpt.config import ActorPoolConfig
from irgpt.data.io import (
    REJECTS_SCHEMA,
    atomic_write_json,
    read_part,
    shard_name,
    shard_paths,
    write_rejects,
    write_table,
)
from irgpt.errors import CommandError
from irgpt.ray_utils import log0

STATE_DIR = "_state"


def plan_parts(input_dir: str | Path, part_rows: int) -> list[dict]:
    """Deterministic parts of at most `part_rows` rows, from shard metadata."""
    files = shard_paths(input_dir)
    if not files:
        raise CommandError(f"{input_dir}: no part-*.parquet shards to score")
    parts = []
    for path in files:
        n = pq.ParquetFile(path).metadata.num_rows
        for start in range(0, n, part_rows):
            parts.append(
                {"part": len(parts), "file": str(Path(path).resolve()), "start": start, "stop": min(n, start + part_rows)}
            )
    return parts


class _PartWorker:
    """One per actor: builds the scorer once, then scores and commits parts."""

    def __init__(self, scorer_factory, scorer_kwargs: dict, out_dir: str, columns: list[str] | None,
                 store: str | None = None):
        self.scorer = scorer_factory(**scorer_kwargs)
        self.out = store or out_dir  # where parts are committed: the store, else the directory
        self.columns = columns

    def __call__(self, batch: dict) -> dict:
        import ray

        node = ray.get_runtime_context().get_node_id()
        summaries = {"part": [], "rows_in": [], "rows_out": [], "rejected": [], "seconds": [], "node": []}
        for i in range(len(batch["part"])):
            spec = {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in batch.items()}
            t0 = time.perf_counter()
            table = read_part(spec, self.columns)
            out, rejects = self.scorer.score(table, spec)
            _check_accounting(spec, table, out, rejects)
            part = int(spec["part"])
            rej_rows = [{**{n: None for n in REJECTS_SCHEMA.names}, "source_file": spec["file"], **r} for r in rejects]
            storage.write_parquet(storage.join(self.out, STATE_DIR, f"rejects-{part:05d}.parquet"),
                                  pa.Table.from_pylist(rej_rows, schema=REJECTS_SCHEMA))
            storage.write_json(storage.join(self.out, STATE_DIR, f"node-{part:05d}.json"), {"part": part, "node": node})
            storage.write_parquet(storage.join(self.out, shard_name(part)), out)  # the commit point
            summaries["part"].append(part)
            summaries["rows_in"].append(table.num_rows)
            summaries["rows_out"].append(out.num_rows)
            summaries["rejected"].append(len(rejects))
            summaries["seconds"].append(time.perf_counter() - t0)
            summaries["node"].append(node)
        return summaries


def _check_accounting(spec: dict, table: pa.Table, out: pa.Table, rejects: list[dict]) -> None:
    """Every row the scorer selected comes back once, as a score or a reject."""
    ids_out = out.column("sample_id").to_pylist()
    ids_rej = [r.get("sample_id") for r in rejects]
    if len(set(ids_out)) != len(ids_out) or set(ids_out) & set(ids_rej):
        raise RuntimeError(f"part {spec['part']} ({spec['file']}): scorer returned a sample twice")
    if not set(ids_out) | set(ids_rej) <= set(table.column("sample_id").to_pylist()):
        raise RuntimeError(f"part {spec['part']}: scorer returned ids that are not in its input")


def run_pass(
    *,
    name: str,
    input_dir: str | Path,
    out_dir: str | Path,
    scorer_factory,
    scorer_kwargs: dict,
    pool: ActorPoolConfig,
    key: dict,
    columns: list[str] | None = None,
    force: bool = False,
) -> dict:
    """Score every part of `input_dir` into `out_dir` (resumable). Returns a summary."""
    import ray

    out_dir = Path(out_dir).resolve()  # actors do not share the driver's working directory
    store = storage.remote_of(out_dir)  # a mirror of object storage: parts commit to the store
    parts = plan_parts(input_dir, pool.part_rows)
    state_path = out_dir / STATE_DIR / "plan.json"
    # Files by their store URI where they are a work mirror's: the same plan on any machine.
    plan = {"name": name, "key": key,
            "parts": [{"file": storage.readable(p["file"]), "start": p["start"], "stop": p["stop"]} for p in parts]}
    if force:
        storage.clear(out_dir)
    previous = (json.loads(state_path.read_text()) if state_path.is_file() else
                storage.read_json(storage.join(store, STATE_DIR, "plan.json"))
                if store and storage.is_file(storage.join(store, STATE_DIR, "plan.json")) else None)
    if previous is not None and previous != json.loads(json.dumps(plan, default=str)):
        raise CommandError(
            f"{store or out_dir} holds a '{previous.get('name')}' pass with other inputs or settings; "
            "use another output directory or --force to recompute"
        )
    atomic_write_json(state_path, plan)
    in_store = set()
    if store:
        storage.write_json(storage.join(store, STATE_DIR, "plan.json"), plan)
        in_store = set(storage.list_files(store))
    todo = [p for p in parts if not (out_dir / shard_name(p["part"])).is_file() and shard_name(p["part"]) not in in_store]
    done = len(parts) - len(todo)
    if done:
        log0(f"[{name}] resuming: {done}/{len(parts)} parts already committed, {len(todo)} to go")
    t0 = time.perf_counter()
    rows = 0
    if todo:
        ds = ray.data.from_items(todo, override_num_blocks=len(todo))
        ds = ds.map_batches(
            _PartWorker,
            fn_constructor_kwargs={
                "scorer_factory": scorer_factory,
                "scorer_kwargs": scorer_kwargs,
                "out_dir": str(out_dir),
                "columns": columns,
                "store": store,
            },
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=max(1, min(pool.concurrency, len(todo)))),
            num_cpus=pool.num_cpus,
            num_gpus=pool.num_gpus or None,
        )
        for summary in ds.iter_rows():
            done += 1
            rows += summary["rows_out"]
            rate = summary["rows_in"] / max(summary["seconds"], 1e-9)
            log0(f"[{name}] part {summary['part']:05d} committed: {summary['rows_out']} rows, "
                 f"{summary['rejected']} rejected, {rate:.0f} rows/s ({done}/{len(parts)})")
    seconds = time.perf_counter() - t0
    if store:  # the parts every actor committed, into the driver's mirror
        storage.pull(store, out_dir, delete=False)
    rejects = merge_rejects(out_dir, len(parts))
    nodes = part_nodes(out_dir)
    log0(f"[{name}] finished: {rows} rows scored in {seconds:.1f}s "
         f"({rows / max(seconds, 1e-9):.0f} rows/s), {len(parts)} parts, {rejects} rejected in total")
    return {"parts": len(parts), "rows_scored_now": rows, "seconds": seconds, "rejected": rejects, "nodes": nodes}


def part_nodes(*out_dirs: str | Path) -> dict[str, int]:
    """Ray node id -> committed parts it scored in these passes (recorded beside each part,
    before its commit; kept across resumptions). Score manifests carry it as `ray_nodes`."""
    counts: dict[str, int] = {}
    for out_dir in out_dirs:
        for path in sorted((Path(out_dir) / STATE_DIR).glob("node-*.json")):
            node = json.loads(path.read_text())["node"]
            counts[node] = counts.get(node, 0) + 1
    return counts


def read_rejects_parts(out_dirs: list[Path]) -> pa.Table:
    """The per-part rejects of one or more passes, in part order."""
    tables = [pq.read_table(p) for d in out_dirs for p in sorted((Path(d) / STATE_DIR).glob("rejects-*.parquet"))]
    return pa.concat_tables(tables) if tables else REJECTS_SCHEMA.empty_table()


def merge_rejects(out_dir: Path, n_parts: int) -> int:
    """The per-part rejects as the dataset's `_rejects/rejects.parquet`."""
    return write_rejects(out_dir, read_rejects_parts([out_dir]))


def read_scores(out_dir: str | Path, columns: list[str] | None = None) -> pa.Table:
    """All committed parts of a pass, in part order."""
    paths = shard_paths(out_dir)
    if not paths:
        return pa.table({})
    return pa.concat_tables([pq.read_table(p, columns=columns) for p in paths])


def attach_data_column(table: pa.Table, data_dir: str | Path, column: str) -> pa.Table:
    """Join `column` of the dataset (e.g. synthetic ground truth) onto score rows, if it has it."""
    paths = shard_paths(data_dir)
    if column not in pq.read_schema(paths[0]).names:
        return table
    extra = pa.concat_tables(pq.read_table(p, columns=["sample_id", column]) for p in paths)
    return table.join(extra, "sample_id", join_type="left outer").sort_by("sample_id")


def write_score_parts(out_dir: Path, table: pa.Table, rows_per_part: int) -> None:
    """Replace the final score shards of `out_dir` with `table` in parts."""
    for old in shard_paths(out_dir):
        old.unlink()
    step = max(1, rows_per_part)
    for k, start in enumerate(range(0, table.num_rows, step)):
        write_table(out_dir / shard_name(k), table.slice(start, step))
