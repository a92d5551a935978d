"""`irgpt data synth`: schema, determinism, ground truth, graded bands, manifest."""

import argparse
import functools
import io
import json
import re
from collections import Counter, defaultdict

import numpy as np
import pytest
from PIL import Image

from irgpt.config import config_hash
from irgpt.config.sections import SynthConfig
from irgpt.data import synth_cli
from irgpt.data.io import composition, read_manifest, read_rejects, read_table
from irgpt.data.scene import COUNTING_TASKS, SCENE_NAMES, make_scene
from irgpt.data.schema import (
    BENCHMARK_TASKS,
    GT_BAND_RANK,
    INFRARED_BANDS,
    SPLITS,
    SYNTH_SCHEMA,
    answer_text,
    human_text,
)
from irgpt.data.synth import scene_caption, synthesize
from irgpt.errors import CommandError

N = 120
CFG = SynthConfig(num_samples=N, seed=3, num_workers=1, shard_scenes=50)
ID = re.compile(r"^synth-s3-(\d{6})-(vis|vis_gray|nir|swir|mwir|lwir)-([a-z_]+)$")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    manifest = synthesize(CFG, out, progress=False)
    return out, manifest, read_table(out).to_pylist()


@functools.cache
def _scene(index):
    return make_scene(CFG.seed, index, CFG.image_size)


def _decode(row):
    return Image.open(io.BytesIO(row["image"]))


def test_schema_is_synth_schema_and_ids_are_unique(data):
    out, _, rows = data
    assert read_table(out).schema.equals(SYNTH_SCHEMA)
    ids = [r["sample_id"] for r in rows]
    assert len(ids) == len(set(ids))
    for r in rows:
        m = ID.match(r["sample_id"])
        assert m, r["sample_id"]
        assert (m.group(2), m.group(3)) == (r["band"], r["task"])
        assert r["scene_id"] == f"synth-s3-{m.group(1)}"
        assert r["source"] == "synthetic" and r["rule"]
        assert r["gt_band_rank"] == GT_BAND_RANK.get(r["band"])


def test_every_band_present_and_images_decode_at_size(data):
    _, _, rows = data
    captions = Counter(r["band"] for r in rows if r["task"] == "caption")
    assert captions == {b: N for b in CFG.bands}
    for r in rows:
        img = _decode(r)
        assert img.size == (CFG.image_size, CFG.image_size) == (r["width"], r["height"])
        assert img.mode == ("RGB" if r["band"] == "vis" else "L"), r["sample_id"]
        assert img.format == "PNG"


def test_rows_per_scene_and_task_applicability(data):
    _, _, rows = data
    per = defaultdict(list)
    for r in rows:
        if r["task"] != "caption":
            per[(r["scene_id"], r["band"])].append(r["task"])
    assert not [k for k in per if k[1] not in INFRARED_BANDS]  # instruction rows: infrared only
    for (scene_id, _band), tasks in per.items():
        assert 1 <= len(tasks) <= 2 and len(set(tasks)) == len(tasks)
        kind = _scene(int(scene_id[-6:])).kind
        counting = COUNTING_TASKS.get(kind)
        assert set(tasks) <= set(BENCHMARK_TASKS)
        if counting:
            assert counting in tasks
        assert not ({"aerial_counting", "pedestrian_counting"} - {counting}) & set(tasks)
    assert {t for ts in per.values() for t in ts} == set(BENCHMARK_TASKS)


def test_graded_band_departure_from_visible(data):
    """Pixel correlation with vis_gray falls nir > swir > mwir, lwir (Lesson 1 ground truth)."""
    _, _, rows = data
    by_scene = defaultdict(dict)
    for r in rows:
        if r["task"] == "caption":
            by_scene[r["scene_id"]][r["band"]] = np.asarray(_decode(r), dtype=np.float64).ravel()
    corr = defaultdict(list)
    for imgs in by_scene.values():
        g = imgs["vis_gray"]
        for band in ("nir", "swir", "mwir", "lwir"):
            if g.std() > 0 and imgs[band].std() > 0:
                corr[band].append(np.corrcoef(g, imgs[band])[0, 1])
    mean = {b: float(np.mean(v)) for b, v in corr.items()}
    assert mean["nir"] > mean["swir"] + 0.1 > mean["mwir"] + 0.2
    assert mean["swir"] > mean["lwir"] + 0.3
    assert mean["nir"] > 0.6


