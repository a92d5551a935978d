"""A Hugging Face CLIP directory as the Lesson 2 model (irgpt.models.hf_clip)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from families import make_hf_clip_dir

from irgpt.models.clip import create_clip, load_clip, save_clip, tokenize_with_truncation
from irgpt.models.weights import weights_hash


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return make_hf_clip_dir(tmp_path_factory.mktemp("hf_clip") / "clip")


def test_a_hugging_face_directory_runs_behind_open_clips_interface(hf_dir, tmp_path):
    model, preprocess, tokenizer = create_clip(str(hf_dir))
    assert json.loads((hf_dir / "config.json").read_text())["model_type"] == "clip"
    images = preprocess(np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8))
    assert images.shape == (3, 3, 32, 32)
    tokens, truncated = tokenize_with_truncation(tokenizer, ["a thermal image of a car", "people on the road",
                                                              " ".join(["car"] * 100)], 77)
    assert tokens.shape == (3, 77) and truncated.tolist() == [False, False, True]
    img, txt, scale = model(images, tokens)
    assert img.shape == txt.shape == (3, 16) and torch.allclose(img.norm(dim=-1), torch.ones(3))
    # the same as transformers' own CLIPModel logits
    out = model.model(input_ids=tokens, attention_mask=(tokens != 0).long(), pixel_values=images)
    assert torch.allclose(scale * img @ txt.T, out.logits_per_image, atol=1e-5)
    save_clip(model, tmp_path / "warm.pt")
    again, _, _ = load_clip(str(hf_dir), tmp_path / "warm.pt")
    assert weights_hash(again) == weights_hash(model)


def test_a_pretrained_file_beside_a_directory_is_refused(hf_dir):
    from irgpt.errors import CommandError

    with pytest.raises(CommandError, match="pretrained must be null"):
        create_clip(str(hf_dir), pretrained=str(hf_dir / "config.json"))
    with pytest.raises(CommandError, match="neither an open_clip architecture nor a Hugging Face CLIP directory"):
        create_clip(str(hf_dir.parent))


@pytest.mark.slow
def test_score_ir_text_with_a_hugging_face_clip(hf_dir, tmp_path, ray_local):
    """`irgpt score ir-text --set scoring.lesson2.model=HF_DIR`: warm-up and both passes."""
    from irgpt.cli import main
    from irgpt.config import load_config
    from irgpt.data.synth import synthesize

    sets = [f"scoring.lesson2.model={hf_dir}", "scoring.lesson2.pool_size=15", "scoring.lesson2.warmup.epochs=1",
            "scoring.lesson2.warmup.batch_size=16", "scoring.lesson2.pool.concurrency=1"]
    synthesize(load_config(overrides=["data.synth.num_samples=30", "data.synth.num_workers=1"]).data.synth,
               tmp_path / "data", progress=False)
    argv = ["score", "ir-text", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "l2")]
    assert main(argv + [a for kv in sets for a in ("--set", kv)]) == 0
    manifest = json.loads((tmp_path / "l2" / "manifest.json").read_text())
    assert manifest["num_rows"] > 0 and manifest["untrained"] is False
    warm = json.loads((tmp_path / "l2" / "warmup" / "clip_warmup.json").read_text())
    assert warm["weights_hash_after"] != warm["weights_hash_before"]
