"""Per-stage freezing: exactly which parameters train in stage 1 and stage 2."""

from __future__ import annotations

import pytest
import torch

from irgpt.config import LoraConfig
from irgpt.errors import CommandError
from irgpt.models.freeze import apply_stage, parameter_counts, trainable_parameter_names, vlm_parts
from irgpt.models.tokenizer import synthetic_corpus, train_tokenizer
from irgpt.models.vlm import build_tiny_vlm


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """2 shared cores: several intra-op threads spin against each other (10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


LLM_PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                   "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(synthetic_corpus(100))


def _fresh(tok, seed=0):
    model, _ = build_tiny_vlm(tok, seed=seed)
    return model


def test_stage1_trains_exactly_vision_and_projector(tok):
    model = apply_stage(_fresh(tok), 1)
    names = [n for n, _ in model.named_parameters()]
    expected = [n for n in names if n.startswith(("model.vision_tower.", "model.multi_modal_projector."))]
    assert trainable_parameter_names(model) == expected
    assert any(n.startswith("model.vision_tower.") for n in expected)
    assert sum(n.startswith("model.multi_modal_projector.") for n in expected) == 4  # 2 linears x (w, b)
    frozen = set(names) - set(expected)
    assert "lm_head.weight" in frozen and "model.language_model.embed_tokens.weight" in frozen
    assert all(n.startswith(("model.language_model.", "lm_head.")) for n in frozen)


def test_stage2_trains_exactly_projector_and_llm_lora(tok):
    base = _fresh(tok)
    n_layers = base.config.text_config.num_hidden_layers
    model = apply_stage(base, 2, LoraConfig(r=4, alpha=8, dropout=0.0))
    prefix = "base_model.model.model."
    projector = [f"{prefix}multi_modal_projector.modules_to_save.default.{lin}.{wb}"
                 for lin in ("linear_1", "linear_2") for wb in ("weight", "bias")]
    lora = [f"{prefix}language_model.layers.{i}.{proj}.{ab}.default.weight"
            for i in range(n_layers) for proj in LLM_PROJECTIONS for ab in ("lora_A", "lora_B")]
    got = trainable_parameter_names(model)
    assert len(got) == len(set(got))
    assert set(got) == set(projector) | set(lora)
    assert not any("vision_tower" in n for n in got)
    # LoRA shapes follow r
    params = dict(model.named_parameters())
    q = f"{prefix}language_model.layers.0.self_attn.q_proj"
    assert params[f"{q}.lora_A.default.weight"].shape == (4, 128)
    assert params[f"{q}.lora_B.default.weight"].shape == (128, 4)


def test_stage2_gradients_land_only_on_trainable_params(tok):
    from test_vlm import _samples  # noqa: PLC0415 (same folder on sys.path)

    from irgpt.models.collator import VLMCollator, model_inputs

    model, spec = build_tiny_vlm(tok, seed=3)
    model = apply_stage(model, 2)
    with torch.no_grad():  # lora_B starts at 0: move it so lora_A gets a gradient too
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    batch = VLMCollator(tok, spec, max_length=128)(_samples())
    model(**model_inputs(batch), labels=batch["labels"]).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == set(trainable_parameter_names(model))


def test_lora_regex_errors(tok):
    with pytest.raises(CommandError, match="matches no module"):
        apply_stage(_fresh(tok), 2, LoraConfig(target_modules=r".*language_model.*\.(wqkv|wo)"))
    with pytest.raises(CommandError, match="outside the LLM"):
        apply_stage(_fresh(tok), 2, LoraConfig(target_modules=r".*\.(q_proj|v_proj)"))
    with pytest.raises(CommandError, match="stage must be 1 or 2"):
        apply_stage(_fresh(tok), 3)


def test_stage1_then_stage2_counts(tok):
    model = apply_stage(_fresh(tok), 1)
    c1 = parameter_counts(model)
    assert c1["trainable"] == c1["vision"] + c1["projector"]
    model2 = apply_stage(model, 2, LoraConfig(r=2))
    c2 = parameter_counts(model2)
    lora = 2 * sum(m.in_features + m.out_features for n, m in model.named_modules()
                   if n.endswith(tuple(LLM_PROJECTIONS)) and "language_model" in n)
    assert c2["trainable"] == c1["projector"] + lora
    assert vlm_parts(model2).projector == "model.multi_modal_projector"


def test_internvl_layout_freezes_the_same_way():
    from test_vlm import _tiny_internvl  # noqa: PLC0415

    tok = train_tokenizer(synthetic_corpus(50))
    model = _tiny_internvl(tok)
    s1 = apply_stage(model, 1)
    assert all(n.startswith(("model.vision_tower.", "model.multi_modal_projector."))
               for n in trainable_parameter_names(s1))
    s2 = apply_stage(model, 2)
    got = trainable_parameter_names(s2)
    assert got and not any("vision_tower" in n for n in got)
    assert all("lora_" in n or "multi_modal_projector.modules_to_save" in n for n in got)
