"""`irgpt fe-train` end to end on Ray Train (CPU, gloo): tiny data, 1 and 2 workers."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from irgpt.config import load_config
from irgpt.data.images import encode_png
from irgpt.data.io import shard_name, write_table

BANDS = ("vis", "vis_gray", "nir", "swir", "mwir", "lwir")


def make_dataset(root, n_scenes=16, size=48):
    """n_scenes x 6 bands caption rows (+ one instruction row per scene), two shards."""
    rng = np.random.default_rng(0)
    rows = []
    for s in range(n_scenes):
        base = rng.integers(0, 256, (size, size)).astype(np.float64)
        split = "val" if s % 8 == 7 else "train"
        for k, band in enumerate(BANDS):
            img = np.clip(base * (1.0 - 0.15 * k) + 20 * k, 0, 255).astype(np.uint8)
            rows.append({"sample_id": f"s{s:03d}-{band}-caption", "image": encode_png(Image.fromarray(img)),
                         "band": band, "task": "caption", "split": split})
        rows.append({"sample_id": f"s{s:03d}-nir-scene", "image": rows[-4]["image"], "band": "nir",
                     "task": "scene", "split": split})
    table = pa.Table.from_pylist(rows)
    half = table.num_rows // 2
    write_table(root / shard_name(0), table.slice(0, half))
    write_table(root / shard_name(1), table.slice(half))
    return sum(1 for r in rows if r["split"] == "train" and r["task"] == "caption" and r["band"] != "vis")


def test_select_rows_filters(tmp_path):
    from irgpt.train.mae_job import training_image_ids

    expected = make_dataset(tmp_path)
    ids = training_image_ids(tmp_path)
    assert len(ids) == expected == 14 * 5 and ids == sorted(ids)
    assert not any(i.endswith("-vis-caption") or "scene" in i for i in ids)


@pytest.mark.slow
def test_fe_train_one_worker_cli(tmp_path, ray_local):
    from irgpt.models.mae import extract_features, load_extractor, weights_hash
    from irgpt.train import fe_train_cli

    data, out = tmp_path / "data", tmp_path / "fe"
    expected = make_dataset(data)
    parser = argparse.ArgumentParser()
    fe_train_cli.add_arguments(parser)
    args = parser.parse_args(["--data", str(data), "--out", str(out), "--epochs", "1", "--num-workers", "1",
                              "--set", "scoring.lesson1.fe_train.batch_size=16"])
    assert fe_train_cli.run(args) == 0
    report = json.loads((out / "fe_train.json").read_text())
    assert report["epochs"] == 1 and len(report["losses"]) == 1 and report["images"] == expected
    assert all(math.isfinite(x) and x > 0 for x in report["losses"])
    assert report["samples_per_s"] > 0 and report["seed"] == 0
    model = load_extractor(str(out))
    assert weights_hash(model) == report["weights_hash"]
    assert weights_hash(model) != weights_hash(load_extractor("tiny"))  # it trained
    feats = extract_features(model, np.zeros((2, 48, 48), np.uint8))
    assert feats.shape == (2, 128) and np.isfinite(feats).all()


@pytest.mark.slow
def test_fe_train_two_workers(tmp_path, ray_local):
    from irgpt.models.mae import load_extractor
    from irgpt.train.mae_job import fe_train

    data, out = tmp_path / "data", tmp_path / "fe"
    expected = make_dataset(data)
    cfg = load_config(None, ["scoring.lesson1.fe_train.batch_size=16"])
    report = fe_train(cfg, data, out, epochs=3, num_workers=2)
    assert report["num_workers"] == 2 and report["history"][0]["samples"] == (expected // 2) * 2
    assert len(report["losses"]) == 3 and all(math.isfinite(x) for x in report["losses"])
    assert report["losses"][-1] < report["losses"][0]
    load_extractor(str(out))


@pytest.mark.slow
def test_a_killed_worker_is_survived_with_the_same_losses(tmp_path, ray_local):
    """2 workers, 3 epochs of 5 steps; the last rank dies after step 7 (mid epoch 2): the
    group restarts from the epoch-1 checkpoint and ends with the uninterrupted run's losses."""
    from irgpt.train.mae_job import fe_train

    data = tmp_path / "data"
    make_dataset(data)
    cfg = load_config(None, ["scoring.lesson1.fe_train.batch_size=16", "scoring.lesson1.fe_train.max_failures=1"])
    reference = fe_train(cfg, data, tmp_path / "ref", epochs=3, num_workers=2)
    assert reference["history"][0]["samples"] == 70 and len(reference["losses"]) == 3
    killed = fe_train(cfg, data, tmp_path / "killed", epochs=3, num_workers=2, fail_at_step=7)
    assert (tmp_path / "killed" / "fail_marker").read_text().startswith("killed rank 1 after step 7")
    np.testing.assert_allclose(killed["losses"], reference["losses"], rtol=1e-6)
    assert killed["weights_hash"] == reference["weights_hash"]
    # the same settings and --out again: the finished run is restored, not retrained
    again = fe_train(cfg, data, tmp_path / "killed", epochs=3, num_workers=2)
    assert again["losses"] == killed["losses"] and again["weights_hash"] == killed["weights_hash"]


