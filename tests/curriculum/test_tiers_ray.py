"""The Ray Data tiering engine writes the same bytes as the local one (slow: local Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from irgpt.config.sections import CurriculumConfig, WeightsConfig
from irgpt.curriculum.tiers import build_tiers, deterministic_view
from irgpt.scoring.weights import (
    distributed_eq5_weights,
    distributed_medians,
    eq5_weights,
    weight_medians,
)

from .test_tiers import digest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    import ray
    import ray.data

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    if started:
        ray.shutdown()


@pytest.mark.parametrize(
    "cfg,kw",
    [
        (CurriculumConfig(), {}),
        (CurriculumConfig(m=3, anti_l1=True), {"reweight": WeightsConfig(temperature=2.0, normalize=True, clip=[0.1, 1.9]), "rows_per_part": 7}),
    ],
    ids=["default", "anti-reweight"],
)
def test_ray_engine_matches_local_bytes(ray_local, inputs, tmp_path, cfg, kw):
    kw = {"rows_per_part": 20, **kw}
    scores = [inputs["l1"], inputs["l2"]]
    local = build_tiers(inputs["data"], scores, tmp_path / "local", cfg, engine="local", **kw)
    dist = build_tiers(inputs["data"], scores, tmp_path / "ray", cfg, engine="ray", **kw)
    assert dist["engine"] == "ray" and local["engine"] == "local"
    assert digest(tmp_path / "ray") == digest(tmp_path / "local")
    assert deterministic_view(dist) == deterministic_view(local)
    assert (tmp_path / "ray" / "_rejects" / "rejects.parquet").read_bytes() == (tmp_path / "local" / "_rejects" / "rejects.parquet").read_bytes()


def test_ray_reads_the_tier_layout(ray_local, tiered):
    import ray.data

    ds = ray.data.read_parquet(str(tiered["out"]))
    rows = ds.select_columns(["sample_id", "tier"]).take_all()
    assert len(rows) == tiered["manifest"]["num_rows"]
    assert {r["tier"] for r in rows} == {0, 1, 2, 3} and all(isinstance(r["tier"], int) for r in rows)
    assert str(ds.schema().types[ds.schema().names.index("tier")]) == "int32"


def test_distributed_medians_match_in_memory(ray_local):
    import pyarrow as pa
    import ray.data

    cases = [
        [0.3, -0.2, 0.0, 0.5, -0.1, 0.3, 0.9, -0.4],  # even / odd branch sizes, a tie
        [0.1, 0.2, 0.3],  # no non-positive branch
        list(np.random.default_rng(0).normal(size=2001)),
    ]
    for values in cases:
        table = pa.table({"alpha": values})
        ds = ray.data.from_arrow([table.slice(0, len(values) // 2), table.slice(len(values) // 2)])
        assert distributed_medians(ds) == weight_medians(values)
    out, info = distributed_eq5_weights(ds, WeightsConfig(normalize=True))
    assert sorted(r["weight"] for r in out.take_all()) == sorted(eq5_weights(values, normalize=True).tolist())
    assert info["medians"]["positive"] == weight_medians(values)[0]


def test_ray_engine_reports_user_errors(ray_local, inputs, tmp_path):
    from builders import write_l1_scores

    from irgpt.errors import CommandError

    dup = tmp_path / "dup"
    write_l1_scores(dup, inputs["ids"][:3] + inputs["ids"][:1])
    with pytest.raises(CommandError, match="duplicate sample_id 'ir-0000000'") as info:
        build_tiers(inputs["data"], [dup], tmp_path / "out", CurriculumConfig(use_l2=False), engine="ray")
    assert type(info.value) is CommandError and "Traceback" not in str(info.value)
    assert not (tmp_path / "out").exists()