def test_vis_gray_is_the_luma_of_vis(data):
    _, _, rows = data
    vis = {r["scene_id"]: r for r in rows if r["band"] == "vis"}
    for r in [r for r in rows if r["band"] == "vis_gray"][:10]:
        rgb = np.asarray(_decode(vis[r["scene_id"]]), dtype=np.float64)
        luma = rgb @ [0.299, 0.587, 0.114]
        assert np.abs(luma - np.asarray(_decode(r), dtype=np.float64)).max() <= 2.0


def test_misaligned_captions(data):
    _, _, rows = data
    ir_caps = [r for r in rows if r["task"] == "caption" and r["band"] in INFRARED_BANDS]
    mis = [r for r in ir_caps if r["gt_misaligned"]]
    assert abs(len(mis) / len(ir_caps) - CFG.misaligned_fraction) < 0.07
    assert not [r for r in rows if r["gt_misaligned"] and (r["task"] != "caption" or r["band"] not in INFRARED_BANDS)]
    for r in ir_caps:
        index = int(r["scene_id"][-6:])
        own = scene_caption(CFG, index, r["band"], _scene(index)).answer
        text = answer_text(r["conversations"])
        assert len(text.split()) < 60
        if r["gt_misaligned"]:
            assert text != own
            # the donor is a scene of another kind: the caption names a different scene
            assert _scene(index).name not in text
            assert any(name in text for name in SCENE_NAMES.values())
        else:
            assert text == own


def test_splits_and_paired_ids(data):
    _, _, rows = data
    by_id = {r["sample_id"]: r for r in rows}
    splits = defaultdict(set)
    paired = []
    for r in rows:
        assert r["split"] in SPLITS
        splits[r["scene_id"]].add(r["split"])
        if r["paired_vis_id"] is not None:
            assert r["band"] in INFRARED_BANDS
            ref = by_id[r["paired_vis_id"]]
            assert ref["band"] == "vis" and ref["task"] == "caption" and ref["scene_id"] == r["scene_id"]
        if r["band"] in INFRARED_BANDS and r["task"] != "reid":
            paired.append(r["paired_vis_id"] is not None)
    assert all(len(s) == 1 for s in splits.values())
    counts = Counter(s.pop() for s in splits.values())
    assert set(counts) == set(SPLITS)
    assert abs(counts["benchmark"] / N - CFG.benchmark_fraction) < 0.12
    assert abs(np.mean(paired) - CFG.paired_vis_fraction) < 0.08


def test_manifest_matches_table(data):
    out, manifest, rows = data
    table = read_table(out)
    assert manifest == read_manifest(out)
    assert manifest["kind"] == "dataset" and manifest["num_rows"] == table.num_rows == len(rows)
    assert manifest["num_scenes"] == N and manifest["seed"] == CFG.seed
    assert manifest["composition"] == json.loads(json.dumps(composition(table)))
    assert manifest["num_misaligned"] == sum(r["gt_misaligned"] for r in rows)
    assert manifest["config"] == CFG.__dict__ | {"bands": list(CFG.bands)}
    assert manifest["config_hash"] == config_hash(CFG)
    assert read_rejects(out).num_rows == 0 and (out / "_rejects" / "rejects.parquet").is_file()


def test_questions_and_conversations(data):
    _, _, rows = data
    for r in rows:
        conv = r["conversations"]
        assert [t["from"] for t in conv] == ["human", "gpt"]
        assert conv[0]["value"].startswith("<image>\n") and human_text(conv)
    reid = [r for r in rows if r["task"] == "reid"]
    assert reid and all(r["conversations"][1]["value"] in list("2345678") for r in reid)


