"""A text warm-start for the tiny model's LLM, so it stands in for a pretrained one.

Stage 1 trains only the vision encoder and the projector against a frozen LLM
(docs/method.md). With a real checkpoint that LLM already knows the language;
the tiny model's LLM is random-init, and a frozen random LLM gives the visual
features nothing to align to: on the demo data stage 1 stalled at a held-out
loss of 5.8, far above the answers' unigram baseline (3.9). So, before stage
1, the tiny model's language model and output head are trained as a plain
causal LM on the training split's conversation text, with every image
placeholder removed: it learns the language of the prompts and answers and
nothing about any image. The validation, benchmark and held-out rows are
never read.

`train.tiny_lm.steps` (0 = off) optimizer steps of AdamW, batch
`train.tiny_lm.batch_size` sequences drawn with a seeded generator, linear
warm-up then cosine decay (`transformers.get_cosine_schedule_with_warmup`).
Applies to `train.model: tiny` only; a real checkpoint is never touched.
It runs on one intra-op thread: float sums split over another number of
threads round differently, and the base model must be the same bits wherever
the driver runs (a laptop, a `ray job submit` entrypoint; the two-node
cluster test compares a job's run with a local one).
"""

from __future__ import annotations

import time


def text_sequences(tokenizer, conversations: list, max_length: int) -> list[list[int]]:
    """Each conversation in the prompt format, image placeholder removed, as token ids."""
    from irgpt.models.tokenizer import IMAGE, corpus_texts

    out = []
    for text in corpus_texts(conversations):
        ids = list(tokenizer(text.replace(IMAGE + "\n", "").replace(IMAGE, ""), add_special_tokens=False)["input_ids"])
        if len(ids) > 1:
            out.append(ids[:max_length])
    return out


def warm_start(model, tokenizer, conversations: list, *, steps: int, lr: float, batch_size: int, seed: int,
               max_length: int = 256) -> dict:
    """Train `model`'s language model + output head as a causal LM (see module doc); in place.

    Returns {"steps", "first_loss", "last_loss", "seconds", "sequences"} (losses: the mean
    token CE of the first and last 10 steps)."""
    import torch
    import torch.nn.functional as F
    from transformers import get_cosine_schedule_with_warmup

    from irgpt.models.freeze import vlm_parts

    seqs = text_sequences(tokenizer, conversations, max_length)
    if not seqs:
        raise ValueError("no training text for the LLM warm-start")
    llm = model.get_submodule(vlm_parts(model).llm)
    head = model.get_output_embeddings()
    params = [p for m in (llm, head) for p in m.parameters()]
    was_training, grads = model.training, [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, max(1, steps // 20), steps)
    losses, t0 = [], time.perf_counter()
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            pick = torch.randint(len(seqs), (batch_size,), generator=gen).tolist()
            width = max(len(seqs[i]) for i in pick)
            ids = torch.full((batch_size, width), pad, dtype=torch.long)
            mask = torch.zeros((batch_size, width), dtype=torch.long)
            for row, i in enumerate(pick):
                ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
                mask[row, : len(seqs[i])] = 1
            hidden = llm(input_ids=ids, attention_mask=mask).last_hidden_state
            logits = head(hidden)[:, :-1]
            target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
    finally:
        torch.set_num_threads(threads)
        for p, g in zip(params, grads):
            p.requires_grad_(g)
        model.train(was_training)
    head_n = min(10, len(losses))
    return {"steps": steps, "first_loss": sum(losses[:head_n]) / max(1, head_n),
            "last_loss": sum(losses[-head_n:]) / max(1, head_n), "seconds": round(time.perf_counter() - t0, 1),
            "sequences": len(seqs)}
