"""`irgpt score ir-text` end to end on a small synthetic set (Lesson 2 as wired, #14).

Checks what the scorer promises from its output columns alone: one row per
infrared caption pair (or a reject), Eq. 4 and Eq. 5 recomputed independently,
rank_l2 in loss order, and a CLIP warm-up reused only for the same settings and data.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest

from irgpt.config import load_config
from irgpt.data.io import read_rejects, read_table
from irgpt.data.schema import INFRARED_BANDS
from irgpt.data.synth import synthesize

SETTINGS = [
    "data.synth.num_samples=40", "data.synth.seed=3", "data.synth.num_workers=1",
    "scoring.lesson2.pool_size=15", "scoring.lesson2.warmup.epochs=1", "scoring.lesson2.warmup.batch_size=16",
    "scoring.lesson2.pool.concurrency=1", "scoring.lesson2.pool.part_rows=64",
]


def _eq5(alpha: np.ndarray) -> np.ndarray:
    """Eq. 5 written out again (no code shared with the scorer)."""
    pos, nonpos = alpha[alpha > 0], -alpha[alpha <= 0]
    med_pos = float(np.median(pos)) if pos.size else 1.0
    med_neg = float(np.median(nonpos)) if nonpos.size else 1.0
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    with np.errstate(divide="ignore"):
        return np.where(alpha > 0, 1.0 - sig(alpha / med_pos), 1.0 + sig(-alpha / (med_neg or np.inf)))


def score_cli(root) -> int:
    """`irgpt score ir-text` in process: the CLIP warm-up into l2/warmup, then the passes."""
    from irgpt.cli import main

    sets = [a for kv in SETTINGS for a in ("--set", kv)]
    return main(["score", "ir-text", "--data", str(root / "data"), "--out", str(root / "l2"), *sets])


@pytest.fixture(scope="module")
def scored(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("ir_text")
    cfg = load_config(overrides=SETTINGS)
    synthesize(cfg.data.synth, root / "data", progress=False)
    log = io.StringIO()
    with contextlib.redirect_stderr(log), contextlib.redirect_stdout(io.StringIO()):
        assert score_cli(root) == 0
    manifest = json.loads((root / "l2" / "manifest.json").read_text())
    return {"root": root, "cfg": cfg, "manifest": manifest, "log": log.getvalue()}


def test_one_row_per_infrared_caption_pair(scored):
    """Every split is scored (the tiering picks the split); visible rows are not."""
    root = scored["root"]
    data = read_table(root / "data", ["sample_id", "band", "task", "split"]).to_pandas()
    wanted = data[data.band.isin(INFRARED_BANDS) & (data.task == "caption")].sample_id
    scores = read_table(root / "l2").to_pandas()
    rejected = [r["sample_id"] for r in read_rejects(root / "l2").to_pylist()]
    assert len(wanted) > 20
    assert sorted(scores.sample_id.tolist() + rejected) == sorted(wanted.tolist())
    assert scores.sample_id.is_unique and scored["manifest"]["num_rows"] == len(scores)
    assert scored["manifest"]["untrained"] is True  # scoring.lesson2.pretrained: null
    assert "WARNING: the Lesson 2 CLIP (before its warm-up) is random-init and untrained" in scored["log"]


def test_eq4_eq5_and_rank_recomputed_from_the_columns(scored):
    s = read_table(scored["root"] / "l2").to_pandas().sort_values("sample_id")
    before, after = s.loss_before.to_numpy(np.float64), s.loss_after.to_numpy(np.float64)
    assert (before > 0).all() and np.isfinite(after).all()
    alpha = (after - before) / before  # Eq. 4
    np.testing.assert_allclose(s.alpha.to_numpy(np.float64), alpha, rtol=1e-5, atol=1e-6)
    assert (alpha > 0).any() and (alpha <= 0).any(), "a set where Eq. 5 uses both branches"
    weight = _eq5(s.alpha.to_numpy(np.float64))
    np.testing.assert_allclose(s.weight.to_numpy(np.float64), weight, rtol=1e-5)
    assert ((s.weight > 0) & (s.weight < 0.5)).eq(s.alpha > 0).all()
    assert ((s.weight >= 1.5) & (s.weight <= 2.0)).eq(s.alpha <= 0).all()
    order = np.argsort(s[scored["cfg"].scoring.lesson2.rank_by].to_numpy(), kind="stable")
    ranks = s.rank_l2.to_numpy()[order]
    assert ranks[0] == 0.0 and ranks[-1] == 1.0 and (np.diff(ranks) > 0).all()


@pytest.mark.slow
def test_warmup_is_reused_only_for_the_same_settings_and_data(scored, capsys):
    root = scored["root"]
    report = json.loads((root / "l2" / "warmup" / "clip_warmup.json").read_text())
    assert score_cli(root) == 0
    out = capsys.readouterr()
    assert "warm-up already done" in out.out + out.err
    after = json.loads((root / "l2" / "warmup" / "clip_warmup.json").read_text())
    assert after["created_unix"] == report["created_unix"]

    synthesize(load_config(overrides=SETTINGS).data.synth, root / "data", progress=False, overwrite=True)
    for scratch in ("_before", "_after"):  # the passes refuse new data without --force; the warm-up is kept
        shutil.rmtree(root / "l2" / scratch)
    assert score_cli(root) == 0
    out = capsys.readouterr()
    assert "made from other settings or data: redone" in out.out + out.err
    redone = json.loads((root / "l2" / "warmup" / "clip_warmup.json").read_text())
    assert redone["data_manifest_hash"] != report["data_manifest_hash"]
