"""The tiny tokenizer and VLM: single-token specials, forward/backward, save/load, InternVL spec."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from irgpt.errors import CommandError
from irgpt.models.collator import VLMCollator, model_inputs
from irgpt.models.freeze import apply_stage
from irgpt.models.tokenizer import (
    ANSWER_TAGS,
    IMAGE,
    SPECIAL_TOKENS,
    conversation_segments,
    load_tokenizer,
    synthetic_corpus,
    train_tokenizer,
)
from irgpt.models.vlm import (
    SPEC_FILE,
    VLMInputSpec,
    build_tiny_vlm,
    input_spec_for,
    load_vlm,
    save_vlm,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """2 shared cores: several intra-op threads spin against each other (10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _png(value: int, size=(40, 52), mode="L") -> bytes:
    arr = np.full((size[0], size[1]) if mode == "L" else (size[0], size[1], 3), value, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "PNG")
    return buf.getvalue()


def _samples(n=3):
    return [{"sample_id": f"s{i}", "image": _png(20 * i + 5), "weight": 1.0, "tier": 0,
             "conversations": [{"from": "human", "value": "<image>\nHow many cars are there?"},
                               {"from": "gpt", "value": f"<num>{i + 3}</num>"}]} for i in range(n)]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(synthetic_corpus(200))


@pytest.fixture(scope="module")
def tiny(tok):
    return build_tiny_vlm(tok, image_size=64, seed=0)


# ------------------------------------------------------------- tokenizer ----
def test_special_tokens_and_tags_are_single_tokens(tok):
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    for t in SPECIAL_TOKENS + ANSWER_TAGS:
        assert tok(t, add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids(t)], t
    text = "<box>[[1, 2, 3, 4]]</box> <num>7</num> <ref>car</ref> at <pos>[(5, 6)]</pos>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text  # tags survive for answer parsing
    assert tok.decode(tok(f"<s>{IMAGE} a</s>", add_special_tokens=False)["input_ids"], skip_special_tokens=True) == " a"


def test_unseen_text_never_fails_or_maps_to_unk(tok):
    text = "Ünïcødé 漢字 🔥 tab\tnewline\n ~`|"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text


def test_tokenizer_save_load_round_trip(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    back = load_tokenizer(tmp_path)
    text = synthetic_corpus(5, seed=3)[2]
    assert back(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert len(back) == len(tok) and back.pad_token_id == tok.pad_token_id


def test_chat_template_renders_the_irgpt_format(tok):
    conv = [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A."}]
    flat = "".join(t for t, _ in conversation_segments(conv))
    assert flat == "<s>USER: <image>\nQ? ASSISTANT: A.</s>"
    msgs = [{"role": "user", "content": "<image>\nQ?"}, {"role": "assistant", "content": "A."}]
    assert tok.apply_chat_template(msgs, tokenize=False) == flat


def test_vocab_size_too_small_is_refused():
    with pytest.raises(CommandError, match="vocab_size must be >="):
        train_tokenizer(["a"], vocab_size=100)


# ------------------------------------------------------------------ model ----
def test_tiny_config_and_image_token_expansion(tok, tiny):
    model, spec = tiny
    assert model.config.image_token_id == tok.convert_tokens_to_ids(IMAGE)
    assert spec.num_image_tokens == (64 // 8) ** 2 == 64
    assert model.config.text_config.vocab_size == len(tok)
    assert model.config.vision_config.num_channels == 3
    batch = VLMCollator(tok, spec, max_length=128)(_samples())
    assert int((batch["input_ids"] == model.config.image_token_id).sum(1)[0]) == 64
    model.eval()
    with torch.no_grad():
        out = model(**model_inputs(batch))
    assert out.logits.shape == (*batch["input_ids"].shape, len(tok))
    # one placeholder is not enough in transformers 5.x: the collator must expand it
    with pytest.raises(ValueError, match="Image features and image tokens do not match"):
        model(input_ids=torch.tensor([[2, 4, 7]]), pixel_values=batch["pixel_values"][:1])


def test_forward_backward_reaches_every_part(tok):
    model, spec = build_tiny_vlm(tok, seed=1)
    model.train()
    batch = VLMCollator(tok, spec, max_length=128)(_samples())
    out = model(**model_inputs(batch), labels=batch["labels"])
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for part in (model.model.vision_tower, model.model.multi_modal_projector, model.model.language_model, model.lm_head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_build_is_seeded_and_leaves_global_rng_alone(tok):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, _ = build_tiny_vlm(tok, seed=5)
    after = torch.rand(1)
    b, _ = build_tiny_vlm(tok, seed=5)
    c, _ = build_tiny_vlm(tok, seed=6)
    assert torch.equal(before, after)
    wa, wb, wc = (m.model.language_model.layers[0].self_attn.q_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def _logits(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**model_inputs(batch)).logits


def test_save_load_round_trip_gives_identical_logits(tok, tiny, tmp_path):
    model, spec = tiny
    batch = VLMCollator(tok, spec, max_length=128)(_samples())
    save_vlm(model, tok, tmp_path / "m", spec)
    assert (tmp_path / "m" / SPEC_FILE).is_file()
    loaded = load_vlm(tmp_path / "m")
    assert loaded.spec == spec
    assert loaded.tokenizer(" <num>3</num>", add_special_tokens=False)["input_ids"] == \
        tok(" <num>3</num>", add_special_tokens=False)["input_ids"]
    assert torch.equal(_logits(model, batch), _logits(loaded.model, batch))


def test_stage2_save_writes_adapter_and_merged_model(tok, tmp_path):
    model, spec = build_tiny_vlm(tok, seed=2)
    peft_model = apply_stage(model, 2)
    with torch.no_grad():  # make the adapter and projector differ from the base
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    batch = VLMCollator(tok, spec, max_length=128)(_samples())
    expected = _logits(peft_model, batch)
    save_vlm(peft_model, tok, tmp_path / "s2", spec)
    assert (tmp_path / "s2" / "adapter" / "adapter_config.json").is_file()
    loaded = load_vlm(tmp_path / "s2")
    torch.testing.assert_close(_logits(loaded.model, batch), expected, atol=1e-5, rtol=1e-5)
    assert any(p.requires_grad for p in peft_model.parameters())  # the trained model is untouched


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(CommandError, match="model directory not found"):
        load_vlm(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CommandError, match="no config.json"):
        load_vlm(tmp_path / "empty")
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({
        "model_type": "internvl_chat",
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                     "AutoModel": "modeling_internvl_chat.InternVLChatModel"}}))
    with pytest.raises(CommandError, match="trust_remote_code: true"):
        load_vlm(remote)  # never runs shipped code unless asked


def test_image_transform_replicates_gray_and_normalises(tiny):
    _, spec = tiny
    x = spec.image_tensor(_png(128, size=(30, 70)))
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    for c in range(3):
        expected = (128 / 255 - spec.image_mean[c]) / spec.image_std[c]
        assert torch.allclose(x[c], torch.full((64, 64), expected), atol=1e-5)
    assert VLMInputSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


# --------------------------------------------------------------- InternVL ----
def _tiny_internvl(tok):
    from transformers import (
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLVisionConfig,
        LlamaConfig,
    )

    tok.add_tokens(["<IMG_CONTEXT>", "<img>", "</img>"], special_tokens=True)
    vision = InternVLVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                  image_size=32, patch_size=8)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2)
    config = InternVLConfig(vision_config=vision, text_config=text,
                            image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
                            image_seq_length=(32 // 8) ** 2 // 4, downsample_ratio=0.5)
    torch.manual_seed(0)
    return InternVLForConditionalGeneration(config)


def test_internvl_spec_and_forward(tmp_path):
    tok = train_tokenizer(synthetic_corpus(50))
    model = _tiny_internvl(tok)
    spec = input_spec_for(model.config, tok)
    assert (spec.family, spec.num_image_tokens, spec.image_size) == ("internvl", 4, 32)
    assert (spec.image_token, spec.image_start, spec.image_end) == ("<IMG_CONTEXT>", "<img>", "</img>")
    batch = VLMCollator(tok, spec, max_length=64)(_samples(2))
    ids = batch["input_ids"][0].tolist()
    start = ids.index(tok.convert_tokens_to_ids("<img>"))
    assert ids[start + 5] == tok.convert_tokens_to_ids("</img>")
    model.eval()
    with torch.no_grad():
        logits = model(**model_inputs(batch)).logits
    assert logits.shape[:2] == batch["input_ids"].shape
    save_vlm(model, tok, tmp_path / "ivl")
    loaded = load_vlm(tmp_path / "ivl")
    assert loaded.spec == spec and type(loaded.model).__name__ == "InternVLForConditionalGeneration"
