"""The Lesson 1 scoring pass with input and output in object storage vs on local disk, side by side.

    .venv/bin/python benchmarks/bench_storage.py [--scenes 200] [--repeats 2] [--out PATH]
    # default benchmarks/results/storage.json

One process, one local Ray (2 CPUs), one local S3 server (`moto` in server mode
on 127.0.0.1, as the tests use). The same synthetic dataset is written to a
local directory and uploaded to a bucket; then, alternating, `irgpt score
ir-vis --extractor tiny --estimator rff` runs with `--data DIR --out DIR` and
with `--data s3://... --out s3://...` (a fresh node cache each time, so the S3
time includes fetching the dataset, the per-part commits to the bucket and
the final publish). Reported: the median seconds of each, their ratio
(s3 / disk), rows scored, and the dataset's size. The server is on loopback:
the ratio is the cost of the storage layer (HTTP, the extra copies, the
marker-last publish), not of a network.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    import argparse

    from s3server import aws_env, free_port, make_bucket, s3_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "storage.json"))
    args = parser.parse_args()
    port = free_port()
    os.environ.update(aws_env(port))  # before Ray starts: its workers inherit the endpoint

    from irgpt import storage
    from irgpt.cli import main as irgpt
    from irgpt.config import RayConfig
    from irgpt.data.synth import SynthConfig, synthesize
    from irgpt.ray_utils import ensure_ray

    ensure_ray(RayConfig(address=None, num_cpus=2))
    result: dict = {"scenes": args.scenes, "repeats": args.repeats, "load_average_start": os.getloadavg(),
                    "command": "irgpt score ir-vis --extractor tiny --estimator rff", "runs": []}
    with tempfile.TemporaryDirectory() as tmp, s3_server(port):
        tmp = Path(tmp)
        bucket = make_bucket("bench-storage")
        synthesize(SynthConfig(num_samples=args.scenes, seed=5), tmp / "data", progress=False)
        storage.publish(tmp / "data", f"{bucket}/data", marker="manifest.json")
        result["dataset_bytes"] = sum(p.stat().st_size for p in (tmp / "data").rglob("*") if p.is_file())
        times: dict[str, list[float]] = {"disk": [], "s3": []}
        for k in range(args.repeats):
            for where in ("disk", "s3"):
                os.environ["IRGPT_CACHE_DIR"] = str(tmp / f"cache-{where}-{k}")  # a fresh node cache
                data, out = ((str(tmp / "data"), str(tmp / f"scores-{k}")) if where == "disk"
                             else (f"{bucket}/data", f"{bucket}/scores-{k}"))
                t0 = time.perf_counter()
                code = irgpt(["score", "ir-vis", "--data", data, "--out", out, "--extractor", "tiny",
                              "--estimator", "rff"])
                seconds = time.perf_counter() - t0
                if code != 0:
                    raise SystemExit(f"{where}: irgpt score ir-vis exited {code}")
                manifest = storage.read_json(storage.join(out, "manifest.json"))
                times[where].append(seconds)
                result["runs"].append({"where": where, "repeat": k, "seconds": round(seconds, 2),
                                       "rows": manifest["num_rows"]})
                print(f"{where} #{k}: {seconds:.1f}s, {manifest['num_rows']} rows", flush=True)
        result["disk_s"] = round(statistics.median(times["disk"]), 2)
        result["s3_s"] = round(statistics.median(times["s3"]), 2)
        result["ratio_s3_over_disk"] = round(result["s3_s"] / result["disk_s"], 3)
        result["rows"] = result["runs"][0]["rows"]
    result["load_average_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("disk_s", "s3_s", "ratio_s3_over_disk", "rows", "dataset_bytes")}))


if __name__ == "__main__":
    main()
