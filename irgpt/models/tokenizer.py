"""The tiny model's tokenizer, and the prompt format shared by training and evaluation.

`train_tokenizer(texts)` trains a byte-level BPE with `tokenizers` on a local
text corpus (the synthetic conversations) and wraps it as a
`transformers.PreTrainedTokenizerFast`; `save_pretrained` / `load_tokenizer`
round-trip it. Byte-level means every input byte has a token (the 256-symbol
initial alphabet), so unseen text (other scripts, emoji) never fails and never
maps to `<unk>`.

Single tokens (never split by BPE):
- special: `<pad>` `<unk>` `<s>` `</s>` `<image>` (`skip_special_tokens` drops them);
- answer-format tags (docs/method.md benchmark table): `<num>` `</num>` `<box>`
  `</box>` `<ref>` `</ref>` `<pos>` `</pos>`; added as ordinary (non-special)
  tokens so `decode(..., skip_special_tokens=True)` keeps them for parsing.

Prompt format (`prompt_format: irgpt`, docs/training.md), one sample:

    <s>USER: <image>\\n{question} ASSISTANT: {answer}</s>

and for more turns `USER: {q2} ASSISTANT: {a2}</s>` follows. The loss covers
the ` {answer}</s>` pieces only. The same format is stored as the tokenizer's
chat template, so `apply_chat_template` renders it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from irgpt.errors import CommandError

PAD, UNK, BOS, EOS, IMAGE = "<pad>", "<unk>", "<s>", "</s>", "<image>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, IMAGE)
"""Ids 0..4 in this order in a tokenizer made by `train_tokenizer`."""
ANSWER_TAGS = ("<num>", "</num>", "<box>", "</box>", "<ref>", "</ref>", "<pos>", "</pos>")
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")
"""Chat-template turn ends of the common families (ChatML, Llama 3, Phi, Gemma): an
answer that ends with one is finished even where the tokenizer's eos is another token."""

USER_PREFIX = "USER: "
ASSISTANT_SUFFIX = " ASSISTANT:"
ANSWER_PREFIX = " "

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}USER: {{ m['content'] }} ASSISTANT:"
    "{% else %} {{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)
"""The irgpt format as a Jinja chat template (a user turn already ends with
` ASSISTANT:`, so `add_generation_prompt` adds nothing)."""


def special_tokens(tokenizer) -> set[str]:
    """Every special token string: the named ones and every added token marked special
    (transformers' `all_special_tokens` leaves the latter out)."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return set(tokenizer.all_special_tokens) | {getattr(t, "content", str(t)) for t in added.values()
                                                if getattr(t, "special", False)}


def conversation_segments(conversations: list[dict], bos: str = BOS, eos: str = EOS) -> list[tuple[str, bool]]:
    """The irgpt prompt format as (text, is_answer) pieces, in order.

    Human turns become `USER: {value} ASSISTANT:` (the first one preceded by
    `bos`), gpt turns ` {value}{eos}`. `is_answer` marks the pieces the loss
    covers. Turns with another `from` raise CommandError.
    """
    segments: list[tuple[str, bool]] = []
    for i, turn in enumerate(conversations):
        role, value = turn.get("from"), turn.get("value") or ""
        if role == "human":
            segments.append(((bos if i == 0 else "") + USER_PREFIX + value + ASSISTANT_SUFFIX, False))
        elif role == "gpt":
            segments.append((ANSWER_PREFIX + value + eos, True))
        else:
            raise CommandError(f"conversation turn {i}: 'from' must be 'human' or 'gpt', got {role!r}")
    return segments


def corpus_texts(conversations: Iterable[list[dict]]) -> Iterator[str]:
    """Training text for the tokenizer: each conversation in the prompt format."""
    for conv in conversations:
        yield "".join(text for text, _ in conversation_segments(conv))


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 2):
    """Train a byte-level BPE on `texts` and wrap it for transformers.

    `vocab_size` counts the 256 byte symbols, the special tokens and the
    merges; a small corpus may end with fewer tokens (use `len(tokenizer)` for
    the model's vocabulary). Deterministic for the same texts.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    min_vocab = 256 + len(SPECIAL_TOKENS) + len(ANSWER_TAGS)
    if vocab_size < min_vocab:
        raise CommandError(f"tokenizer vocab_size must be >= {min_vocab} (bytes + special tokens), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(ANSWER_TAGS),
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in ANSWER_TAGS])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE},
        padding_side="right",
        model_max_length=4096,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def load_tokenizer(path: str | Path, trust_remote_code: bool = False):
    """A tokenizer saved with `save_pretrained` (or a checkpoint's), offline."""
    from transformers import AutoTokenizer

    if not Path(path).is_dir():
        raise CommandError(f"tokenizer directory not found: {path}")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)


def synthetic_corpus(n: int = 200, seed: int = 0) -> list[str]:
    """A small deterministic corpus in the benchmark's answer formats (tests, demos)."""
    import random

    rng = random.Random(seed)
    objects = ["person", "car", "bicycle", "dog", "truck", "bus", "tree", "building"]
    scenes = ["road", "forest", "parking lot", "street", "field", "harbour"]
    convs = []
    for _ in range(n):
        a, b = rng.sample(objects, 2)
        kind = rng.randrange(5)
        if kind == 0:
            q, ans = "Describe the infrared image.", f"A thermal image of a {a} near a {b} on a {rng.choice(scenes)}."
        elif kind == 1:
            opts = rng.sample(objects, 4)
            q = "What is the object in the picture?\n" + " ".join(f"({'ABCD'[i]}) {o}" for i, o in enumerate(opts))
            ans = f"(B) {opts[1]}"
        elif kind == 2:
            x, y = rng.randrange(500), rng.randrange(500)
            q, ans = f"Where is the {a}?", f"The target bounding box is <box>[[{x}, {y}, {x + 20}, {y + 30}]]</box>."
        elif kind == 3:
            q, ans = f"How many {a}s are there?", f"<num>{rng.randrange(100)}</num>"
        else:
            q = f"Find every {a}."
            ans = f"<ref>{a}</ref> at <pos>[({rng.randrange(1000)}, {rng.randrange(1000)})]</pos>"
        convs.append([{"from": "human", "value": "<image>\n" + q}, {"from": "gpt", "value": ans}])
    return list(corpus_texts(convs))
