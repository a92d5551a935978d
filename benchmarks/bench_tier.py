"""Tiering time for synthetic score rows (score rows only: no images).

    .venv/bin/python benchmarks/bench_tier.py                      # 100K and 1M rows, ray + local
    .venv/bin/python benchmarks/bench_tier.py --sizes 100000 --engines ray

For each size: a samples dataset of n infrared caption rows without image
bytes, a Lesson 1 and a Lesson 2 table of n rows each, then `build_tiers`
(M=4, both lessons) with each engine. The Ray engine is the default above
tiers.LOCAL_MAX_ROWS; the local one is timed as the in-memory reference.
Ray start-up and an untimed 2K-row warm-up run (worker processes) are
reported separately; the machine's load average is recorded (the 2-core
development machine is shared, so wall times there are noisy). Writes benchmarks/results/tier.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/builders.py: hand-made inputs

RESULTS = Path(__file__).resolve().parent / "results" / "tier.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--engines", nargs="+", default=["ray", "local"], choices=["ray", "local"])
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)

    import ray
    import ray.data
    from builders import write_l1_scores, write_l2_scores, write_samples

    from irgpt.config.sections import CurriculumConfig
    from irgpt.curriculum.tiers import build_tiers

    t0 = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ray_start = time.perf_counter() - t0
    results = []
    root = Path(tempfile.mkdtemp(prefix="bench_tier_"))
    load_start = os.getloadavg()
    try:
        # Untimed warm-up: starts Ray's worker processes, so the timings below are steady state.
        t = time.perf_counter()
        ids = write_samples(root / "warm", 2000, image_bytes=0)
        write_l1_scores(root / "warm_l1", ids)
        write_l2_scores(root / "warm_l2", ids)
        build_tiers(root / "warm", [root / "warm_l1", root / "warm_l2"], root / "warm_out", CurriculumConfig(), engine="ray")
        warmup = time.perf_counter() - t
        for n in args.sizes:
            t = time.perf_counter()
            ids = write_samples(root / f"data{n}", n, image_bytes=0, shard_rows=100_000)
            write_l1_scores(root / f"l1_{n}", ids, shard_rows=100_000)
            write_l2_scores(root / f"l2_{n}", ids, shard_rows=100_000)
            make = time.perf_counter() - t
            for engine in args.engines:
                out = root / f"out_{engine}_{n}"
                t = time.perf_counter()
                m = build_tiers(root / f"data{n}", [root / f"l1_{n}", root / f"l2_{n}"], out, CurriculumConfig(), engine=engine)
                took = time.perf_counter() - t
                row = {"score_rows": n, "engine": engine, "seconds": round(took, 2), "rows_per_s": round(n / took),
                       "tier_sizes": m["tier_sizes"], "parts": sum(len(x["files"]) for x in m["tiers"]),
                       "engine_notes": m["engine_notes"], "inputs_written_s": round(make, 2)}
                print(json.dumps(row))
                results.append(row)
                shutil.rmtree(out)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        ray.shutdown()
    report = {
        "benchmark": "tier",
        "what": "build_tiers wall time: samples (no images) + Lesson 1 + Lesson 2 tables of n rows each, M=4",
        "ray_start_s": round(ray_start, 2),
        "warmup_2k_rows_ray_s": round(warmup, 2),
        "num_cpus": args.num_cpus,
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": load_start, "load_avg_at_end": os.getloadavg(), "python": platform.python_version()},
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
