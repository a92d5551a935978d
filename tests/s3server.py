"""A real S3 API on this machine for tests: `moto` in server mode on 127.0.0.1.

`tests/conftest.py` picks the port and sets the standard AWS variables
(`AWS_ENDPOINT_URL`, fake credentials, a region) when the session starts, so
every process the tests start (local Ray's workers, `ray start` nodes, job
entrypoints) inherits them, exactly as a user's pods get them from their
environment. The `s3` fixture starts the server on that port and stops it
after the session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws_env(port: int) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "irgpt-test",
            "AWS_SECRET_ACCESS_KEY": "irgpt-test", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true"}


@contextmanager
def s3_server(port: int, timeout_s: float = 60.0):
    """Run `python -m moto.server` on 127.0.0.1:`port` until the block ends; yields its URL."""
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(url + "/", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start on {url} (exit {proc.poll()})") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_bucket(name: str) -> str:
    """Create bucket `name` on the test server; returns `s3://name`."""
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"], allow_bucket_creation=True)
    fs.create_dir(name)
    return f"s3://{name}"
