"""Lesson 1 estimators: exact kernel trick vs random Fourier features as n grows.

    .venv/bin/python benchmarks/bench_mmd.py            # writes benchmarks/results/mmd.json

n infrared x m = n/2 visible features of dimension 64 (two shifted Gaussians,
per-sample shift so d_i has spread), RFF with D = 4096. The exact path is
O(n^2 + n m + m^2); when its predicted time (quadratic in the last measured
size) exceeds --exact-limit-s it is skipped and extrapolated, marked as such
in the JSON. The RFF path's peak traced memory (tracemalloc, numpy buffers
included) is measured in a separate run at the largest n so tracing does not
distort the timings. Wall times on a shared machine include contention: the
load average is recorded beside them, and `*_cpu_s` (process CPU time, all
threads) is the less contention-sensitive figure. Speed-ups are wall-time
ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from irgpt.scoring import mmd  # noqa: E402


def make_sets(n: int, m: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(dim)
    direction /= np.linalg.norm(direction)
    t = rng.uniform(0.0, 1.0, n)
    ir = rng.standard_normal((n, dim)) + (3.0 * t)[:, None] * direction
    vis = rng.standard_normal((m, dim))
    return ir, vis


def exact_cost(n: int, m: int) -> int:
    return n * n + n * m + m * m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000, 64000])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--rff-dim", type=int, default=4096)
    ap.add_argument("--exact-limit-s", type=float, default=120.0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "mmd.json"))
    args = ap.parse_args(argv)

    rows, last_exact = [], None  # (cost, seconds) of the last exact run
    for n in args.sizes:
        m = n // 2
        ir, vis = make_sets(n, m, args.dim)
        t0 = time.perf_counter()
        s = mmd.pooled_bandwidth(ir, vis, seed=0, sample=2000)
        row = {"n": n, "m": m, "bandwidth": s, "bandwidth_s": round(time.perf_counter() - t0, 3)}
        t0, c0 = time.perf_counter(), time.process_time()
        d_rff, st_rff = mmd.rff_estimate(ir, vis, s, D=args.rff_dim, seed=0)
        row.update(rff_s=round(time.perf_counter() - t0, 3), rff_cpu_s=round(time.process_time() - c0, 3),
                   mmd_rff=st_rff["mmd"])
        predicted = None if last_exact is None else last_exact[1] * exact_cost(n, m) / last_exact[0]
        if predicted is not None and predicted > args.exact_limit_s:
            row.update(exact_s=round(predicted, 1), exact_extrapolated=True,
                       exact_note=f"skipped: predicted {predicted:.0f}s > {args.exact_limit_s:.0f}s; "
                                  f"quadratic extrapolation from n={rows[-1]['n']}")
        else:
            t0, c0 = time.perf_counter(), time.process_time()
            d_exact, st_exact = mmd.exact_distances(ir, vis, s)
            seconds = time.perf_counter() - t0
            last_exact = (exact_cost(n, m), seconds)
            row.update(exact_s=round(seconds, 3), exact_cpu_s=round(time.process_time() - c0, 3),
                       exact_extrapolated=False, mmd_exact=st_exact["mmd"],
                       spearman_rff_exact=float(spearmanr(d_rff, d_exact).statistic))
        row["speedup"] = round(row["exact_s"] / row["rff_s"], 2)
        row["loadavg_1min"] = os.getloadavg()[0]
        rows.append(row)
        print(json.dumps(row), flush=True)

    n = args.sizes[-1]
    ir, vis = make_sets(n, n // 2, args.dim)
    s = rows[-1]["bandwidth"]
    tracemalloc.start()
    mmd.rff_estimate(ir, vis, s, D=args.rff_dim, seed=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    input_mb = (ir.nbytes + vis.nbytes) / 2**20
    result = {
        "benchmark": "mmd_exact_vs_rff",
        "config": {"dim": args.dim, "rff_dim": args.rff_dim, "m": "n/2", "chunk": mmd.KERNEL_CHUNK,
                   "exact_limit_s": args.exact_limit_s},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "loadavg_at_end": os.getloadavg()},
        "results": rows,
        "largest_n": n,
        "speedup_at_largest_n": rows[-1]["speedup"],
        "speedup_at_largest_n_extrapolated": rows[-1]["exact_extrapolated"],
        "rff_peak_traced_mb_at_largest_n": round(peak / 2**20, 1),
        "rff_peak_traced_mb_excluding_inputs": round(peak / 2**20 - input_mb, 1),
        "input_features_mb": round(input_mb, 1),
        "process_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}: speed-up {result['speedup_at_largest_n']}x at n={n}"
          f"{' (exact extrapolated)' if result['speedup_at_largest_n_extrapolated'] else ''}, "
          f"rff peak {result['rff_peak_traced_mb_at_largest_n']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
