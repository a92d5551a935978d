"""Eq. 6: L = (1/N) sum_i w_i * CE_i over the global batch, in micro-batch pieces.

CE_i is the mean next-token cross-entropy over sample i's answer tokens
(labels != -100, logits shifted by one). w_i is the Eq. 5 weight (1 when
`curriculum.weights` is off; the collator then puts 1 in `weights`).

Use in the training loop (one optimizer step = GAS micro-batches per rank):

    n_local = sum(count_contributing(n_tokens_of(mb), mb["pad_mask"]) for mb in step_batches)
    n_global = global_count(n_local, world_size, device)
    for mb in step_batches:
        ce, n_tok = per_sample_ce(model(**model_inputs(mb)).logits, mb["labels"])
        loss = weighted_loss(ce, mb["weights"], mb["pad_mask"], n_global)   # log this
        engine.backward(loss * backward_scale(world_size, gas))
        engine.step()

`n_tokens_of` is `answer_token_counts(labels)`: counting needs only the labels,
so N is known before the first forward of the step (one all-reduce per step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from irgpt.models.collator import (
    IGNORE_INDEX,  # the label the loss skips (prompt, image tokens, padding)
)

# ---- The normalisation unit , defined once -----------
# Eq. 6 averages over the N samples of the GLOBAL batch (every rank, every
# gradient-accumulation micro-batch of one optimizer step), not over a
# micro-batch: a sample's weight w_i must count the same whichever rank and
# micro-batch it lands in, and a micro-batch of heavy samples must not be
# re-normalised to look average. So every micro-batch on every rank returns
#     L_micro = sum_{i in micro-batch} w_i * CE_i / N_global
# and the plain SUM of L_micro over the GAS micro-batches and the W ranks is
# exactly L = (1/N) sum_i w_i CE_i of the global batch (what is logged).
# DeepSpeed AVERAGES instead of summing: `engine.backward(loss)` divides the
# loss by gradient_accumulation_steps (scale_wrt_gas=True, deepspeed 0.19
# runtime/engine.py `backward`), and the data-parallel all-reduce divides
# gradients by the world size (stage 0 `allreduce_bucket`, ZeRO-1/2
# `average_tensor`, ZeRO-3 `__avg_scatter_grads`; DDP does the same).
# `backward_scale` = W * GAS undoes both, so the optimizer gets grad L of
# the global batch: the same step as one worker holding the whole batch.
#
# N counts "contributing" samples: not padding (pad=True, which the loop adds
# to even out the last batch across ranks) and with >= 1 answer token. A
# sample whose answer was truncated away has CE_i = 0 (never 0/0 = NaN) and
# is left out of N like a pad sample: it carries no signal and should not
# dilute the others' weights. N = 0 (a step of only such samples) gives loss 0.


def per_sample_ce(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE [B] (float32, or float64 for float64 logits), answer-token counts n_tokens [B] long).

    logits [B, T, V] predict the token after each position, so position t is
    scored against labels[t + 1]. Only answer positions are gathered before
    the softmax (float32), which keeps memory at O(answer tokens x V).
    CE_i = 0 where n_tokens_i = 0.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree on [B, T]")
    shift_logits = logits[:, :-1, :]
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    n_tokens = mask.sum(dim=1)
    rows = mask.nonzero(as_tuple=True)[0]
    selected = shift_logits[mask]
    if selected.dtype not in (torch.float32, torch.float64):
        selected = selected.float()  # bf16/fp16 logits: softmax in float32
    token_ce = F.cross_entropy(selected, shift_labels[mask], reduction="none")
    sums = torch.zeros(labels.shape[0], dtype=token_ce.dtype, device=logits.device).index_add(0, rows, token_ce)
    return sums / n_tokens.clamp(min=1).to(sums.dtype), n_tokens


def answer_token_counts(labels: torch.Tensor) -> torch.Tensor:
    """n_tokens [B] from labels alone (what `per_sample_ce` will count)."""
    return (labels[:, 1:] != IGNORE_INDEX).sum(dim=1)


def contributing_mask(n_tokens: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Samples counted in N: not padding and with at least one answer token."""
    keep = n_tokens > 0
    if pad_mask is not None:
        keep = keep & ~pad_mask.to(device=keep.device, dtype=torch.bool)
    return keep


def count_contributing(n_tokens: torch.Tensor, pad_mask: torch.Tensor | None = None) -> int:
    return int(contributing_mask(n_tokens, pad_mask).sum())


def global_count(n_local: int, world_size: int, device: torch.device | str | None = None) -> int:
    """N_global: the sum of every rank's local count (all-reduce when world_size > 1).

    Every rank must call it (a collective). `device` must suit the backend
    (the GPU for NCCL, CPU for gloo).
    """
    if world_size == 1:
        return int(n_local)
    import torch.distributed as dist

    t = torch.tensor([int(n_local)], dtype=torch.long, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return int(t.item())


def weighted_loss(ce: torch.Tensor, weights: torch.Tensor | None, pad_mask: torch.Tensor | None,
                  n_global: int) -> torch.Tensor:
    """This micro-batch's share of Eq. 6: sum_i w_i CE_i / N_global (see the unit above).

    `weights` None means w_i = 1 (weights off). Pad samples contribute 0.
    n_global <= 0 returns a zero that still depends on `ce` (backward is a no-op).
    """
    w = torch.ones_like(ce) if weights is None else weights.to(device=ce.device, dtype=ce.dtype)
    if pad_mask is not None:
        w = w * (~pad_mask.to(device=ce.device, dtype=torch.bool)).to(ce.dtype)
    total = (w * ce).sum()
    return total / n_global if n_global > 0 else total * 0.0


def backward_scale(world_size: int, grad_accum_steps: int, scale_wrt_gas: bool = True) -> float:
    """Factor for `engine.backward(loss * factor, scale_wrt_gas=...)` (see the unit above).

    DeepSpeed divides by GAS inside `backward` when `scale_wrt_gas` (its
    default) and by the world size in the gradient all-reduce; this undoes both.
    """
    if world_size < 1 or grad_accum_steps < 1:
        raise ValueError(f"world_size and grad_accum_steps must be >= 1, got {world_size}, {grad_accum_steps}")
    return float(world_size * (grad_accum_steps if scale_wrt_gas else 1))


def eq6_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None,
             pad_mask: torch.Tensor | None, n_global: int) -> tuple[torch.Tensor, dict]:
    """`weighted_loss(per_sample_ce(...))` plus per-batch stats for logging."""
    ce, n_tokens = per_sample_ce(logits, labels)
    loss = weighted_loss(ce, weights, pad_mask, n_global)
    keep = contributing_mask(n_tokens, pad_mask)
    stats = {
        "n_contributing": int(keep.sum()),
        "answer_tokens": int(n_tokens[keep].sum()),
        "mean_ce": float(ce.detach()[keep].mean()) if keep.any() else 0.0,
    }
    return loss, stats
