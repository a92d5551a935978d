"""Samples -> model tensors, for both stages (caption pairs in stage 1, instructions in stage 2).

A sample is a dict with `image` (PNG/JPEG bytes; or `image_path`),
`conversations` ([{from: human|gpt, value}], the human value starting with
`<image>\\n`), `weight` (Eq. 5, default 1), `tier` (default 0), optional
`pad` (True for the filler samples that even out the last global batch) and
optional `sample_id` (for messages).

The batch (right-padded to the longest sequence):
    input_ids       long [B, T]   the `<image>` placeholder expanded to
                                  `spec.num_image_tokens` image tokens
    attention_mask  long [B, T]
    labels          long [B, T]   answer (gpt) tokens; -100 on the prompt,
                                  the image tokens and padding
    pixel_values    float [B, 3, S, S]; for Qwen2-VL [B * patches, 3 * 2 * 14 * 14]
                                  with `image_grid_thw` and `mm_token_type_ids`
                                  (`VLMInputSpec.image_inputs`)
    weights         float [B]     Eq. 5 weight (1 when weights are off, 0 for pad samples)
    tiers           long [B]
    pad_mask        bool [B]      True for pad samples (excluded from N in Eq. 6)
    image_flags     long [B, 1]   only for remote-code InternVL (`family == "internvl_chat"`)

Chat templates (`prompt_format: chat_template`): the tokenizer's template
renders growing prefixes of the conversation; each turn adds one segment.
Message content is passed as a string, or as `[{"type": "text", "text": ...}]`
where the template reads only lists (LLaVA-1.5 and InternVL in transformers
ship such templates); the `<image>` placeholder stays in the text and becomes
the image block. An answer segment the template ends with neither the
tokenizer's eos token nor a turn-end special token (`<|im_end|>`, ...) gets the
eos, so the model learns to stop.

Truncation (`max_length`): the sequence is cut at the end, so answers lose
their tail; the prompt of the first turn (which holds the image tokens) is
never cut: if it alone is longer than `max_length`, CommandError. Each
truncated sample is counted (`num_truncated` of `num_samples`, pad samples
not counted) and logged with its id.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from irgpt.errors import CommandError
from irgpt.models.tokenizer import END_OF_TURN_TOKENS, IMAGE, conversation_segments, special_tokens
from irgpt.models.vlm import VLMInputSpec

IGNORE_INDEX = -100
"""The label of a token no loss is taken on (Hugging Face's convention)."""

log = logging.getLogger(__name__)



@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    prompt_length: int
    """Tokens up to the end of the first human turn (never truncated)."""
    truncated_tokens: int = 0


class VLMCollator:
    """Callable collate_fn: `collator(list_of_samples) -> dict of tensors`.

    Counters `num_samples`, `num_truncated` and `num_truncated_tokens` grow
    over the collator's life (`counters()` returns them for logging;
    `reset_counters()` starts again, e.g. per epoch).
    """

    def __init__(self, tokenizer, spec: VLMInputSpec, max_length: int, use_weights: bool = True,
                 pad_to_multiple_of: int | None = None):
        if max_length < spec.num_image_tokens + 2:
            raise CommandError(f"train.max_length={max_length} cannot hold one image "
                               f"({spec.num_image_tokens} image tokens) plus a prompt")
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_length = max_length
        self.use_weights = use_weights
        self.pad_to_multiple_of = pad_to_multiple_of
        self.image_token_id = self._token_id(spec.image_token)
        block = [self.image_token_id] * spec.num_image_tokens
        if spec.image_start:
            block = [self._token_id(spec.image_start)] + block
        if spec.image_end:
            block = block + [self._token_id(spec.image_end)]
        self.image_block = block
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_token_id = int(pad if pad is not None else 0)
        self.content_as_list = spec.prompt_format == "chat_template" and self._template_reads_lists()
        special = special_tokens(tokenizer)
        self.answer_ends = [t for t in (tokenizer.eos_token, *END_OF_TURN_TOKENS)
                            if t and (t == tokenizer.eos_token or t in special)]
        self.reset_counters()

    def _template_reads_lists(self) -> bool:
        """Whether the chat template needs list content (checked once, at start-up)."""
        probe = "IRGPT_PROBE_TEXT"
        for as_list in (False, True):
            content = [{"type": "text", "text": probe}] if as_list else probe
            try:
                text = self.tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                          add_generation_prompt=True)
            except Exception:  # a template that rejects this content form (jinja raises many types)
                continue
            if probe in text:
                return as_list
        raise CommandError("the tokenizer's chat template renders neither string content nor "
                           "[{'type': 'text', 'text': ...}] content of a user message; use prompt format irgpt")

    def _token_id(self, token: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or (tid == self.tokenizer.unk_token_id and token != self.tokenizer.unk_token):
            raise CommandError(f"the tokenizer has no token {token!r} (needed by the model's image input)")
        return int(tid)

    # ------------------------------------------------------------ counters --
    def reset_counters(self) -> None:
        self.num_samples = 0
        self.num_truncated = 0
        self.num_truncated_tokens = 0

    def counters(self) -> dict[str, int]:
        return {"num_samples": self.num_samples, "num_truncated": self.num_truncated,
                "num_truncated_tokens": self.num_truncated_tokens}

    # ------------------------------------------------------------ encoding --
    def _segments(self, conversations: list[dict], with_answers: bool = True) -> list[tuple[str, bool]]:
        tok = self.tokenizer
        if self.spec.prompt_format == "irgpt":
            segs = conversation_segments(conversations, bos=tok.bos_token or "", eos=tok.eos_token or "")
            return segs if with_answers else segs[:1]
        # chat_template: render growing prefixes and keep what each turn adds.
        messages, segs, previous = [], [], ""
        for i, turn in enumerate(conversations):
            role = {"human": "user", "gpt": "assistant"}.get(turn.get("from"))
            if role is None:
                raise CommandError(f"conversation turn {i}: 'from' must be 'human' or 'gpt', got {turn.get('from')!r}")
            if role == "assistant" and not with_answers:
                break
            value = turn.get("value") or ""
            messages.append({"role": role, "content": [{"type": "text", "text": value}] if self.content_as_list
                             else value})
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=role == "user")
            if not text.startswith(previous):
                raise CommandError("the tokenizer's chat template does not render turns as growing prefixes; "
                                   "use the irgpt prompt format")
            added = text[len(previous):]
            previous = text
            if role == "assistant" and tok.eos_token and not any(t in added for t in self.answer_ends):
                added += tok.eos_token  # the template does not end answers: the model must learn to stop
            segs.append((added, role == "assistant"))
            if not with_answers:
                break
        return segs

    def _tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def encode(self, sample: dict, with_answers: bool = True) -> Encoded:
        """Token ids and labels of one sample, not truncated.

        `with_answers=False` gives the generation prompt of the first turn
        (evaluation).
        """
        sid = sample.get("sample_id", "?")
        conversations = list(sample.get("conversations") or [])
        if not conversations or conversations[0].get("from") != "human":
            raise CommandError(f"sample {sid}: conversations must start with a human turn")
        n_images = sum((t.get("value") or "").count(IMAGE) for t in conversations)
        if n_images > 1:
            raise CommandError(f"sample {sid}: {n_images} {IMAGE} placeholders for one image")
        if n_images == 0:  # the schema puts it first; accept rows that left it out
            first = dict(conversations[0])
            first["value"] = f"{IMAGE}\n" + (first.get("value") or "")
            conversations[0] = first
        ids: list[int] = []
        labels: list[int] = []
        prompt_length = 0
        for k, (text, is_answer) in enumerate(self._segments(conversations, with_answers)):
            pieces = text.split(IMAGE)
            for j, piece in enumerate(pieces):
                if j:
                    ids.extend(self.image_block)
                    labels.extend([IGNORE_INDEX] * len(self.image_block))
                piece_ids = self._tokenize(piece)
                ids.extend(piece_ids)
                labels.extend(piece_ids if is_answer else [IGNORE_INDEX] * len(piece_ids))
            if k == 0:
                prompt_length = len(ids)
        return Encoded(ids, labels, prompt_length)

    def _truncate(self, enc: Encoded, sid) -> Encoded:
        if len(enc.input_ids) <= self.max_length:
            return enc
        if enc.prompt_length > self.max_length:
            raise CommandError(
                f"sample {sid}: the prompt alone is {enc.prompt_length} tokens "
                f"({self.spec.num_image_tokens} of them image tokens) > train.max_length={self.max_length}; "
                f"raise train.max_length")
        cut = len(enc.input_ids) - self.max_length
        return Encoded(enc.input_ids[: self.max_length], enc.labels[: self.max_length], enc.prompt_length, cut)

    def _image(self, sample: dict):
        sid = sample.get("sample_id", "?")
        data = sample.get("image")
        try:
            if data is None:
                path = sample.get("image_path")
                if not path:
                    raise CommandError(f"sample {sid}: no image bytes and no image_path")
                data = Path(path).read_bytes()
            return self.spec.image_tensor(data)
        except CommandError:
            raise
        except Exception as exc:  # PIL raises many types for bad bytes
            raise CommandError(f"sample {sid}: cannot decode its image: {exc}") from exc

    # ---------------------------------------------------------------- batch --
    def __call__(self, samples: list[dict]) -> dict:
        import torch

        if not samples:
            raise CommandError("collator got an empty batch")
        encoded, images, weights, tiers, pads = [], [], [], [], []
        for sample in samples:
            sid = sample.get("sample_id", "?")
            is_pad = bool(sample.get("pad", False))
            enc = self._truncate(self.encode(sample), sid)
            if not is_pad:
                self.num_samples += 1
                if enc.truncated_tokens:
                    self.num_truncated += 1
                    self.num_truncated_tokens += enc.truncated_tokens
                    kept = sum(1 for x in enc.labels if x != IGNORE_INDEX)
                    log.warning("sample %s truncated: %d tokens cut at max_length=%d (%d answer tokens kept)",
                                sid, enc.truncated_tokens, self.max_length, kept)
            encoded.append(enc)
            images.append(self._image(sample))
            w = sample.get("weight")
            w = 1.0 if w is None else float(w)
            if not math.isfinite(w) or w < 0:
                raise CommandError(f"sample {sid}: weight must be a finite number >= 0, got {w}")
            weights.append(0.0 if is_pad else (w if self.use_weights else 1.0))
            tiers.append(int(sample.get("tier", 0) or 0))
            pads.append(is_pad)
        length = max(len(e.input_ids) for e in encoded)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            length = -(-length // m) * m
        batch_size = len(encoded)
        input_ids = torch.full((batch_size, length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch_size, length), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((batch_size, length), dtype=torch.long)
        for i, enc in enumerate(encoded):
            n = len(enc.input_ids)
            input_ids[i, :n] = torch.tensor(enc.input_ids, dtype=torch.long)
            labels[i, :n] = torch.tensor(enc.labels, dtype=torch.long)
            attention[i, :n] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": labels,
            **self.spec.image_inputs(images, input_ids, self.image_token_id),
            "weights": torch.tensor(weights, dtype=torch.float32),
            "tiers": torch.tensor(tiers, dtype=torch.long),
            "pad_mask": torch.tensor(pads, dtype=torch.bool),
        }


MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "pixel_values")
FAMILY_INPUT_KEYS = ("image_flags", "image_grid_thw", "mm_token_type_ids")
"""The batch keys the model's forward takes (plus those of `FAMILY_INPUT_KEYS`
present, `VLMInputSpec.image_inputs`); `labels`, `weights`, `tiers`,
`pad_mask` are for the loss and logging."""


def model_inputs(batch: dict, dtype=None) -> dict:
    """The model's forward kwargs from a batch; `pixel_values` cast to `dtype` (e.g. bf16)."""
    out = {k: batch[k] for k in MODEL_INPUT_KEYS}
    out.update({k: batch[k] for k in FAMILY_INPUT_KEYS if k in batch})
    if dtype is not None:
        out["pixel_values"] = out["pixel_values"].to(dtype)
    return out
