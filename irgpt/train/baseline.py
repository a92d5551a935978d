"""The unigram baseline of the held-out answer loss.

A model that ignores the image and the prompt and predicts every answer token
from the training answers' token frequencies scores

    H_i = -(1 / n_i) * sum_t log p(y_it),   p(v) = (c(v) + 1) / (C + V)

per held-out sample (the add-one estimate over the vocabulary V, so an unseen
token costs a finite amount), and the baseline is the mean of H_i over the
held-out rows: the same per-sample mean answer-token cross-entropy, averaged
the same way, as the validation loss the training loop reports. A validation
loss well below this number is learning that uses the context; near it, the
model has learnt the answers' vocabulary and little else.
"""

from __future__ import annotations

import math
from collections import Counter

from irgpt.train.loss import IGNORE_INDEX


def answer_tokens(collator, conversations: list) -> list[int]:
    """The token ids the loss scores for one sample (its answer labels)."""
    enc = collator.encode({"sample_id": "baseline", "conversations": conversations})
    return [t for t in enc.labels[1:] if t != IGNORE_INDEX]


def unigram_loss(collator, train_conversations: list, held_out_conversations: list) -> float:
    """Mean per-sample unigram CE of the held-out answers (see module doc); NaN without held-out answers."""
    counts = Counter(t for conv in train_conversations for t in answer_tokens(collator, conv))
    total, vocab = sum(counts.values()), len(collator.tokenizer)
    per_sample = []
    for conv in held_out_conversations:
        tokens = answer_tokens(collator, conv)
        if tokens:
            per_sample.append(-sum(math.log((counts[t] + 1) / (total + vocab)) for t in tokens) / len(tokens))
    return sum(per_sample) / len(per_sample) if per_sample else math.nan