@pytest.mark.slow
def test_infmae_retrains_resumes_and_saves_the_release_layout(tmp_path, ray_local):
    """A tiny InfMAE (the release's topology) with skip4 masking on 2 workers, the last
    rank killed mid-run: the same losses as uninterrupted; the result is the release's
    checkpoint layout, loads strictly, scores, and re-trains from that file (random masking)."""
    import torch

    from irgpt.models.infmae import INFMAE_FILE, InfMAE, load_infmae
    from irgpt.models.mae import extract_features, load_extractor, weights_hash
    from irgpt.train.mae_job import fe_train

    data = tmp_path / "data"
    make_dataset(data)
    sets = ["scoring.lesson1.fe_train.batch_size=16", "scoring.lesson1.fe_train.max_failures=1",
            "scoring.lesson1.extractor_kind=infmae"]
    cfg = load_config(None, sets)
    reference = fe_train(cfg, data, tmp_path / "ref", epochs=3, num_workers=2)
    assert reference["extractor_kind"] == "infmae" and reference["masking"] == "skip4"
    assert reference["losses"][-1] < reference["losses"][0]
    killed = fe_train(cfg, data, tmp_path / "killed", epochs=3, num_workers=2, fail_at_step=7)
    assert (tmp_path / "killed" / "fail_marker").is_file()
    np.testing.assert_allclose(killed["losses"], reference["losses"], rtol=1e-6)
    assert killed["weights_hash"] == reference["weights_hash"]

    file = tmp_path / "ref" / INFMAE_FILE
    ckpt = torch.load(file, map_location="cpu", weights_only=False)
    assert set(ckpt) == {"model", "optimizer", "epoch", "args"} and isinstance(ckpt["args"], argparse.Namespace)
    assert ckpt["epoch"] == 2 and "state" in ckpt["optimizer"]
    model = load_infmae(file, need_decoder=True)  # strict, decoder included
    assert weights_hash(model) == reference["weights_hash"]
    assert isinstance(load_extractor(str(tmp_path / "ref")), InfMAE)
    feats = extract_features(model, np.zeros((3, 48, 48), np.uint8))
    assert feats.shape == (3, 64) and np.isfinite(feats).all()

    again = load_config(None, sets + [f"scoring.lesson1.extractor={file}", "scoring.lesson1.fe_train.masking=random"])
    cont = fe_train(again, data, tmp_path / "cont", epochs=1, num_workers=1)
    assert cont["weights_hash_before"] == reference["weights_hash"] and cont["masking"] == "random"
    assert cont["weights_hash"] != reference["weights_hash"]
    with pytest.raises(Exception, match="extractor_kind is vitmae, but it holds an InfMAE checkpoint"):
        load_extractor(str(file), kind="vitmae")
