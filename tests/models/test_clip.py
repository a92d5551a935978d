"""The Lesson 2 CLIP builder: tiny config, preprocessing, tokens, provenance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irgpt.errors import CommandError
from irgpt.models.clip import (
    TINY_CLIP,
    ClipPreprocess,
    create_clip,
    empty_caption_mask,
    image_size,
    load_clip,
    save_clip,
    tokenize_with_truncation,
    weights_hash,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    return create_clip(TINY_CLIP, pretrained=None, seed=0)


def test_tiny_config_builds_with_the_documented_size(tiny):
    model, preprocess, tokenizer = tiny
    n = sum(p.numel() for p in model.parameters())
    assert 3_000_000 <= n <= 4_000_000
    assert image_size(model) == 64 and model.context_length == 77
    assert not model.training
    x = preprocess(np.zeros((2, 64, 64), dtype=np.uint8))
    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32
    tokens = tokenizer(["a hot car"])
    img = model.encode_image(x, normalize=True)
    txt = model.encode_text(tokens, normalize=True)
    assert img.shape == (2, 64) and txt.shape == (1, 64)


def test_seed_fixes_the_random_init():
    a, _, _ = create_clip(TINY_CLIP, None, seed=3)
    b, _, _ = create_clip(TINY_CLIP, None, seed=3)
    c, _, _ = create_clip(TINY_CLIP, None, seed=4)
    assert weights_hash(a) == weights_hash(b) != weights_hash(c)
    assert len(weights_hash(a)) == 16


def test_preprocess_grey_replicates_resizes_and_normalises():
    pre = ClipPreprocess(64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    grey = np.full((1, 32, 48), 255, dtype=np.uint8)
    x = pre(grey)
    assert x.shape == (1, 3, 64, 64)
    assert torch.allclose(x, torch.full_like(x, 2.0))
    rgb = np.zeros((1, 64, 64, 3), dtype=np.uint8)
    assert torch.allclose(pre(rgb), torch.full((1, 3, 64, 64), -2.0))
    with pytest.raises(TypeError):
        pre(np.zeros((1, 64, 64), dtype=np.float32))


def test_tokenize_counts_truncations(tiny):
    _, _, tokenizer = tiny
    short = "a thermal image of a person"
    long = " ".join(["warm car on the road"] * 30)
    tokens, truncated = tokenize_with_truncation(tokenizer, [short, long, short], 77)
    assert tokens.shape == (3, 77) and tokens.dtype == torch.int64
    assert truncated.tolist() == [False, True, False]
    assert int(tokens[1, -1]) == tokenizer.eot_token_id  # truncated keeps an end token
    # exactly at the limit: start + 75 word tokens + end = 77 is not truncated
    exact = " ".join(["car"] * 75)
    _, t = tokenize_with_truncation(tokenizer, [exact, exact + " car"], 77)
    assert t.tolist() == [False, True]


def test_empty_captions_are_an_error(tiny):
    _, _, tokenizer = tiny
    assert empty_caption_mask(["x", "", "  \n"]).tolist() == [False, True, True]
    with pytest.raises(ValueError, match=r"indices \[1\]"):
        tokenize_with_truncation(tokenizer, ["ok", " "], 77)


def test_save_load_round_trip_keeps_the_hash(tiny, tmp_path):
    model, _, _ = tiny
    path = tmp_path / "clip.pt"
    save_clip(model, path)
    loaded, _, _ = load_clip(TINY_CLIP, path)
    assert weights_hash(loaded) == weights_hash(model)


def test_local_pretrained_file_loads_and_missing_file_is_a_clear_error(tiny, tmp_path):
    model, _, _ = tiny
    path = tmp_path / "ckpt.pt"
    save_clip(model, path)
    again, _, _ = create_clip(TINY_CLIP, pretrained=str(path), seed=99)
    assert weights_hash(again) == weights_hash(model)
    with pytest.raises(CommandError, match="not found"):
        create_clip(TINY_CLIP, pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(CommandError, match="not found"):
        create_clip("ViT-B-32", pretrained="openai")  # a download tag is never fetched
    with pytest.raises(CommandError, match="neither an open_clip architecture nor a Hugging Face CLIP directory"):
        create_clip("no-such-model")
