"""Typed stage contracts (irgpt.data.contracts): checked when written and when read."""

from __future__ import annotations

import json

import pytest

from irgpt.data import contracts
from irgpt.data.io import base_manifest, write_manifest
from irgpt.errors import CommandError


def test_a_dataset_manifest_round_trips_with_its_typed_fields(tmp_path):
    write_manifest(tmp_path, base_manifest("dataset", num_rows=12, image_size=64, source="synthetic"))
    m = contracts.read(contracts.DatasetManifest, tmp_path)
    assert m.num_rows == 12 and m.image_size == 64 and m.source == "synthetic" and m.raw["kind"] == "dataset"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"num_rows": "12"}, r"field 'num_rows' must be int, got '12'"),
        ({}, r"field 'num_rows' is missing"),
        ({"num_rows": True}, r"field 'num_rows' must be int, got True"),
        ({"num_rows": 3, "image_size": 6.5}, r"field 'image_size' must be int \| None, got 6.5"),
    ],
)
def test_a_malformed_manifest_is_refused_on_write_naming_file_and_field(tmp_path, fields, message):
    with pytest.raises(CommandError, match=message) as err:
        write_manifest(tmp_path, base_manifest("dataset", **fields))
    assert str(tmp_path / "manifest.json") in str(err.value)
    assert not (tmp_path / "manifest.json").exists()


def test_reading_checks_the_kind_the_fields_and_the_json(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "scores", "lesson": "l3", "num_rows": 1, "rejected": 0}))
    with pytest.raises(CommandError, match=r"field 'lesson' must be .*got 'l3'"):
        contracts.read(contracts.ScoresManifest, tmp_path)
    with pytest.raises(CommandError, match=r"field 'kind' is 'scores', expected 'tiers'"):
        contracts.read(contracts.TiersManifest, tmp_path)
    (tmp_path / "manifest.json").write_text('{"kind": "tiers",')
    with pytest.raises(CommandError, match=r"manifest.json: not valid JSON at line 1"):
        contracts.read(contracts.TiersManifest, tmp_path)
    with pytest.raises(CommandError, match=r"not a tiers directory \(no manifest.json\)"):
        contracts.read(contracts.TiersManifest, tmp_path / "nowhere")


def test_every_writer_in_a_pipeline_run_meets_its_contract(tmp_path):
    """Synth and the tiers as the stages write them, and score manifests as the test builders
    write them (the scorers' own manifests pass `write_manifest`'s check in the scoring tests)."""
    from builders import write_l1_scores, write_l2_scores, write_samples

    from irgpt.config.sections import CurriculumConfig, SynthConfig
    from irgpt.curriculum.tiers import build_tiers
    from irgpt.data.synth import synthesize

    synthesize(SynthConfig(num_samples=3, num_workers=1), tmp_path / "synth", progress=False)
    assert contracts.read(contracts.DatasetManifest, tmp_path / "synth").image_size == 64
    ids = write_samples(tmp_path / "data", 20)
    write_l1_scores(tmp_path / "l1", ids)
    write_l2_scores(tmp_path / "l2", ids)
    build_tiers(tmp_path / "data", [tmp_path / "l1", tmp_path / "l2"], tmp_path / "tiers", CurriculumConfig(m=2),
                engine="local")
    tiers = contracts.read(contracts.TiersManifest, tmp_path / "tiers")
    assert tiers.num_tiers == 2 and sum(tiers.tier_sizes) == tiers.num_rows == 20
    assert tiers.curriculum["m"] == 2


def test_model_spec_and_eval_metrics_are_checked(tmp_path):
    from irgpt.models.vlm import SPEC_FILE, VLMInputSpec

    (tmp_path / SPEC_FILE).write_text(json.dumps({"family": "llava", "num_image_tokens": 4, "image_token": "<image>"}))
    with pytest.raises(CommandError, match=rf"{SPEC_FILE}: field 'image_size' is missing"):
        VLMInputSpec.load(tmp_path)
    from irgpt.eval.outputs import write_outputs

    with pytest.raises(CommandError, match=r"metrics.json \(being written\): field 'psum' must be float \| None"):
        write_outputs(tmp_path, [], {}, {"psum": "high", "nsum": None, "tasks": {}})
    assert not (tmp_path / "metrics.json").exists()
