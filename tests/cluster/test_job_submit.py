"""`ray job submit` against a loopback-only local head, as the README shows it.

Starts `ray start --head --num-cpus 2` with the dashboard on 127.0.0.1 (token auth off for
this development head, docs/stack.md), submits `jobs/pipeline.py` with
configs/smoke.yaml, checks the job SUCCEEDED, its logs streamed, and the run
directory appeared; `ray stop` afterwards, whatever happened.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RUNTIME_ENV = {"excludes": [".venv", "runs", ".git", "**/__pycache__"],
               "env_vars": {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}}


def submit(env: dict, dashboard_port: int, entrypoint: list[str]) -> subprocess.CompletedProcess:
    """`ray job submit` of `entrypoint` with this checkout as the working dir; retried while
    the head's job agent is not up yet (it may need a while after `ray start`)."""
    cmd = [RAY, "job", "submit", "--address", f"http://127.0.0.1:{dashboard_port}", "--working-dir", ".",
           "--runtime-env-json", json.dumps(RUNTIME_ENV), "--", *entrypoint]
    for _attempt in range(24):
        job = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=1500)
        if "No available agent to submit job" not in job.stdout + job.stderr:
            break
        time.sleep(5)
    return job


def ray_env() -> dict:
    """As after `. .venv/bin/activate` (the head, and so the job's `python`, is the venv's),
    token auth off for this development head, no inherited RAY_ADDRESS."""
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.mark.cluster
def test_ray_job_submit_runs_the_pipeline(tmp_path):
    env = ray_env()
    gcs, dash = free_port(), free_port()
    start = [RAY, "start", "--head", "--num-cpus", "2",
             "--port", str(gcs), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
             "--include-dashboard", "true", "--disable-usage-stats"]
    subprocess.run(start, check=True, env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    try:
        job = submit(env, dash, ["python", "jobs/pipeline.py", "--config", "configs/smoke.yaml",
                                 "--set", f"run.root={tmp_path}", "--set", "run.name=job"])
        out = job.stdout + job.stderr
        assert job.returncode == 0, out[-4000:]
        assert "succeeded" in out.lower(), out[-4000:]  # "Job 'raysubmit_...' succeeded"
        assert "[pipeline] report: done" in out  # the job's logs streamed back
        run = json.loads((tmp_path / "job" / "run.json").read_text())
        from irgpt.pipeline import STAGES

        assert [s["name"] for s in run["stages"]] == [s.name for s in STAGES]  # clip_warmup included
        assert [s["status"] for s in run["stages"]] == ["done"] * len(STAGES)
        assert (tmp_path / "job" / "report" / "report.html").is_file()
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
