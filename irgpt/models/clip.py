"""The Lesson 2 CLIP model: build (random init or a local checkpoint), preprocess, tokenize.

`scoring.lesson2.model` is an open_clip architecture name, or a local Hugging
Face CLIP directory (`irgpt.models.hf_clip`: same interface, its own weights).

Everything here is offline: `create_clip` never downloads. `pretrained` is
either None (seeded random init from the architecture config, e.g. the tiny
`irgpt-tiny-clip` shipped in `irgpt/models/configs/`) or a LOCAL checkpoint
file (`.pt`, `.bin`, `.safetensors`) for any open_clip architecture name,
which open_clip 3.3 accepts as `pretrained=` when `os.path.isfile(path)`
(open_clip/factory.py `create_model`; a string that is not a file would be
looked up as a download tag, so we check the file first and refuse otherwise).

Images. Infrared rows are one-channel (`L`); the model keeps open_clip's
3-channel stem and the grey channel is replicated three times
(**Decision**: a pretrained RGB CLIP checkpoint then loads unchanged, and the
tiny model pays only a 3x larger first convolution). Pixels are scaled to
[0, 1], resized to the model's image size if they are not already (bilinear;
callers should decode at that size with `irgpt.data.images.decode_to_array`
so every scorer shares one resize filter) and normalised with the model's
`preprocess_cfg` mean / std (OpenAI CLIP's, open_clip's default).

Captions. Tokens come from `open_clip.get_tokenizer(name)` (SimpleTokenizer,
vocabulary shipped in the open_clip wheel). Captions longer than the context
are truncated (the last kept token becomes end-of-text);
`tokenize_with_truncation` returns a mask of those so callers can count them.
An empty caption (nothing but whitespace) is an error: the function raises
`ValueError` naming the indices; callers reject those rows first with
`empty_caption_mask`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from irgpt import storage
from irgpt.errors import CommandError
from irgpt.models.weights import weights_hash  # noqa: F401  (re-exported)

CONFIG_DIR = Path(__file__).parent / "configs"
TINY_CLIP = "irgpt-tiny-clip"
PRETRAINED_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")

_registered = False


def register_configs() -> None:
    """Add the package's open_clip configs (`irgpt-tiny-clip`, ...) once per process."""
    global _registered
    if _registered:
        return
    import open_clip

    for path in sorted(CONFIG_DIR.glob("*.json")):
        open_clip.add_model_config(path)
    _registered = True


class ClipPreprocess:
    """uint8 images (B, H, W) grey or (B, H, W, 3) RGB -> normalised float (B, 3, S, S).

    A plain picklable object (Ray ships it to workers and actors).
    """

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float]):
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        if x.dtype != torch.uint8:
            raise TypeError(f"ClipPreprocess expects uint8 images, got {x.dtype}")
        if x.ndim == 3:  # (B, H, W) grey -> replicate to 3 channels (module doc)
            x = x.unsqueeze(1).expand(-1, 3, -1, -1)
        elif x.ndim == 4 and x.shape[-1] == 3:
            x = x.permute(0, 3, 1, 2)
        else:
            raise ValueError(f"images must be (B, H, W) or (B, H, W, 3), got {tuple(x.shape)}")
        x = x.float().div_(255.0)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous()


def image_size(model: torch.nn.Module) -> int:
    """The square input side of `model` (images should be decoded at this size)."""
    size = model.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def make_preprocess(model: torch.nn.Module) -> ClipPreprocess:
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    return ClipPreprocess(image_size(model), cfg.get("mean", OPENAI_DATASET_MEAN), cfg.get("std", OPENAI_DATASET_STD))


def _check_pretrained(pretrained: str) -> str:
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise CommandError(
            f"scoring.lesson2.pretrained: checkpoint file not found: {pretrained} "
            "(a local .pt/.bin/.safetensors file; downloads are never attempted)"
        )
    if path.suffix not in PRETRAINED_SUFFIXES:
        raise CommandError(f"scoring.lesson2.pretrained: {pretrained}: expected one of {PRETRAINED_SUFFIXES}")
    return str(path.resolve())


def _local(location: str | None) -> str | None:
    """An object-storage URI (a CLIP directory or checkpoint file) as this node's cached copy."""
    return str(storage.fetch(location)) if storage.is_uri(location) else location


def check_clip_source(name: str, pretrained: str | None) -> str | None:
    """What `create_clip` checks before building anything (the pipeline's dry run too): a
    Hugging Face CLIP directory with no `pretrained` beside it, or an open_clip architecture
    with a local checkpoint file. Returns the resolved checkpoint path (None: random init or
    the directory's own weights)."""
    import open_clip

    from irgpt.models.hf_clip import is_hf_clip_dir

    name, pretrained = _local(name), _local(pretrained)
    if is_hf_clip_dir(name):
        if pretrained is not None:
            raise CommandError("scoring.lesson2.pretrained must be null when scoring.lesson2.model is a Hugging "
                               f"Face CLIP directory ({name} holds the weights)")
        return None
    register_configs()
    if name not in open_clip.list_models():
        raise CommandError(f"scoring.lesson2.model: {name!r} is neither an open_clip architecture nor a "
                           "Hugging Face CLIP directory (config.json with model_type clip)")
    return _check_pretrained(pretrained) if pretrained is not None else None


