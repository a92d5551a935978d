"""A Hugging Face CLIP directory as the Lesson 2 model, behind open_clip's interface.

`scoring.lesson2.model` may name a local directory holding a `CLIPModel`
(`save_pretrained`: `config.json` with `model_type: clip`, the weights), its
tokenizer and its image processor (`preprocessor_config.json`), read with
`local_files_only=True`. `HFClip` gives it the few things the scorer and the
warm-up use of an open_clip model, so both back-ends run the same code:

- `encode_image(x, normalize)`, `encode_text(tokens, normalize)`: the projected
  embeddings (`get_image_features` / `get_text_features`; the attention mask
  is `tokens != pad`), L2-normalised when asked;
- `forward(images, tokens)` -> (image features, text features, logit scale),
  normalised, as `open_clip.ClipLoss` takes them;
- `logit_scale` (the model's own parameter), `context_length`, and
  `visual.image_size` / `visual.preprocess_cfg` (the processor's mean and std).

`HFClipTokenizer(texts, context_length)` pads to the context with the
tokenizer's pad token (truncating longer captions) and exposes `.tokenizer`,
so truncation is counted the way `clip.tokenize_with_truncation` does for any
non-open_clip tokenizer. Infrared images are grey, replicated to three
channels as for open_clip.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from irgpt.errors import CommandError


def is_hf_clip_dir(name: str | Path) -> bool:
    """A directory whose `config.json` says `model_type: clip`."""
    config = Path(name) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "clip"
    except (OSError, ValueError):
        return False


def describe_hf_clip(directory: str | Path, names: list[str] | None = None) -> str:
    """What a Hugging Face CLIP directory holds, checked without reading its weights (the
    pipeline's dry run): the config, a tokenizer with a pad token, the processor's mean/std.
    `names`: the directory's file names where they differ from what is on disk (a copy of an
    object-storage directory made without its weights)."""
    from transformers import AutoConfig

    directory = Path(directory)
    names = names if names is not None else [p.name for p in directory.iterdir()]
    config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
    tokenizer = HFClipTokenizer(directory).tokenizer
    processor = directory / "preprocessor_config.json"
    if not processor.is_file():
        raise CommandError(f"{directory}: no preprocessor_config.json (the image mean/std the weights expect)")
    weights = [n for n in names if "/" not in n and n.endswith((".safetensors", ".bin"))]
    if not weights:
        raise CommandError(f"{directory}: no *.safetensors or *.bin weights")
    vc, tc = config.vision_config, config.text_config
    return (f"Hugging Face CLIP: vision {vc.image_size} px / patch {vc.patch_size}, text context "
            f"{tc.max_position_embeddings}, vocabulary {len(tokenizer)}, weights {', '.join(sorted(weights))}")


class HFClipTokenizer:
    """Captions -> LongTensor (N, context_length), padded with the pad token (picklable)."""

    def __init__(self, directory: str | Path):
        from transformers import AutoTokenizer

        self.directory = str(directory)
        self.tokenizer = AutoTokenizer.from_pretrained(self.directory, local_files_only=True)
        if self.tokenizer.pad_token_id is None:
            raise CommandError(f"{directory}: the tokenizer has no pad token; CLIP captions are padded to the context")

    def __call__(self, texts, context_length: int = 77) -> torch.Tensor:
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=context_length,
                             return_tensors="pt")
        return enc["input_ids"].long()


class HFClip(torch.nn.Module):
    """open_clip's interface over a `transformers.CLIPModel` (module doc)."""

    def __init__(self, model, mean, std, pad_token_id: int):
        super().__init__()
        self.model = model
        self.pad_token_id = int(pad_token_id)
        size = model.config.vision_config.image_size
        self.visual = SimpleNamespace(image_size=size, preprocess_cfg={"mean": tuple(mean), "std": tuple(std)})
        self.context_length = int(model.config.text_config.max_position_embeddings)

    @property
    def logit_scale(self) -> torch.nn.Parameter:
        return self.model.logit_scale

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        out = self.model.get_image_features(pixel_values=images)
        out = getattr(out, "pooler_output", out)  # transformers 5 may return a model output
        return F.normalize(out, dim=-1) if normalize else out

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        out = self.model.get_text_features(input_ids=tokens, attention_mask=(tokens != self.pad_token_id).long())
        out = getattr(out, "pooler_output", out)
        return F.normalize(out, dim=-1) if normalize else out

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        return self.encode_image(images, normalize=True), self.encode_text(tokens, normalize=True), self.logit_scale.exp()


def create_hf_clip(directory: str | Path, seed: int = 0):
    """(HFClip in eval mode, tokenizer) from a local Hugging Face CLIP directory."""
    from transformers import CLIPImageProcessor, CLIPModel

    directory = Path(directory)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # only matters for weights the directory lacks
            model = CLIPModel.from_pretrained(str(directory), local_files_only=True)
        processor = CLIPImageProcessor.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CommandError(f"scoring.lesson2.model: {directory}: not a loadable Hugging Face CLIP directory "
                           f"({str(exc).splitlines()[0][:200]})") from None
    tokenizer = HFClipTokenizer(directory)
    wrapped = HFClip(model, processor.image_mean, processor.image_std, tokenizer.tokenizer.pad_token_id)
    return wrapped.eval(), tokenizer
