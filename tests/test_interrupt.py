"""Ctrl-C and SIGTERM end a command with one line and exit 130, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_synth_exits_130_with_one_line(tmp_path, sig):
    cmd = [sys.executable, "-m", "irgpt", "data", "synth", "--out", str(tmp_path / "D"),
           "--set", "data.synth.num_samples=4000", "--set", "data.synth.num_workers=1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(tmp_path.glob(".D.incoming-*/part-*")):  # it is writing
        time.sleep(0.05)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1] == "irgpt data: interrupted: rerun the same command to resume"
    assert list(tmp_path.iterdir()) == []  # the staging directory went with it; no half dataset in D
