"""Inputs for the Tune / ablation tests.

`handmade`: samples + score tables from `tests/builders.py` (no images
worth training on): enough for the driver with a fake trial body.
`tiny_run`: a 40-scene synthetic dataset with score tables built from its
ground truth (Lesson 1 from the band, Lesson 2 flags the misaligned captions),
for the real trial body.
"""

from __future__ import annotations

import os

import pytest

# A loaded 2-core machine can take over a minute to start a worker group (default timeout 60 s).
# Set before the session's Ray starts, so Train's controller actors inherit it.
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "900")


@pytest.fixture(scope="session")
def handmade(tmp_path_factory) -> dict:
    from builders import write_l1_scores, write_l2_scores, write_samples

    root = tmp_path_factory.mktemp("tune_handmade")
    ids = write_samples(root / "data", 40, n_val=4)
    write_l1_scores(root / "l1", ids)
    write_l2_scores(root / "l2", ids)
    return {"data": root / "data", "scores": [root / "l1", root / "l2"], "root": root}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    from tune_data import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("tune_tiny_run"))