def test_determinism_across_worker_counts(tmp_path):
    cfg = SynthConfig(num_samples=12, seed=5, shard_scenes=4, num_workers=1)
    one = synthesize(cfg, tmp_path / "w1", progress=False)
    two = synthesize(SynthConfig(**{**cfg.__dict__, "num_workers": 2}), tmp_path / "w2", progress=False)
    a, b = read_table(tmp_path / "w1"), read_table(tmp_path / "w2")
    assert a.equals(b)  # same ids, image bytes, conversations, ground truth
    assert one["composition"] == two["composition"] and one["config_hash"] != two["config_hash"]


def test_an_existing_dataset_is_replaced_only_with_overwrite(tmp_path):
    out = tmp_path / "D"
    synthesize(SynthConfig(num_samples=6, shard_scenes=2, num_workers=1), out, progress=False)
    with pytest.raises(CommandError, match=r"already holds a dataset; pass --overwrite to replace it"):
        synthesize(SynthConfig(num_samples=3, shard_scenes=2, num_workers=1), out, progress=False)
    assert len({r["scene_id"] for r in read_table(out).to_pylist()}) == 6  # untouched
    synthesize(SynthConfig(num_samples=3, shard_scenes=2, num_workers=1), out, progress=False, overwrite=True)
    assert sorted(p.name for p in out.glob("part-*.parquet")) == ["part-00000.parquet", "part-00001.parquet"]
    assert len({r["scene_id"] for r in read_table(out).to_pylist()}) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["D"]  # no staging directory left behind
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(CommandError, match="does not hold a dataset"):
        synthesize(SynthConfig(num_samples=3, num_workers=1), other, progress=False, overwrite=True)
    assert (other / "todo.txt").read_text() == "mine"


def test_kill_9_during_an_overwrite_leaves_the_old_dataset_whole(tmp_path):
    """`kill -9` of `irgpt data synth --overwrite` mid-write: D still holds the old dataset,
    its manifest matching its rows; the rerun cleans the staging directory up."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "D"
    synthesize(SynthConfig(num_samples=6, shard_scenes=2, num_workers=1), out, progress=False)
    cmd = [sys.executable, "-m", "irgpt", "data", "synth", "--out", str(out), "--overwrite", "--quiet",
           "--num-samples", "2000", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob(".D.incoming-*/part-*.parquet")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_scenes"] == 6 and manifest["num_rows"] == read_table(out).num_rows
    assert list(tmp_path.glob(".D.incoming-*"))  # the killed run's staging directory
    synthesize(SynthConfig(num_samples=3, num_workers=1), out, progress=False, overwrite=True)
    assert not list(tmp_path.glob(".D.incoming-*")) and read_table(out).num_rows == \
        json.loads((out / "manifest.json").read_text())["num_rows"]


def _cli(argv):
    parser = argparse.ArgumentParser()
    synth_cli.add_arguments(parser)
    return synth_cli.run(parser.parse_args(argv))


def test_cli_flags_override_config(tmp_path, capsys):
    rc = _cli(["--out", str(tmp_path), "--num-samples", "4", "--seed", "9", "--workers", "1",
               "--image-size", "32", "--set", "data.synth.bands=[vis,lwir]", "--quiet"])
    assert rc == 0
    manifest = read_manifest(tmp_path)
    assert manifest["seed"] == 9 and manifest["image_size"] == 32 and manifest["bands"] == ["vis", "lwir"]
    out = capsys.readouterr().out
    assert "rows per band" in out and "lwir" in out and "rows per task" in out
    with pytest.raises(CommandError):
        _cli(["--out", str(tmp_path), "--num-samples", "0"])
    with pytest.raises(CommandError):
        _cli(["--out", str(tmp_path), "--set", "data.synth.bands=[vis,unknown]"])
