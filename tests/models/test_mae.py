"""The Lesson 1 feature extractor: tiny ViTMAE, batch-invariant features, provenance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irgpt.errors import CommandError
from irgpt.models import mae


@pytest.fixture(scope="module")
def model():
    return mae.build_tiny_mae(mask_ratio=0.75, seed=0)


def images(n, size=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)


def test_tiny_config_shape(model):
    cfg = model.config
    assert (cfg.image_size, cfg.patch_size, cfg.num_channels, cfg.hidden_size) == (64, 8, 1, 128)
    assert cfg.num_hidden_layers == 4 and cfg.num_attention_heads == 4 and cfg.mask_ratio == 0.75
    assert not model.training


def test_feature_shape_and_dtype(model):
    f = mae.extract_features(model, images(3))
    assert f.shape == (3, 128) and f.dtype == np.float32 and np.isfinite(f).all()


def test_batch_invariance(model):
    big = images(32, seed=1)
    five = big[:5]
    ref = mae.extract_features(model, big)[:5]
    for batch in (1, 2, 5):
        got = np.concatenate([mae.extract_features(model, five[i : i + batch]) for i in range(0, 5, batch)])
        assert np.array_equal(got, ref), f"batch {batch}"


def test_no_randomness_and_state_restored(model):
    x = images(4, seed=2)
    model.train()
    torch.manual_seed(123)
    a = mae.extract_features(model, x)
    torch.manual_seed(456)
    b = mae.extract_features(model, x)
    assert np.array_equal(a, b)
    assert model.training and model.config.mask_ratio == 0.75  # restored after extraction
    model.eval()


def test_identity_noise_keeps_all_patches_in_order(model):
    x = mae.to_pixel_values(images(2, seed=3), 64)
    enc = model.vit
    enc.config.mask_ratio = 0.0
    try:
        with torch.no_grad():
            out = enc(pixel_values=x, noise=mae.identity_noise(2, 64))
            shuffled = enc(pixel_values=x, noise=torch.rand(2, 64)).last_hidden_state[:, 1:].mean(1)
    finally:
        enc.config.mask_ratio = 0.75
    assert out.last_hidden_state.shape == (2, 65, 128)  # CLS + all 64 patches
    assert torch.equal(out.ids_restore, torch.arange(64).expand(2, 64))
    assert out.mask.sum() == 0
    # mean pooling makes the patch order irrelevant (up to float rounding)
    assert torch.allclose(out.last_hidden_state[:, 1:].mean(1), shuffled, atol=1e-5)


def test_resize_to_model_size(model):
    small = images(2, size=40, seed=4)
    f = mae.extract_features(model, small)
    assert f.shape == (2, 128)
    assert np.array_equal(f, mae.extract_features(model, mae.resize_images(small, 64)))
    with pytest.raises(ValueError):
        mae.extract_features(model, small.astype(np.float32))


def test_weights_hash_stable_and_seeded(model):
    h = mae.weights_hash(model)
    assert len(h) == 16 and h == mae.weights_hash(mae.build_tiny_mae(seed=0))
    assert h != mae.weights_hash(mae.build_tiny_mae(seed=1))


def test_save_and_load_roundtrip(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = mae.load_extractor(str(tmp_path))
    assert mae.weights_hash(loaded) == mae.weights_hash(model)
    x = images(3, seed=5)
    assert np.array_equal(mae.extract_features(loaded, x), mae.extract_features(model, x))
    assert mae.weights_hash(mae.load_extractor("tiny")) == mae.weights_hash(model)
    with pytest.raises(CommandError):
        mae.load_extractor(str(tmp_path / "missing"))
