"""Lesson 2 per-sample pool loss: parity with open_clip, invariance, edge cases, AUROC."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irgpt.scoring.clip_loss import (
    PoolLoss,
    auroc,
    embed,
    exclusion_mask,
    per_sample_loss,
    select_pool,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)


def test_mean_over_the_batch_as_pool_equals_open_clip_cliploss():
    import open_clip

    img, txt = _unit(24, 16, 0), _unit(24, 16, 1)
    txt = torch.nn.functional.normalize(txt + 0.7 * img, dim=1)  # some alignment
    scale = 14.285
    ids = [f"s{i}" for i in range(24)]
    pool = select_pool(ids, k=23, seed=0)  # fewer than k + 1 others: all of them
    assert sorted(pool) == sorted(ids)
    order = [ids.index(p) for p in pool]
    mask = exclusion_mask(ids, pool, k=23)
    ours = per_sample_loss(img, txt, img[order], txt[order], scale, mask)
    ref = open_clip.ClipLoss()(img.double(), txt.double(), torch.tensor(scale, dtype=torch.float64))
    assert ours.dtype == torch.float64
    assert float(ours.mean()) == pytest.approx(float(ref), rel=1e-12, abs=1e-12)


def test_select_pool_is_independent_of_row_order():
    ids = [f"id-{i}" for i in range(1000)]
    a = select_pool(ids, k=255, seed=7)
    b = select_pool(list(reversed(ids)), k=255, seed=7)
    assert a == b and len(a) == 256
    assert select_pool(ids, k=255, seed=8) != a
    assert sorted(select_pool(ids[:10], k=255, seed=7)) == sorted(ids[:10])
    with pytest.raises(ValueError):
        select_pool(["a", "a", "b"], k=1, seed=0)


def test_every_row_gets_exactly_k_negatives_and_never_itself():
    pool = [f"p{i}" for i in range(6)]  # k = 5 -> k + 1 pool entries
    rows = ["p0", "p3", "p5", "other"]
    mask = exclusion_mask(rows, pool, k=5)
    keep = ~mask
    assert keep.sum(dim=1).tolist() == [5, 5, 5, 5]
    for r, sid in enumerate(rows):
        if sid in pool:
            assert not keep[r, pool.index(sid)]
    assert keep[3].tolist() == [True] * 5 + [False]  # a non-member drops the spare entry
    # K > n: all others
    small = exclusion_mask(["p0", "p1"], ["p0", "p1", "p2"], k=255)
    assert (~small).sum(dim=1).tolist() == [2, 2]


def test_self_exclusion_matches_an_explicit_pool_without_self():
    img, txt = _unit(10, 8, 2), _unit(10, 8, 3)
    ids = [f"s{i}" for i in range(10)]
    scorer = PoolLoss.from_embeddings(img, txt, ids, logit_scale=10.0, k=9)
    got = scorer.losses_from_embeddings(img[:3], txt[:3], ids[:3])
    for i in range(3):
        others = [j for j in range(10) if j != i]
        ref = PoolLoss.from_embeddings(img[others], txt[others], [ids[j] for j in others], 10.0, k=9)
        want = ref.losses_from_embeddings(img[i : i + 1], txt[i : i + 1], [ids[i]])
        assert got[i] == pytest.approx(want[0], rel=1e-6)


def test_pool_loss_is_bit_identical_across_batch_splits():
    from irgpt.models.clip import create_clip, tokenize_with_truncation

    model, preprocess, tokenizer = create_clip(seed=1)
    rng = np.random.default_rng(0)
    n = 21
    images = rng.integers(0, 256, size=(n, 64, 64), dtype=np.uint8)
    words = ["hot", "cold", "car", "person", "left", "right", "road", "tree"]
    captions = [" ".join(rng.choice(words, size=6)) for _ in range(n)]
    tokens, _ = tokenize_with_truncation(tokenizer, captions, 77)
    ids = [f"r{i:03d}" for i in range(n)]
    pool_ids = select_pool(ids, k=12, seed=0)
    at = [ids.index(p) for p in pool_ids]
    scorer = PoolLoss(model, images[at], tokens[at], pool_ids, k=12, preprocess=preprocess)
    whole = scorer.losses(images, tokens, ids)
    assert whole.dtype == np.float32 and whole.shape == (n,) and np.isfinite(whole).all()
    for splits in ([5, 16], [1, 17, 3]):
        parts, start = [], 0
        for size in splits:
            sl = slice(start, start + size)
            parts.append(scorer.losses(images[sl], tokens[sl], ids[sl]))
            start += size
        assert np.array_equal(np.concatenate(parts), whole)
    # and the embeddings themselves are batch-invariant
    x = preprocess(images)
    a, _ = embed(model, x, tokens)
    b, _ = embed(model, x[3:9], tokens[3:9])
    assert torch.equal(a[3:9], b)


def test_loss_falls_when_pairs_are_aligned():
    img = _unit(50, 8, 5)
    noise = _unit(50, 8, 6)
    ids = [f"s{i}" for i in range(50)]
    aligned = PoolLoss.from_embeddings(img, img, ids, 20.0, k=49).losses_from_embeddings(img, img, ids)
    random = PoolLoss.from_embeddings(img, noise, ids, 20.0, k=49).losses_from_embeddings(img, noise, ids)
    assert aligned.mean() < random.mean()


def test_a_row_without_negatives_is_an_error():
    img = _unit(2, 4, 0)
    with pytest.raises(ValueError, match="no negatives"):
        per_sample_loss(img[:1], img[:1], img[:1], img[:1], 1.0, torch.ones(1, 1, dtype=torch.bool))


def test_auroc_against_hand_worked_examples():
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    assert auroc([1, 2, 3], [False, False, True]) == 1.0
    assert auroc([3, 2, 1], [False, False, True]) == 0.0
    assert auroc([1, 1, 1, 1], [True, False, True, False]) == 0.5  # ties count one half
    assert np.isnan(auroc([1, 2], [True, True]))
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=300), rng.random(300) < 0.3
    pos, neg = s[y], s[~y]
    brute = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert auroc(s, y) == pytest.approx(brute)
