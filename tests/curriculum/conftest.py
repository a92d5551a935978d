"""Hand-made samples + score tables (~200 scored rows) shared by the curriculum tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders import write_l1_scores, write_l2_scores, write_samples

from irgpt.config.sections import CurriculumConfig

N_IR = 200
MISSING_L1 = 5  # the last 5 infrared ids have no Lesson 1 score
MISSING_L2 = 3  # the first 3 have no Lesson 2 score


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> dict:
    """data: 200 IR caption rows + 10 visible + 10 instruction + 5 val rows;
    l1 misses 5 IR ids and has one orphan; l2 misses 3 and scores one val row."""
    root = tmp_path_factory.mktemp("curriculum_inputs")
    ids = write_samples(root / "data", N_IR, n_visible=10, n_instruction=10, n_val=5, shard_rows=60)
    l1 = write_l1_scores(root / "l1", ids[: N_IR - MISSING_L1] + ["ghost-0000001"], shard_rows=70)
    l2 = write_l2_scores(root / "l2", ids[MISSING_L2:] + ["val-0000000"], shard_rows=90)
    return {"root": root, "data": root / "data", "l1": root / "l1", "l2": root / "l2", "ids": ids, "l1_table": l1, "l2_table": l2}


@pytest.fixture(scope="session")
def tiered(inputs, tmp_path_factory) -> dict:
    """The default curriculum (M=4, both lessons) tiered by the local engine."""
    from irgpt.curriculum.tiers import build_tiers

    out = tmp_path_factory.mktemp("tiers") / "out"
    manifest = build_tiers(inputs["data"], [inputs["l1"], inputs["l2"]], out, CurriculumConfig(), engine="local", rows_per_part=20)
    return {"out": out, "manifest": manifest, **inputs}


def read_manifest(out: Path) -> dict:
    return json.loads((Path(out) / "manifest.json").read_text())
