"""Lesson 2 per-sample loss: symmetric InfoNCE against a fixed, seeded pool.

Decision (docs/method.md, Lesson 2): the paper does not say how a per-sample loss
is taken out of a batch loss. Pair i is scored against a FIXED pool of other
samples, chosen once by seed and reused for l (before warm-up) and l' (after),
so a sample's loss never depends on which batch or part it fell in:

    negatives(i) = the first K pool entries that are not i itself
    s            = exp(model.logit_scale)                         (CLIP temperature)
    l_i2t        = CE over s * [img_i . txt_i, img_i . txt_j for j in negatives(i)], target 0
    l_t2i        = CE over s * [txt_i . img_i, txt_i . img_j for j in negatives(i)], target 0
    loss_i       = (l_i2t + l_t2i) / 2

`select_pool` returns K + 1 ids so that every sample, in the pool or not, has
exactly K negatives: a pool member drops itself, any other sample drops the
spare (last) entry. With fewer than K + 1 samples the pool is all of them
and each sample has n - 1 negatives. When the pool is the batch itself the
mean of `loss_i` is exactly `open_clip.ClipLoss()` of that batch (tested).

Determinism: embeddings come from `fixed_chunks` (batch-invariant float32),
and the loss is computed in float64 from them, again in fixed chunks of rows,
so a sample's loss is the same bits in any batch split, part layout or
number of actors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from irgpt.data.schema import stable_hash
from irgpt.models.chunks import MODEL_CHUNK, fixed_chunks

DEFAULT_POOL_SIZE = 255


def select_pool(sample_ids: Sequence[str], k: int = DEFAULT_POOL_SIZE, seed: int = 0) -> list[str]:
    """The K + 1 ids with the smallest `stable_hash(f"{seed}:{id}")` (ties by id), in that order.

    Independent of the order and partitioning of `sample_ids` (a set is
    enough); all of them when there are fewer than K + 1.
    """
    if k < 1:
        raise ValueError(f"pool size k must be >= 1, got {k}")
    unique = sorted(set(sample_ids))
    if len(unique) != len(sample_ids):
        raise ValueError("select_pool: duplicate sample ids")
    ranked = sorted(unique, key=lambda s: (stable_hash(f"{seed}:{s}"), s))
    return ranked[: k + 1]


@torch.no_grad()
def embed(model, images: torch.Tensor, tokens: torch.Tensor, chunk: int = MODEL_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised float32 (img_emb, txt_emb), batch-invariant (`fixed_chunks`, eval, no_grad).

    `images` is the preprocessed float tensor (B, 3, S, S) (`ClipPreprocess`),
    `tokens` the int64 (B, context_length) tokens.
    """
    was_training = model.training
    model.eval()
    try:
        img = fixed_chunks(lambda x: model.encode_image(x, normalize=True), images.float(), chunk)
        txt = fixed_chunks(lambda t: model.encode_text(t, normalize=True), tokens.long(), chunk)
    finally:
        model.train(was_training)
    return img.float(), txt.float()


def logit_scale_of(model) -> float:
    """exp(logit_scale), the multiplier CLIP applies to cosine similarities."""
    return float(model.logit_scale.detach().exp().item())


