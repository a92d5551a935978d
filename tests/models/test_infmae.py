"""InfMAE (irgpt.models.infmae): the release's parameter names and shapes, safe loading,
batch-invariant features, and scoring with an InfMAE checkpoint file."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from irgpt.errors import CommandError
from irgpt.models.infmae import BASE, TINY, InfMAE, extract_features, load_infmae, save_infmae


def _release_shapes() -> dict[str, tuple]:
    """The state dict of the released `infmae_vit_base_patch16` (models_infmae_skip4.py,
    vision_transformer.py of liufangcen/InfMAE), written out from its module definitions."""
    s = {"patch_embed.proj.weight": (768, 3, 16, 16), "patch_embed.proj.bias": (768,)}
    for i, (cin, cout, p) in enumerate(((3, 256, 4), (256, 384, 2), (384, 768, 2)), start=1):
        s |= {f"patch_embed{i}.proj.weight": (cout, cin, p, p), f"patch_embed{i}.proj.bias": (cout,),
              f"patch_embed{i}.norm.weight": (cout,), f"patch_embed{i}.norm.bias": (cout,)}
    s |= {"patch_embed4.weight": (768, 768), "patch_embed4.bias": (768,),
          "stage1_output_decode.weight": (768, 256, 4, 4), "stage1_output_decode.bias": (768,),
          "stage2_output_decode.weight": (768, 384, 2, 2), "stage2_output_decode.bias": (768,),
          "pos_embed": (1, 196, 768), "norm.weight": (768,), "norm.bias": (768,),
          "decoder_embed.weight": (512, 768), "decoder_embed.bias": (512,), "mask_token": (1, 1, 512),
          "decoder_pos_embed": (1, 196, 512), "decoder_norm.weight": (512,), "decoder_norm.bias": (512,),
          "decoder_pred.weight": (768, 512), "decoder_pred.bias": (768,)}
    for name, n, d in (("blocks1", 2, 256), ("blocks2", 2, 384)):
        for b in range(n):
            k = f"{name}.{b}."
            s |= {k + "norm1.weight": (d,), k + "norm1.bias": (d,), k + "norm2.weight": (d,), k + "norm2.bias": (d,),
                  k + "conv1.weight": (d, d, 1, 1), k + "conv1.bias": (d,), k + "conv2.weight": (d, d, 1, 1),
                  k + "conv2.bias": (d,), k + "attn.weight": (d, 1, 5, 5), k + "attn.bias": (d,),
                  k + "mlp.fc1.weight": (4 * d, d, 1, 1), k + "mlp.fc1.bias": (4 * d,),
                  k + "mlp.fc2.weight": (d, 4 * d, 1, 1), k + "mlp.fc2.bias": (d,)}
    for name, n, d in (("blocks3", 11, 768), ("decoder_blocks", 2, 512)):
        for b in range(n):
            k = f"{name}.{b}."
            s |= {k + "norm1.weight": (d,), k + "norm1.bias": (d,), k + "norm2.weight": (d,), k + "norm2.bias": (d,),
                  k + "attn.qkv.weight": (3 * d, d), k + "attn.qkv.bias": (3 * d,),
                  k + "attn.proj.weight": (d, d), k + "attn.proj.bias": (d,),
                  k + "mlp.fc1.weight": (4 * d, d), k + "mlp.fc1.bias": (4 * d,),
                  k + "mlp.fc2.weight": (d, 4 * d), k + "mlp.fc2.bias": (d,)}
    return s


def test_the_base_model_has_the_releases_names_and_shapes():
    with torch.device("meta"):
        model = InfMAE(BASE)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == _release_shapes()


def test_a_release_layout_checkpoint_loads_strictly_and_features_are_batch_invariant(tmp_path):
    torch.manual_seed(0)
    model = InfMAE(TINY)
    path = tmp_path / "checkpoint-0.pth"
    torch.save({"model": model.state_dict(), "optimizer": None, "epoch": 0, "scaler": None,
                "args": argparse.Namespace(model="infmae_vit_base_patch16", mask_ratio=0.75, num_heads=1,
                                           decoder_num_heads=1, norm_pix_loss=False)}, path)
    loaded = load_infmae(path)
    assert loaded.config.embed_dim == TINY.embed_dim and loaded.config.depth == TINY.depth
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    images = np.random.default_rng(0).integers(0, 256, (7, 40, 40), dtype=np.uint8)
    seven = extract_features(loaded, images)
    one = np.concatenate([extract_features(loaded, images[i : i + 1]) for i in range(7)])
    assert seven.shape == (7, 64) and np.isfinite(seven).all()
    assert np.array_equal(seven, one)  # bit-identical for batch sizes 1 and 7


def test_unsafe_or_mismatched_checkpoints_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"model": {}, "args": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CommandError, match="not a loadable InfMAE checkpoint"):
        load_infmae(tmp_path / "evil.pth")
    state = InfMAE(TINY).state_dict()
    state["blocks3.0.attn.qkv.weight"] = torch.zeros(3, 3)
    del state["norm.weight"]
    state["head.weight"] = torch.zeros(2)
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(CommandError) as err:
        load_infmae(tmp_path / "bad.pth")
    text = str(err.value)
    assert "missing (1): norm.weight" in text and "unexpected (1): head.weight" in text
    assert "mis-shaped (1): blocks3.0.attn.qkv.weight" in text


def test_encoder_only_checkpoints_load_and_report_the_missing_decoder(tmp_path):
    state = {k: v for k, v in InfMAE(TINY).state_dict().items() if not k.startswith(("decoder_", "mask_token"))}
    torch.save(state, tmp_path / "encoder.pt")
    model = load_infmae(tmp_path / "encoder.pt")
    assert "decoder_pred.weight" in model.missing_decoder and "mask_token" in model.missing_decoder


def test_skip4_and_random_masking_train_steps(tmp_path):
    from dataclasses import replace

    torch.manual_seed(0)
    for masking in ("skip4", "random"):
        model = InfMAE(replace(TINY, masking=masking))
        x = torch.randn(2, 3, 64, 64)
        loss, pred, mask = model(x)
        assert pred.shape == (2, 16, 16 * 16 * 3) and mask.shape == (2, 16)
        assert mask.sum(dim=1).tolist() == [12.0, 12.0]  # a quarter kept either way at ratio 0.75
        loss.backward()
        assert torch.isfinite(loss) and model.blocks1[0].conv1.weight.grad is not None
    save_infmae(model, tmp_path / "ours.pth", epoch=3)
    again = load_infmae(tmp_path / "ours.pth", need_decoder=True)
    assert again.config.masking == "skip4"  # the release's layout; our config travels in `args`


def test_score_ir_vis_with_an_infmae_checkpoint(tmp_path, ray_local):
    from irgpt.config import SynthConfig, load_config
    from irgpt.data.io import read_table
    from irgpt.data.synth import synthesize
    from irgpt.scoring.ir_vis import score_ir_vis

    torch.manual_seed(0)
    save_infmae(InfMAE(TINY), tmp_path / "infmae.pth")
    synthesize(SynthConfig(num_samples=30, seed=5, num_workers=1), tmp_path / "S", progress=False)
    cfg = load_config(None, ["scoring.lesson1.pool.concurrency=1", "scoring.lesson1.pool.num_cpus=0.5"])
    manifest = score_ir_vis(cfg, tmp_path / "S", tmp_path / "E", extractor=str(tmp_path / "infmae.pth"))
    scores = read_table(tmp_path / "E", ["sample_id", "d_ir_vis"])
    assert scores.num_rows == manifest["num_rows"] > 0 and manifest["untrained"] is False
    assert np.isfinite(scores.column("d_ir_vis").to_numpy()).all()
