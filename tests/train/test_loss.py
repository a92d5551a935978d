"""Eq. 6 loss: hand-worked values, and the global-batch normalisation across ranks and micro-batches."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from irgpt.models.collator import VLMCollator, model_inputs
from irgpt.models.tokenizer import synthetic_corpus, train_tokenizer
from irgpt.models.vlm import build_tiny_vlm
from irgpt.train.loss import (
    IGNORE_INDEX,
    answer_token_counts,
    backward_scale,
    count_contributing,
    eq6_loss,
    global_count,
    per_sample_ce,
    weighted_loss,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """2 shared cores: several intra-op threads spin against each other (10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


X = IGNORE_INDEX


# ------------------------------------------------------------ hand-worked ----
def test_per_sample_ce_hand_computed():
    logits = torch.zeros(2, 3, 2)
    logits[0, 1] = torch.tensor([math.log(3.0), 0.0])  # p(token 0) = 3/4
    labels = torch.tensor([[X, 1, 0], [X, X, X]])
    # sample 0: position 0 predicts labels[1] = 1 with p = 1/2, position 1 predicts labels[2] = 0 with p = 3/4
    ce, n = per_sample_ce(logits, labels)
    assert n.tolist() == [2, 0]
    assert ce[0].item() == pytest.approx((math.log(2) + math.log(4 / 3)) / 2, abs=1e-6)
    assert ce[1].item() == 0.0  # no answer tokens: 0, never NaN
    assert answer_token_counts(labels).tolist() == [2, 0]


def test_weighted_loss_hand_computed():
    ce = torch.tensor([1.0, 2.0, 3.0, 4.0])
    w = torch.tensor([1.0, 0.5, 2.0, 1.0])
    pad = torch.tensor([False, False, True, False])
    assert weighted_loss(ce, w, pad, 3).item() == pytest.approx((1 * 1 + 0.5 * 2 + 1 * 4) / 3)
    # weights off (None) -> plain mean CE over real samples
    assert weighted_loss(ce, None, None, 4).item() == pytest.approx(2.5)
    assert weighted_loss(ce, None, pad, 3).item() == pytest.approx(7 / 3)
    # N counts neither pad samples nor samples without answer tokens
    assert count_contributing(torch.tensor([3, 0, 2, 5]), pad) == 2


def test_no_answer_tokens_anywhere_gives_zero_not_nan():
    logits = torch.randn(2, 4, 5, requires_grad=True)
    labels = torch.full((2, 4), X)
    loss, stats = eq6_loss(logits, labels, torch.ones(2), None, n_global=0)
    assert loss.item() == 0.0 and stats["n_contributing"] == 0
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() == 0


def test_truncated_away_sample_does_not_dilute_the_others():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7)
    labels = torch.tensor([[X, X, 1, 2, 3], [X, X, X, X, X], [X, X, X, 4, 5]])
    ce, n = per_sample_ce(logits, labels)
    n_global = count_contributing(n)
    assert n_global == 2
    keep = torch.tensor([0, 2])
    ce_ref, _ = per_sample_ce(logits[keep], labels[keep])
    assert weighted_loss(ce, None, None, n_global).item() == pytest.approx(ce_ref.mean().item(), abs=1e-6)


def test_backward_scale():
    assert backward_scale(1, 1) == 1.0
    assert backward_scale(8, 4) == 32.0
    assert backward_scale(8, 4, scale_wrt_gas=False) == 8.0
    with pytest.raises(ValueError):
        backward_scale(0, 1)
    assert global_count(7, world_size=1) == 7


# ------------------------------------------- global-batch equivalence -------
def _png(v: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 30), v, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


ANSWERS = ["<num>3</num>", "(B) forest", "The target bounding box is <box>[[1, 2, 30, 40]]</box>.", "no"]


def _samples():
    return [{"sample_id": f"s{i}", "image": _png(30 * i + 7), "weight": w, "tier": i,
             "conversations": [{"from": "human", "value": f"<image>\nQuestion number {i}?"},
                               {"from": "gpt", "value": a}]}
            for i, (a, w) in enumerate(zip(ANSWERS, [0.3, 1.7, 1.2, 0.6]))]


