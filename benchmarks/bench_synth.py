"""Throughput of `irgpt data synth`: scenes/s and rows/s by image size and worker count.

    .venv/bin/python benchmarks/bench_synth.py            # writes benchmarks/results/synth.json

Each configuration runs `synthesize` end to end (render, encode, Parquet,
manifest) into a temporary directory; the wall time includes starting the
worker processes, which is reported separately as `startup_s` (a run of one
1-scene shard per worker), so steady-state throughput can be read off.
`cpu_s` is this process's plus its finished children's CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from irgpt.config.sections import SynthConfig
from irgpt.data.synth import synthesize

RESULTS = Path(__file__).resolve().parent / "results" / "synth.json"


def _run(num_samples: int, size: int, workers: int, shard: int) -> tuple[float, dict]:
    cfg = SynthConfig(num_samples=num_samples, image_size=size, num_workers=workers, shard_scenes=shard, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        manifest = synthesize(cfg, tmp, progress=False)
        return time.perf_counter() - t0, manifest


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes-64", type=int, default=600, help="scenes per run at 64 px")
    ap.add_argument("--scenes-224", type=int, default=120, help="scenes per run at 224 px")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    results = []
    for size, n in ((64, args.scenes_64), (224, args.scenes_224)):
        for workers in (int(w) for w in args.workers.split(",")):
            shard = max(1, n // (4 * workers))  # several shards per worker: balanced tails
            # pool start-up: one tiny shard per worker, so every worker process starts
            startup, _ = _run(workers, size, workers, 1) if workers > 1 else (0.0, None)
            c0 = _cpu()
            wall, manifest = _run(n, size, workers, shard)
            cpu = _cpu() - c0
            rows = manifest["num_rows"]
            rec = {"image_size": size, "workers": workers, "scenes": n, "rows": rows, "shard_scenes": shard,
                   "wall_s": round(wall, 3), "scenes_per_s": round(n / wall, 1), "rows_per_s": round(rows / wall, 1),
                   "startup_s": round(startup, 3), "cpu_s": round(cpu, 3),
                   "cpu_ms_per_scene": round(1000 * cpu / n, 1)}
            results.append(rec)
            print(json.dumps(rec), flush=True)
    out = {"benchmark": "synth", "created_unix": round(time.time(), 1), "cpu_count": os.cpu_count(),
           "python": platform.python_version(), "machine": platform.machine(), "results": results,
           "note": "wall time of synthesize() end to end; shared 2-core machine, other jobs may have run"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
