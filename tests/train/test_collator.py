"""Samples -> tensors: labels only on answers, image expansion, truncation counted and never silent."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from irgpt.errors import CommandError
from irgpt.models.collator import VLMCollator
from irgpt.models.tokenizer import IMAGE, synthetic_corpus, train_tokenizer
from irgpt.models.vlm import VLMInputSpec
from irgpt.train.loss import IGNORE_INDEX


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """2 shared cores: several intra-op threads spin against each other (10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


N_IMG = 16


def _png(value: int, size=(24, 40), mode="L") -> bytes:
    shape = size if mode == "L" else (*size, 3)
    buf = io.BytesIO()
    Image.fromarray(np.full(shape, value, np.uint8), mode).save(buf, "PNG")
    return buf.getvalue()


def _sample(i=0, answer="<num>12</num>", question="How many people?", **extra):
    return {"sample_id": f"id{i}", "image": _png(10 + i), "weight": 1.5, "tier": i % 3,
            "conversations": [{"from": "human", "value": f"<image>\n{question}"},
                              {"from": "gpt", "value": answer}], **extra}


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(synthetic_corpus(150))


@pytest.fixture(scope="module")
def spec():
    return VLMInputSpec(image_size=32, num_image_tokens=N_IMG, image_token=IMAGE)


def _answer_ids(tok, text):
    return tok(" " + text + "</s>", add_special_tokens=False)["input_ids"]


def test_batch_contract(tok, spec):
    batch = VLMCollator(tok, spec, max_length=96)([_sample(0), _sample(1, answer="yes, a long answer here")])
    assert set(batch) == {"input_ids", "attention_mask", "labels", "pixel_values", "weights", "tiers", "pad_mask"}
    b, t = batch["input_ids"].shape
    assert b == 2 and batch["labels"].shape == (b, t) and batch["attention_mask"].shape == (b, t)
    assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert batch["weights"].tolist() == [1.5, 1.5] and batch["tiers"].tolist() == [0, 1]
    assert batch["pad_mask"].tolist() == [False, False]


def test_labels_cover_only_answer_tokens(tok, spec):
    col = VLMCollator(tok, spec, max_length=96)
    batch = col([_sample(0), _sample(1, answer="(B) forest")])
    image_id = tok.convert_tokens_to_ids(IMAGE)
    for row, answer in enumerate(["<num>12</num>", "(B) forest"]):
        ids, labels, mask = batch["input_ids"][row], batch["labels"][row], batch["attention_mask"][row]
        n = int(mask.sum())
        assert labels[mask == 0].eq(IGNORE_INDEX).all() and ids[n:].eq(tok.pad_token_id).all()
        assert int((ids == image_id).sum()) == N_IMG and labels[ids == image_id].eq(IGNORE_INDEX).all()
        kept = labels[labels != IGNORE_INDEX].tolist()
        assert kept == _answer_ids(tok, answer)  # the answer and </s>, nothing of the prompt
        assert ids[n - len(kept):n].tolist() == kept  # the answer ends the sequence
        prompt = tok.decode(ids[: n - len(kept)][ids[: n - len(kept)] != image_id])
        assert prompt == "<s>USER: \nHow many people? ASSISTANT:"


def test_image_tokens_are_one_contiguous_block(tok, spec):
    ids = VLMCollator(tok, spec, max_length=96)([_sample()])["input_ids"][0].tolist()
    image_id = tok.convert_tokens_to_ids(IMAGE)
    first = ids.index(image_id)
    assert ids[first:first + N_IMG] == [image_id] * N_IMG and ids.count(image_id) == N_IMG


def test_pixels_gray_to_three_channels_resized_and_normalised(tok, spec):
    rgb = _sample(3)
    rgb["image"] = _png(0, mode="RGB")
    batch = VLMCollator(tok, spec, max_length=96)([_sample(0), rgb])
    px = batch["pixel_values"]
    for c in range(3):
        assert torch.allclose(px[0, c], torch.full((32, 32), (10 / 255 - spec.image_mean[c]) / spec.image_std[c]),
                              atol=1e-5)
    assert not torch.allclose(px[1, 0], px[1, 1])  # RGB stays RGB (per-channel mean/std differ)


def test_truncation_cuts_the_answer_end_counts_and_warns(tok, spec, caplog):
    col = VLMCollator(tok, spec, max_length=96)
    short = _sample(0)
    long = _sample(1, answer="a thermal image of a person near a car on a road " * 6)
    full_prompt = col.encode(long).prompt_length
    short_len = len(col.encode(short).input_ids)
    col.max_length = short_len + 1  # the short sample fits, the long one does not
    with caplog.at_level(logging.WARNING, logger="irgpt.models.collator"):
        batch = col([short, long])
    assert batch["input_ids"].shape[1] == short_len + 1
    assert col.num_samples == 2 and col.num_truncated == 1 and col.num_truncated_tokens > 0
    assert col.counters()["num_truncated"] == 1
    assert "id1 truncated" in caplog.text and "id0" not in caplog.text
    labels = batch["labels"][1]
    assert int((labels != IGNORE_INDEX).sum()) == short_len + 1 - full_prompt  # the answer's head survives
    assert labels[-1] != IGNORE_INDEX
    assert int((batch["input_ids"][1] == tok.convert_tokens_to_ids(IMAGE)).sum()) == N_IMG
    col.reset_counters()
    assert col.counters() == {"num_samples": 0, "num_truncated": 0, "num_truncated_tokens": 0}


def test_prompt_that_does_not_fit_is_an_error(tok, spec):
    col = VLMCollator(tok, spec, max_length=N_IMG + 8)
    with pytest.raises(CommandError, match=r"sample id7: the prompt alone is \d+ tokens .*train.max_length"):
        col([_sample(7, question="word " * 40)])
    with pytest.raises(CommandError, match="cannot hold one image"):
        VLMCollator(tok, spec, max_length=N_IMG)


def test_answer_truncated_away_keeps_no_label(tok, spec):
    col = VLMCollator(tok, spec, max_length=96)
    s = _sample(0)
    col.max_length = col.encode(s).prompt_length
    batch = col([s])
    assert batch["labels"].eq(IGNORE_INDEX).all() and col.num_truncated == 1


def test_pad_samples_and_weights_off(tok, spec):
    col = VLMCollator(tok, spec, max_length=96)
    batch = col([_sample(0), _sample(1, pad=True)])
    assert batch["pad_mask"].tolist() == [False, True] and batch["weights"].tolist() == [1.5, 0.0]
    assert col.num_samples == 1
    off = VLMCollator(tok, spec, max_length=96, use_weights=False)([_sample(0), _sample(1, weight=None)])
    assert off["weights"].tolist() == [1.0, 1.0]
    with pytest.raises(CommandError, match="weight must be a finite number"):
        col([_sample(0, weight=float("nan"))])


def test_multi_turn_labels_every_answer(tok, spec):
    s = _sample(0)
    s["conversations"] += [{"from": "human", "value": "And now?"}, {"from": "gpt", "value": "no"}]
    batch = VLMCollator(tok, spec, max_length=128)([s])
    kept = batch["labels"][0][batch["labels"][0] != IGNORE_INDEX].tolist()
    assert kept == _answer_ids(tok, "<num>12</num>") + _answer_ids(tok, "no")


def test_placeholder_rules(tok, spec):
    col = VLMCollator(tok, spec, max_length=96)
    s = _sample(0)
    s["conversations"][0]["value"] = "How many people?"  # no <image>: put first, as the schema does
    assert col([s])["input_ids"].tolist() == col([_sample(0)])["input_ids"].tolist()
    two = _sample(1, question="<image> again")
    with pytest.raises(CommandError, match="sample id1: 2 <image> placeholders"):
        col([two])
    bad = _sample(2)
    bad["image"] = b"not a png"
    with pytest.raises(CommandError, match="sample id2: cannot decode its image"):
        col([bad])


def test_chat_template_format_matches_irgpt_format(tok, spec):
    from dataclasses import replace

    a = VLMCollator(tok, spec, max_length=96)([_sample(0), _sample(1, answer="(C) person")])
    b = VLMCollator(tok, replace(spec, prompt_format="chat_template"), max_length=96)(
        [_sample(0), _sample(1, answer="(C) person")])
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])


def test_prompt_only_encoding_is_a_prefix(tok, spec):
    col = VLMCollator(tok, spec, max_length=96)
    full = col.encode(_sample(0))
    prompt = col.encode(_sample(0), with_answers=False)
    assert full.input_ids[: len(prompt.input_ids)] == prompt.input_ids
    assert len(prompt.input_ids) == full.prompt_length


def test_image_start_end_tokens(tok, spec):
    from dataclasses import replace

    t = train_tokenizer(synthetic_corpus(40))
    t.add_tokens(["<IMG_CONTEXT>", "<img>", "</img>"], special_tokens=True)
    s = replace(spec, image_token="<IMG_CONTEXT>", image_start="<img>", image_end="</img>", num_image_tokens=4)
    ids = VLMCollator(t, s, max_length=64)([_sample(0)])["input_ids"][0].tolist()
    i = ids.index(t.convert_tokens_to_ids("<img>"))
    assert ids[i + 1:i + 6] == [t.convert_tokens_to_ids("<IMG_CONTEXT>")] * 4 + [t.convert_tokens_to_ids("</img>")]
    with pytest.raises(CommandError, match="has no token '<IMG_CONTEXT>'"):
        VLMCollator(tok, s, max_length=64)
