"""The two ways `bench_scoring.py` runs a scoring pass, and their instruments.

`plain_pass`: the scorer called part by part in this process, with perf
counters around reading, the model call and writing (`Timers`, `patched`);
`ray_pass`: the same pass through the Ray Data pipeline; `start_ray` and
`probe_workers` time Ray's own start-up. Not a benchmark on its own (no
`bench_` prefix): `make bench` runs `bench_scoring.py`, which imports this.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path


# ------------------------------------------------------------------ timers ----
class Timers:
    """Accumulated perf-counter seconds and call counts per section."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def reset(self):
        self.seconds.clear()
        self.calls.clear()

    def add(self, name: str, dt: float):
        self.seconds[name] = self.seconds.get(name, 0.0) + dt
        self.calls[name] = self.calls.get(name, 0) + 1

    @contextmanager
    def section(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def wrap(self, name: str, fn):
        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.add(name, time.perf_counter() - t0)

        return timed


@contextmanager
def patched(obj, attr: str, value):
    old = getattr(obj, attr)
    setattr(obj, attr, value)
    try:
        yield
    finally:
        setattr(obj, attr, old)


# -------------------------------------------------------------------- data ----
def pa_array(values):
    import pyarrow as pa

    return pa.array(list(values))


# ---------------------------------------------------------------- scorers ----
def scorer_specs(base_dir: Path) -> dict:
    """name -> (factory, kwargs, columns, how to time its model call)."""
    from irgpt.data.schema import INFRARED_BANDS, VISIBLE_BANDS
    from irgpt.scoring.ir_text import INPUT_COLUMNS, LossScorer, _pool_rows
    from irgpt.scoring.ir_vis import FeatureScorer

    t0 = time.perf_counter()
    pool = _pool_rows(base_dir, 255, 0, 77)
    pool_s = time.perf_counter() - t0
    return {
        "l1_features": {
            "factory": FeatureScorer,
            "kwargs": {"extractor": "tiny", "bands": sorted(list(INFRARED_BANDS) + list(VISIBLE_BANDS))},
            "columns": list(FeatureScorer.input_columns),
            "what": "Lesson 1 MAE features (tiny ViTMAE, 64 px) of IR + VIS caption rows",
        },
        "l2_pool_loss": {
            "factory": LossScorer,
            "kwargs": {"model": "irgpt-tiny-clip", "pretrained": None, "checkpoint": None, "seed": 0,
                       "context_length": 77, "pool": pool, "k": 255},
            "columns": list(INPUT_COLUMNS),
            "what": f"Lesson 2 CLIP pool loss (irgpt-tiny-clip, K=255, pool of {len(pool['sample_id'])}) of IR caption rows",
            "pool_rows_s": round(pool_s, 3),
        },
    }


# --------------------------------------------------------------- variants ----
def plain_pass(name: str, spec: dict, data_dir: Path, out_dir: Path, part_rows: int, timers: Timers) -> dict:
    """The pipeline's per-part work in one process, with perf counters."""
    import pyarrow as pa

    import irgpt.data.images as images
    import irgpt.models.mae as mae
    from irgpt.data.io import REJECTS_SCHEMA, read_part, shard_name, write_table
    from irgpt.scoring.pipeline import STATE_DIR, _check_accounting, merge_rejects, plan_parts

    timers.reset()
    load0 = os.getloadavg()[0]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    scorer = spec["factory"](**spec["kwargs"])
    init_s = time.perf_counter() - t0
    # Model call of each lesson: L1 `extract_features` (imported inside score() at each call),
    # L2 the pool loss (embeds images + texts, then the loss). L2 tokenization apart.
    if name == "l2_pool_loss":
        scorer.pool.losses = timers.wrap("model", scorer.pool.losses)
        scorer._tokenize = timers.wrap("tokenize", scorer._tokenize)
    timers.reset()  # the pool decode in LossScorer.__init__ is model load, not per-part work
    parts_log = []
    with patched(images, "decode_to_array", timers.wrap("decode", images.decode_to_array)), \
            patched(mae, "extract_features", timers.wrap("model", mae.extract_features)):
        parts = plan_parts(data_dir, part_rows)
        for p in parts:
            tp = time.perf_counter()
            with timers.section("read"):
                table = read_part(p, spec["columns"])
            out, rejects = scorer.score(table, p)
            _check_accounting(p, table, out, rejects)
            k = int(p["part"])
            rej_rows = [{**{n: None for n in REJECTS_SCHEMA.names}, "source_file": p["file"], **r} for r in rejects]
            with timers.section("write"):
                write_table(out_dir / STATE_DIR / f"rejects-{k:05d}.parquet",
                            pa.Table.from_pylist(rej_rows, schema=REJECTS_SCHEMA))
                write_table(out_dir / shard_name(k), out)
            parts_log.append({"rows_in": table.num_rows, "rows_out": out.num_rows,
                              "seconds": time.perf_counter() - tp})
        merge_rejects(out_dir, len(parts))
    total = time.perf_counter() - t0
    loop_s = sum(x["seconds"] for x in parts_log)
    rows = sum(x["rows_out"] for x in parts_log)
    rest = parts_log[1:]
    rest_rows, rest_s = sum(x["rows_out"] for x in rest), sum(x["seconds"] for x in rest)
    sections = dict(timers.seconds)
    sections["other"] = max(0.0, loop_s - sum(sections.values()))
    return {
        "variant": "plain", "total_s": round(total, 3), "rows": rows, "parts": len(parts_log),
        "model_load_s": round(init_s, 3), "loop_s": round(loop_s, 3),
        "first_part_s": round(parts_log[0]["seconds"], 3),
        "steady_rows_per_s": round(rest_rows / rest_s, 1) if rest_s > 0 else None,
        "sections_s": {k: round(v, 4) for k, v in sections.items()},
        "calls": dict(timers.calls),
        "cpu_s": round(time.process_time() - cpu0, 3),
        "load_1m_start": round(load0, 2), "load_1m_end": round(os.getloadavg()[0], 2),
    }


def ray_pass(name: str, spec: dict, data_dir: Path, out_dir: Path, part_rows: int, concurrency: int) -> dict:
    import pyarrow.parquet as pq

    from irgpt.config import ActorPoolConfig
    from irgpt.data.io import shard_paths
    from irgpt.scoring.pipeline import run_pass

    pool = ActorPoolConfig(concurrency=concurrency, num_cpus=1.0, part_rows=part_rows)
    load0 = os.getloadavg()[0]
    wall0 = time.time()
    t0 = time.perf_counter()
    summary = run_pass(name=f"bench:{name}", input_dir=data_dir, out_dir=out_dir, scorer_factory=spec["factory"],
                       scorer_kwargs=spec["kwargs"], pool=pool, key={"bench": name}, columns=spec["columns"],
                       force=True)
    total = time.perf_counter() - t0
    commits = sorted((p.stat().st_mtime_ns / 1e9 - wall0, pq.ParquetFile(p).metadata.num_rows)
                     for p in shard_paths(out_dir))
    steady = None
    if len(commits) >= 4:
        (t2, _), (tl, _) = commits[1], commits[-1]
        steady = sum(r for _, r in commits[2:]) / max(tl - t2, 1e-9)
    return {
        "variant": "ray", "total_s": round(total, 3), "rows": summary["rows_scored_now"], "parts": summary["parts"],
        "first_commit_s": round(commits[0][0], 3) if commits else None,
        "last_commit_s": round(commits[-1][0], 3) if commits else None,
        "steady_rows_per_s": round(steady, 1) if steady else None,
        "load_1m_start": round(load0, 2), "load_1m_end": round(os.getloadavg()[0], 2),
    }


def start_ray(cfg, attempts: int = 3) -> tuple[float, list[dict]]:
    """`ensure_ray` timed; retried when the raylet times out waiting for its agents.

    On a heavily loaded machine the dashboard agent can miss the raylet's port-file
    deadline (raylet.err: "Timed out waiting for file .../metrics_agent_port_...");
    a second attempt usually wins with a warm page cache. Failed attempts are reported.
    """
    import ray

    from irgpt.ray_utils import ensure_ray

    failures = []
    for attempt in range(attempts):
        t0 = time.perf_counter()
        try:
            ensure_ray(cfg)
            return time.perf_counter() - t0, failures
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception here
            failures.append({"attempt": attempt + 1, "seconds": round(time.perf_counter() - t0, 1),
                             "error": str(exc)[:200], "load_1m": round(os.getloadavg()[0], 2)})
            print(f"ray.init attempt {attempt + 1} failed after {failures[-1]['seconds']}s: {exc}", flush=True)
            ray.shutdown()
    raise RuntimeError(f"ray.init failed {attempts} times: {failures}")


def probe_workers() -> dict:
    """What a 1-CPU Ray worker sees: niceness, OpenMP / torch threads."""
    import ray

    @ray.remote(num_cpus=1)
    def probe():
        import torch

        return {"nice": os.nice(0), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"), "torch_threads": torch.get_num_threads()}

    return ray.get(probe.remote())


# ---------------------------------------------------------------- analysis ----
