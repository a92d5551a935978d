"""The smoke pipeline with its dataset and run root in object storage (the local S3
server): scoring killed with kill -9 part way, resumed on a "new machine" (an empty
local cache) from the parts already committed to the bucket, and every output read
back from the bucket with pyarrow, DuckDB (through pyarrow) and Ray Data."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest

from irgpt import storage
from irgpt.data.io import PANDAS_IGNORE

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _pipeline(bucket: str, cache: Path) -> tuple[list[str], dict]:
    cmd = [sys.executable, "jobs/pipeline.py", "--config", "configs/smoke.yaml",
           "--set", f"run.root={bucket}/runs", "--set", f"data.dir={bucket}/datasets/synth",
           "--set", "scoring.lesson2.pool.part_rows=16"]
    return cmd, {**os.environ, "IRGPT_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1", "RAY_ADDRESS": ""}


def test_smoke_pipeline_in_s3_resumes_after_kill_9_on_a_fresh_machine(s3_bucket, tmp_path, ray_local):
    import duckdb
    import ray

    run = f"{s3_bucket}/runs/smoke"
    cmd, env = _pipeline(s3_bucket, tmp_path / "machine-1")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 480
        while len([f for f in storage.list_files(f"{run}/scores_l2") if f.startswith("_before/part-")]) < 2:
            assert proc.poll() is None, "the pipeline ended before it could be killed"
            assert time.time() < deadline, "no Lesson 2 part was committed to the bucket in time"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.wait()
    committed = sorted(f for f in storage.list_files(f"{run}/scores_l2") if f.startswith("_before/part-"))
    assert storage.read_json(f"{run}/run.json")["stages"][-1]["status"] == "running"
    assert not storage.is_file(f"{run}/scores_l2/manifest.json")  # not finished: no marker

    # A new machine: nothing local, everything from the bucket.
    cmd, env = _pipeline(s3_bucket, tmp_path / "machine-2")
    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    log = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, log[-3000:]
    assert "[pipeline] synth: outputs up to date, skipped (s3://" in log
    # The parts committed to the bucket before the kill were not scored again.
    resumed = [line for line in log.splitlines() if "[score_l2:before] resuming:" in line]
    assert resumed, log[-3000:]
    assert int(resumed[0].split("resuming: ")[1].split("/")[0]) >= len(committed) >= 2
    assert not re.search(r'File "[^"]*/irgpt/[^"]*\.py"', log), log[-3000:]  # no traceback through our code

    record = storage.read_json(f"{run}/run.json")
    assert [s["status"] for s in record["stages"]] == ["skipped"] * 4 + ["done"] * 6
    assert record["run_dir"] == run

    # Scores: one row per scored sample, parts + rejects account for every caption row.
    fs, path = storage.resolve(f"{run}/scores_l2")
    scores = pq.read_table(path, filesystem=fs, ignore_prefixes=PANDAS_IGNORE)
    manifest = storage.read_json(f"{run}/scores_l2/manifest.json")
    ids = scores.column("sample_id").to_pylist()
    assert len(ids) == len(set(ids)) == manifest["num_rows"] > 0
    data_fs, data_path = storage.resolve(f"{s3_bucket}/datasets/synth")
    data = pds.dataset(data_path, filesystem=data_fs, format="parquet", ignore_prefixes=PANDAS_IGNORE)
    data_rows = data.to_table(columns=["sample_id"])  # noqa: F841 - read by DuckDB
    assert duckdb.sql("select count(*) from data_rows").fetchall() == [
        (storage.read_json(f"{s3_bucket}/datasets/synth/manifest.json")["num_rows"],)]
    scores_rows = scores.select(["sample_id"])  # noqa: F841 - read by DuckDB
    assert duckdb.sql("select count(*) from scores_rows s join data_rows d using (sample_id)").fetchall() == [
        (len(ids),)]

    # Tiers: Ray Data reads the bucket directly, one row per tiered sample.
    tiers = storage.read_json(f"{run}/tiers/manifest.json")
    assert ray.data.read_parquet(f"{run}/tiers").count() == tiers["num_rows"] == sum(tiers["tier_sizes"])
    summary = storage.read_json(f"{run}/train/summary.json")
    assert summary["stage1"]["steps"] == 2 and summary["stage2"]["steps"] == 2
    assert storage.is_file(f"{run}/train/stage2/model/config.json")
    assert storage.is_file(f"{run}/eval/metrics.json") and storage.is_file(f"{run}/report/report.html")