@pytest.fixture(scope="module")
def setup():
    tok = train_tokenizer(synthetic_corpus(100))
    model, spec = build_tiny_vlm(tok, seed=0)
    model = model.double().eval()  # float64: the test is about arithmetic, not float noise
    return model, VLMCollator(tok, spec, max_length=160)


def _loss_and_grads(model, collator, samples, n_global, scale, ds_gas=1):
    """What one rank does for one micro-batch; `ds_gas` emulates engine.backward's division by GAS."""
    model.zero_grad(set_to_none=True)
    batch = collator(samples)
    inputs = model_inputs(batch, dtype=torch.float64)
    ce, _ = per_sample_ce(model(**inputs).logits, batch["labels"])
    loss = weighted_loss(ce, batch["weights"], batch["pad_mask"], n_global)
    (loss * scale / ds_gas).backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _n_global(collator, micro_batches):
    total = 0
    for mb in micro_batches:
        b = collator(mb)
        total += count_contributing(answer_token_counts(b["labels"]), b["pad_mask"])
    return total


def _add(acc, grads, factor=1.0):
    for k, g in grads.items():
        acc[k] = acc.get(k, 0) + factor * g
    return acc


@pytest.mark.parametrize("world,gas", [(2, 1), (1, 2), (2, 2)], ids=["2ranks_x_mb2", "1rank_x_gas2", "2ranks_x_gas2"])
def test_split_batches_reproduce_the_full_batch(setup, world, gas):
    model, col = setup
    samples = _samples()
    full_loss, full_grads = _loss_and_grads(model, col, samples, n_global=4, scale=1.0)
    micro = len(samples) // (world * gas)
    # rank r gets micro-batches r*gas .. r*gas+gas-1 (any assignment works)
    shards = [[samples[(r * gas + m) * micro:(r * gas + m + 1) * micro] for m in range(gas)] for r in range(world)]
    n_global = sum(_n_global(col, shard) for shard in shards)  # = all-reduce of the local counts
    assert n_global == 4
    summed_loss, rank_grads = 0.0, []
    for shard in shards:
        acc: dict = {}
        for mb in shard:
            loss, grads = _loss_and_grads(model, col, mb, n_global, backward_scale(world, gas), ds_gas=gas)
            summed_loss += loss
            _add(acc, grads)
        rank_grads.append(acc)
    averaged = {k: sum(g[k] for g in rank_grads) / world for k in full_grads}  # DeepSpeed/DDP all-reduce mean
    assert abs(float(summed_loss) - float(full_loss)) < 1e-5
    for k, g in full_grads.items():
        torch.testing.assert_close(averaged[k], g, atol=1e-5, rtol=1e-5)


def test_pad_samples_are_left_out_of_n(setup):
    model, col = setup
    samples = _samples()[:3]
    ref_loss, ref_grads = _loss_and_grads(model, col, samples, n_global=3, scale=1.0)
    filler = dict(samples[0], pad=True, sample_id="pad")
    shards = [[samples[:2]], [[samples[2], filler]]]  # rank 1 evens out its micro-batch with a pad sample
    n_global = sum(_n_global(col, shard) for shard in shards)
    assert n_global == 3
    total, rank_grads = 0.0, []
    for shard in shards:
        loss, grads = _loss_and_grads(model, col, shard[0], n_global, backward_scale(2, 1))
        total += loss
        rank_grads.append(grads)
    assert abs(float(total) - float(ref_loss)) < 1e-5
    for k, g in ref_grads.items():
        torch.testing.assert_close((rank_grads[0][k] + rank_grads[1][k]) / 2, g, atol=1e-5, rtol=1e-5)


def test_float32_model_matches_within_1e5(setup):
    model, col = setup
    model32 = build_tiny_vlm(col.tokenizer, seed=0)[0].eval()
    samples = _samples()
    b = col(samples)
    full, _ = eq6_loss(model32(**model_inputs(b)).logits, b["labels"], b["weights"], b["pad_mask"], 4)
    parts = 0.0
    for half in (samples[:2], samples[2:]):
        h = col(half)
        loss, _ = eq6_loss(model32(**model_inputs(h)).logits, h["labels"], h["weights"], h["pad_mask"], 4)
        parts += loss
    assert abs(float(parts.detach()) - float(full.detach())) < 1e-5
