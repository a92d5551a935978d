"""Shared fixtures. Ray is started once per test session, on 2 local CPUs."""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile

import pytest
from s3server import aws_env, free_port, make_bucket, s3_server

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Object storage: a local S3 server (the `s3` fixture) on a port chosen now, so every
# process started from here (Ray workers and nodes included) inherits the endpoint
# and credentials, as pods do; and a cache of fetched objects of this session's own.
S3_PORT = free_port()
os.environ.update(aws_env(S3_PORT))
os.environ["IRGPT_CACHE_DIR"] = tempfile.mkdtemp(prefix="irgpt-test-cache-")
atexit.register(shutil.rmtree, os.environ["IRGPT_CACHE_DIR"], True)
_BUCKETS = itertools.count(os.getpid() % 100000)

# Ray workers import the classes a test hands them (scorers, train loops) by
# module name; pytest puts each test folder on the driver's sys.path only, so
# put the folders on PYTHONPATH, which the local Ray's workers inherit.
_TESTS = os.path.dirname(os.path.abspath(__file__))
_FOLDERS = [root for root, _dirs, files in os.walk(_TESTS) if any(f.endswith(".py") for f in files)]
os.environ["PYTHONPATH"] = os.pathsep.join(
    _FOLDERS + [os.path.dirname(_TESTS)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)


@pytest.fixture(scope="session")
def s3_endpoint():
    """The local S3 server (moto), started once and stopped after the session."""
    with s3_server(S3_PORT) as url:
        yield url


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    """A fresh bucket for one test: `s3://NAME`."""
    import re

    name = f"{re.sub(r'[^a-z0-9-]', '-', request.node.name.lower())[:40].strip('-')}-{next(_BUCKETS)}"
    return make_bucket(name)


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray (2 CPUs) shared by every test that needs one."""
    import ray

    from irgpt.config import RayConfig
    from irgpt.ray_utils import ensure_ray

    ensure_ray(RayConfig(address=None, num_cpus=2))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine OpenMP's spinning threads make
    a second thread up to 10x slower (Ray Train workers also run one thread each).
    Modules opt in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