def _ce_target0(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[:, 0] with excluded columns (keep == False) masked out."""
    masked = logits.masked_fill(~keep, float("-inf"))
    return torch.logsumexp(masked, dim=1) - logits[:, 0]


def per_sample_loss(
    img_i: torch.Tensor,
    txt_i: torch.Tensor,
    pool_img: torch.Tensor,
    pool_txt: torch.Tensor,
    logit_scale: float,
    exclude_mask: torch.Tensor,
    chunk: int = MODEL_CHUNK,
) -> torch.Tensor:
    """Symmetric InfoNCE of each pair against the pool -> float64 loss (B,).

    `exclude_mask` (B, P) bool: pool entries that are NOT negatives of row i
    (its own entry when i is in the pool, or the spare entry; `PoolLoss`
    builds it). Every row must keep at least one negative.
    """
    b, p = img_i.shape[0], pool_img.shape[0]
    if exclude_mask.shape != (b, p):
        raise ValueError(f"exclude_mask must be {(b, p)}, got {tuple(exclude_mask.shape)}")
    if b == 0:
        return torch.zeros(0, dtype=torch.float64)
    if bool(exclude_mask.all(dim=1).any()):
        raise ValueError("per_sample_loss: a row has no negatives left in the pool")
    d = img_i.shape[1]
    pool_img64, pool_txt64 = pool_img.double(), pool_txt.double()
    scale = float(logit_scale)
    packed = torch.cat([img_i.double(), txt_i.double(), exclude_mask.double()], dim=1)
    keep_pos = torch.ones(1, 1, dtype=torch.bool)

    def rows(x: torch.Tensor) -> torch.Tensor:
        im, tx, excl = x[:, :d], x[:, d : 2 * d], x[:, 2 * d :] > 0.5
        keep = torch.cat([keep_pos.expand(x.shape[0], 1), ~excl], dim=1)
        pos = (im * tx).sum(dim=1, keepdim=True)
        i2t = torch.cat([pos, im @ pool_txt64.T], dim=1) * scale
        t2i = torch.cat([pos, tx @ pool_img64.T], dim=1) * scale
        return ((_ce_target0(i2t, keep) + _ce_target0(t2i, keep)) / 2).unsqueeze(1)

    return fixed_chunks(rows, packed, chunk)[:, 0]


def exclusion_mask(sample_ids: Sequence[str], pool_ids: Sequence[str], k: int) -> torch.Tensor:
    """(B, P) bool mask of pool entries that are NOT negatives of each row.

    Row i keeps the first k pool entries other than i itself (module doc), so
    every row has exactly min(k, P - [i in pool]) negatives.
    """
    index = {s: j for j, s in enumerate(pool_ids)}
    p = len(pool_ids)
    mask = torch.ones(len(sample_ids), p, dtype=torch.bool)
    for row, sid in enumerate(sample_ids):
        j = index.get(sid)
        if j is None or j >= k:
            mask[row, :k] = False  # the first k entries (i is not among them)
        else:
            mask[row, : k + 1] = False  # the first k + 1 entries minus i itself
            mask[row, j] = True
    return mask


class PoolLoss:
    """Per-sample loss against one fixed pool, for one model (use one per model: l and l').

        pool = PoolLoss(model, pool_images_u8_or_pre, pool_tokens, pool_ids, k=255)
        losses = pool.losses(images, tokens, sample_ids)   # float32 (B,)

    The pool rows are embedded once here. `images` are uint8 arrays (B, H, W)
    (grey) or preprocessed float tensors; `preprocess` (a `ClipPreprocess`)
    turns uint8 into model input.
    """

    def __init__(self, model, pool_images, pool_tokens, pool_ids: Sequence[str], k: int = DEFAULT_POOL_SIZE, preprocess=None, chunk: int = MODEL_CHUNK):
        if len(pool_ids) != len(set(pool_ids)):
            raise ValueError("PoolLoss: duplicate pool ids")
        if len(pool_ids) < 2:
            raise ValueError("PoolLoss: the pool needs at least 2 samples")
        self.model = model
        self.preprocess = preprocess
        self.chunk = chunk
        self.k = int(k)
        self.pool_ids = list(pool_ids)
        self.pool_img, self.pool_txt = embed(model, self._input(pool_images), torch.as_tensor(pool_tokens), chunk)
        self.logit_scale = logit_scale_of(model)

    @classmethod
    def from_embeddings(cls, pool_img: torch.Tensor, pool_txt: torch.Tensor, pool_ids: Sequence[str], logit_scale: float, k: int = DEFAULT_POOL_SIZE) -> PoolLoss:
        """A scorer over precomputed (normalised float32) pool embeddings; `losses_from_embeddings` only."""
        self = cls.__new__(cls)
        self.model, self.preprocess, self.chunk, self.k = None, None, MODEL_CHUNK, int(k)
        self.pool_ids = list(pool_ids)
        self.pool_img, self.pool_txt = pool_img.float(), pool_txt.float()
        self.logit_scale = float(logit_scale)
        return self

    def _input(self, images) -> torch.Tensor:
        x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
        if x.dtype == torch.uint8:
            if self.preprocess is None:
                raise ValueError("PoolLoss: uint8 images need `preprocess` (ClipPreprocess)")
            x = self.preprocess(x)
        return x

    def losses_from_embeddings(self, img: torch.Tensor, txt: torch.Tensor, sample_ids: Sequence[str]) -> np.ndarray:
        mask = exclusion_mask(sample_ids, self.pool_ids, self.k)
        loss = per_sample_loss(img, txt, self.pool_img, self.pool_txt, self.logit_scale, mask, self.chunk)
        return loss.numpy().astype(np.float32)

    def losses(self, images, tokens, sample_ids: Sequence[str]) -> np.ndarray:
        if len(sample_ids) == 0:
            return np.zeros(0, dtype=np.float32)
        img, txt = embed(self.model, self._input(images), torch.as_tensor(tokens), self.chunk)
        return self.losses_from_embeddings(img, txt, sample_ids)


# ----------------------------------------------------------- evaluation ----
def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve of `scores` for the positive `labels`: the Mann-Whitney U
    of the positives against the negatives over n_pos x n_neg (`scipy.stats.mannwhitneyu`).

    = P(score of a random positive > score of a random negative), ties
    counting one half. NaN when either class is empty.
    """
    from scipy.stats import mannwhitneyu

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float(mannwhitneyu(s[y], s[~y], alternative="two-sided").statistic) / (n_pos * n_neg)
