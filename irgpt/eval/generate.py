"""Greedy generation for the benchmark: prompt-only encodings, left padding, answer decoding.

`BenchmarkGenerator` loads a model once and answers rows in batches of
`eval.batch_size` (`irgpt.eval.run` drives it on Ray Data actors). Only the new
tokens are decoded, cut at the first end-of-sequence token, with every special
token dropped except the answer-format tags the parsers need. A row whose image
or prompt cannot be built, or whose generation fails (also when retried alone),
gets an empty answer and an `error`: it is scored as unparseable, never dropped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from irgpt.errors import CommandError
from irgpt.eval.tasks import BENCHMARK_TASKS
from irgpt.models.tokenizer import (  # answer tags are kept when decoding, even if marked special
    ANSWER_TAGS,
    END_OF_TURN_TOKENS,
    special_tokens,
)
from irgpt.ray_utils import log0

"""Chat-template turn ends that also stop generation when the tokenizer has them as special tokens."""
_ERROR_CHARS = 300
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


# ----------------------------------------------------------- generation ----
def decode_answer(tokenizer, token_ids: Iterable[int], stop_ids: Iterable[int], drop_ids: Iterable[int]) -> str:
    """Generated ids -> answer text: cut at the first stop id, drop `drop_ids`, keep the rest.

    Decodes with `skip_special_tokens=False`, so special tokens the caller
    wants kept (the answer tags) survive; `drop_ids` names those to remove
    (pad, bos, eos, image, chat markers).
    """
    stop, drop = set(stop_ids), set(drop_ids)
    kept = []
    for t in token_ids:
        t = int(t)
        if t in stop:
            break
        if t not in drop:
            kept.append(t)
    if not kept:
        return ""
    return tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False).strip()


def _token_id(tokenizer, token: str) -> int | None:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or (tid == tokenizer.unk_token_id and token != tokenizer.unk_token):
        return None
    return int(tid)


def _ids(value) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return [int(v) for v in value if v is not None]
    return [int(value)]


def stop_and_drop_ids(tokenizer, generation_eos=None, pad_id: int | None = None) -> tuple[list[int], list[int]]:
    """(ids that end an answer, ids removed from it) for `decode_answer`.

    Stop: the model's generation-config eos (an id or a list), the
    tokenizer's eos, and the chat turn ends of `END_OF_TURN_TOKENS` the
    tokenizer has as special tokens. Drop: every special token (pad, bos,
    eos, image, chat markers; the named ones and every added token marked
    special) and `pad_id`, except the answer tags
    (`ANSWER_TAGS`), which stay even where the tokenizer marks them special.
    """
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    added_special = {int(i): getattr(tok, "content", str(tok))
                     for i, tok in added.items() if getattr(tok, "special", False)}
    special = special_tokens(tokenizer)
    stops = _ids(generation_eos) + _ids(tokenizer.eos_token_id)
    for token in END_OF_TURN_TOKENS:
        tid = _token_id(tokenizer, token) if token in special else None
        if tid is not None:
            stops.append(tid)
    keep = {t for t in (_token_id(tokenizer, tag) for tag in ANSWER_TAGS) if t is not None}
    drop = set(_ids(tokenizer.all_special_ids)) | set(_ids(pad_id)) | set(added_special)
    return sorted(set(stops)), sorted(drop - keep)


def _error(exc: BaseException) -> str:
    """A short, reproducible message (object addresses such as PIL's `<BytesIO at 0x...>` removed)."""
    return _ADDRESS.sub("", f"{type(exc).__name__}: {exc}")[:_ERROR_CHARS]


class BenchmarkGenerator:
    """A loaded VLM that answers benchmark prompts greedily, in left-padded batches.

    Built once per actor; usable in-process too (tests, Tune trials).
    `generate(items)` takes dicts with `sample_id`, `task`, `conversations`
    and `image` (bytes) or `image_path`, and returns one
    `{"id", "answer", "error"}` per item, in input order.
    """

    def __init__(self, model_dir: str, *, batch_size: int = 16, max_new_tokens: int = 48,
                 max_length: int = 256, trust_remote_code: bool = False, precision: str = "auto",
                 use_gpu: bool = False, log_prefix: str = "[eval]"):
        import torch

        from irgpt.models.collator import VLMCollator
        from irgpt.models.vlm import load_vlm

        if batch_size < 1 or max_new_tokens < 1:
            raise CommandError("eval.batch_size and eval.max_new_tokens must be >= 1")
        if use_gpu and not torch.cuda.is_available():
            raise CommandError("eval.num_gpus > 0 but this worker sees no CUDA device")
        self.device = torch.device("cuda" if use_gpu else "cpu")
        dtype = None
        if precision == "bf16" or (precision == "auto" and use_gpu):
            dtype = torch.bfloat16
        loaded = load_vlm(model_dir, trust_remote_code=trust_remote_code, dtype=dtype)
        self.model = loaded.model.to(self.device).eval()
        self.tokenizer = loaded.tokenizer
        self.spec = loaded.spec
        self.dtype = next(self.model.parameters()).dtype
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.log_prefix = log_prefix
        self.collator = VLMCollator(self.tokenizer, self.spec, max(max_length, self.spec.num_image_tokens + 2),
                                    use_weights=False)
        self.pad_id = self.collator.pad_token_id
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        self.stop_ids, self.drop_ids = stop_and_drop_ids(self.tokenizer, gen_eos, self.pad_id)

    # ------------------------------------------------------------ inputs --
    def _image(self, item: dict):
        data = item.get("image")
        if data is None:
            path = item.get("image_path")
            if not path:
                raise CommandError("no image bytes and no image_path")
            data = Path(path).read_bytes()
        return self.spec.image_tensor(data)

    def _prepare(self, item: dict) -> tuple[list[int], object]:
        conversations = [dict(t) for t in (item.get("conversations") or [])]
        enc = self.collator.encode({"sample_id": item.get("sample_id"), "conversations": conversations},
                                   with_answers=False)
        return enc.input_ids, self._image(item)

    def _batch(self, prepared: list[tuple[list[int], object]]) -> tuple[dict, int]:
        import torch

        from irgpt.models.collator import model_inputs

        length = max(len(ids) for ids, _ in prepared)
        input_ids = torch.full((len(prepared), length), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prepared), length), dtype=torch.long)
        for i, (ids, _) in enumerate(prepared):  # LEFT padding: every prompt ends at `length`
            input_ids[i, length - len(ids):] = torch.tensor(ids, dtype=torch.long)
            attention[i, length - len(ids):] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention,
                 **self.spec.image_inputs([img for _, img in prepared], input_ids, self.collator.image_token_id)}
        inputs = model_inputs(batch, dtype=self.dtype)
        inputs.pop("image_flags", None)  # a forward() input; generate() does not take it
        return {k: v.to(self.device) for k, v in inputs.items()}, length

    def _generate(self, prepared: list[tuple[list[int], object]]) -> list[str]:
        import torch

        inputs, length = self._batch(prepared)
        with torch.inference_mode():
            out = self.model.generate(**inputs, do_sample=False, num_beams=1,
                                      max_new_tokens=self.max_new_tokens,
                                      pad_token_id=self.pad_id, eos_token_id=self.stop_ids or None)
        out = out.sequences if hasattr(out, "sequences") else out
        out = out.cpu()
        prompt = inputs["input_ids"].cpu()
        # LLaVA-style generate returns prompt + new tokens; embedding-based ones
        # (remote-code InternVL) return the new tokens only.
        with_prompt = out.shape[1] >= length and torch.equal(out[:, :length], prompt)
        new = out[:, length:] if with_prompt else out
        return [decode_answer(self.tokenizer, row.tolist(), self.stop_ids, self.drop_ids) for row in new]

    # ------------------------------------------------------------ public --
    def generate(self, items: Sequence[dict], label: str = "") -> list[dict]:
        """Answers for `items` (input order); failures give `answer: ""` and an `error`."""
        results: list[dict | None] = [None] * len(items)
        ready: list[tuple[int, list[int], object]] = []
        for i, item in enumerate(items):
            sid = str(item.get("sample_id"))
            try:
                ids, image = self._prepare(item)
            except Exception as exc:  # bad image bytes, bad conversation: keep the row, unanswered
                results[i] = {"id": sid, "answer": "", "error": _error(exc)}
                continue
            ready.append((i, ids, image))
        order = {t: k for k, t in enumerate(BENCHMARK_TASKS)}
        # Similar prompts together: less padding, and answers of one format end together.
        ready.sort(key=lambda r: (order.get(items[r[0]].get("task"), len(order)), len(r[1]),
                                  str(items[r[0]].get("sample_id"))))
        groups = [ready[k:k + self.batch_size] for k in range(0, len(ready), self.batch_size)]
        for g, group in enumerate(groups):
            t0 = time.perf_counter()
            answers = self._generate_group(group)
            for (i, _, _), (answer, error) in zip(group, answers):
                results[i] = {"id": str(items[i].get("sample_id")), "answer": answer, "error": error}
            dt = time.perf_counter() - t0
            log0(f"{self.log_prefix}{label} batch {g + 1}/{len(groups)}: {len(group)} rows in {dt:.1f}s "
                 f"({len(group) / max(dt, 1e-9):.2f} rows/s)")
        return results  # type: ignore[return-value]

    def _generate_group(self, group) -> list[tuple[str, str]]:
        try:
            return [(a, "") for a in self._generate([(ids, img) for _, ids, img in group])]
        except Exception as exc:
            if len(group) == 1:
                return [("", _error(exc))]
            log0(f"{self.log_prefix} batch of {len(group)} failed ({_error(exc)}); retrying row by row")
            return [self._generate_group([one])[0] for one in group]