def create_clip(name: str = TINY_CLIP, pretrained: str | None = None, seed: int = 0):
    """Build an open_clip model offline -> (model in eval mode, preprocess_fn, tokenizer).

    `pretrained=None`: random init from the architecture config, seeded
    (`torch.manual_seed(seed)` right before construction, so the same seed
    gives the same `weights_hash`). Otherwise a local checkpoint file.
    Raises `CommandError` for an unknown name or a missing file.
    """
    import open_clip

    from irgpt.models.hf_clip import create_hf_clip, is_hf_clip_dir

    name, pretrained = _local(name), _local(pretrained)
    path = check_clip_source(name, pretrained)
    if is_hf_clip_dir(name):  # a local Hugging Face CLIP directory: its own weights, tokenizer, processor
        model, tokenizer = create_hf_clip(name, seed)
        return model, make_preprocess(model), tokenizer
    with torch.random.fork_rng(devices=[]), _quiet(logging.WARNING if path is None else logging.INFO):
        torch.manual_seed(seed)
        # pretrained_text/image=False: never fetch HF / timm tower weights either.
        model = open_clip.create_model(name, pretrained=path, pretrained_text=False, pretrained_image=False)
        tokenizer = open_clip.get_tokenizer(name)
    model.eval()
    return model, make_preprocess(model), tokenizer


class _BelowLevelFrom(logging.Filter):
    """Drops records under `level` logged from the files of one package."""

    def __init__(self, package_dir: str, level: int):
        super().__init__()
        self.package_dir, self.level = package_dir, level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or not record.pathname.startswith(self.package_dir)


@contextlib.contextmanager
def _quiet(level: int):
    """open_clip logs every build step on the root logger (INFO inside Ray workers) and
    warns that a random init is random (we say so once, in the scorer's own words:
    `untrained_warning`). While it builds, records under `level` from open_clip's own
    files are dropped; everything else is logged as usual (no process-wide switch)."""
    import open_clip

    quiet = _BelowLevelFrom(str(Path(open_clip.__file__).parent), level + 1)
    logging.root.addFilter(quiet)
    try:
        yield
    finally:
        logging.root.removeFilter(quiet)


def context_length(model: torch.nn.Module, default: int = 77) -> int:
    return int(getattr(model, "context_length", default) or default)


def empty_caption_mask(texts: Sequence[str]) -> np.ndarray:
    """True where a caption is empty / whitespace-only (callers reject these rows)."""
    return np.array([not (t or "").strip() for t in texts], dtype=bool)


def tokenize_with_truncation(tokenizer, texts: Sequence[str], context_length: int) -> tuple[torch.Tensor, np.ndarray]:
    """Tokens (N, context_length) int64 and a bool mask of captions that were truncated.

    SimpleTokenizer (open_clip's default): a caption is truncated when
    start + its BPE tokens + end exceed the context. Other tokenizers (HF):
    truncated when tokenising with one more position fills that position.
    Raises ValueError for empty captions (see `empty_caption_mask`).
    """
    texts = list(texts)
    empty = empty_caption_mask(texts)
    if empty.any():
        raise ValueError(f"empty captions at indices {np.flatnonzero(empty).tolist()[:20]}")
    tokens = tokenizer(texts, context_length=context_length)
    if hasattr(tokenizer, "encode") and hasattr(tokenizer, "sot_token_id") and getattr(tokenizer, "reduction_fn", None) is None:
        lengths = np.array([len(tokenizer.encode(t)) + 2 for t in texts])
        truncated = lengths > context_length
    else:
        longer = tokenizer(texts, context_length=context_length + 1)
        pad = getattr(getattr(tokenizer, "tokenizer", None), "pad_token_id", 0) or 0
        truncated = (longer[:, context_length] != pad).numpy()
    return tokens.long(), truncated


# ------------------------------------------------------------- provenance ----
def save_clip(model: torch.nn.Module, path: str | Path) -> None:
    """Write the state dict (CPU tensors) atomically to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: str | Path) -> dict:
    path = storage.fetch(path)
    if not path.is_file():
        raise CommandError(f"CLIP checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_clip(name: str, path: str | Path):
    """A model saved by `save_clip` -> (model in eval mode, preprocess_fn, tokenizer)."""
    model, preprocess, tokenizer = create_clip(name, pretrained=None, seed=0)
    model.load_state_dict(load_state(path), strict=True)
    model.eval()
    return model, preprocess, tokenizer


# ------------------------------------------------------------ caption pairs ----
def prepare_pairs(rows: list[dict], size: int, tokenizer, context_length: int):
    """Caption rows -> (images uint8 (N, size, size), tokens (N, L), ids, truncated mask, rejects).

    The caption is the first gpt turn; the image is `image` bytes, else
    `image_path`, decoded grey (`L`) at `size` with the shared resize filter.
    Rows with an empty caption or an image that does not decode come back as
    rejects `{"sample_id", "reason"}` instead.
    """
    from irgpt.data.images import ImageRejected, decode_to_array
    from irgpt.data.schema import answer_text

    images, captions, ids, rejects = [], [], [], []
    for row in rows:
        sid = row["sample_id"]
        caption = answer_text(row.get("conversations") or [])
        if not caption.strip():
            rejects.append({"sample_id": sid, "reason": "empty caption"})
            continue
        source = row.get("image") if row.get("image") is not None else row.get("image_path")
        if source is None:
            rejects.append({"sample_id": sid, "reason": "no image bytes or path"})
            continue
        try:
            images.append(decode_to_array(source, size=size, mode="L"))
        except ImageRejected as exc:
            rejects.append({"sample_id": sid, "reason": exc.reason})
            continue
        captions.append(caption)
        ids.append(sid)
    if not ids:
        return (np.zeros((0, size, size), np.uint8), torch.zeros(0, context_length, dtype=torch.long), [],
                np.zeros(0, bool), rejects)
    tokens, truncated = tokenize_with_truncation(tokenizer, captions, context_length)
    return np.stack(images), tokens, ids, truncated, rejects
