"""VLM builders and loaders: the tiny LLaVA-style model, real checkpoints by local path.

Everything here works offline: the tiny model is built from configs (no
download), real checkpoints load with `local_files_only=True`, and
`trust_remote_code` is only ever the caller's explicit choice (default off).

What a model needs from the data side is one `VLMInputSpec` (image size,
mean/std, the image placeholder token and how many copies of it one image
expands into, the prompt format). `build_tiny_vlm` returns it with the model;
`load_vlm` reads it back (`irgpt_vlm.json`) or derives it from the config of
a checkpoint this project did not write.

Infrared images are grayscale: the transform replicates the one channel to
the 3 channels the vision encoders expect (RGB images stay RGB), then
normalises each channel with the encoder's fixed mean/std.

Families (`VLMInputSpec.family`): `llava` (LLaVA-1.5 and the tiny model:
one [3, S, S] tensor per image), `internvl` (transformers-native InternVL:
one 448 tile between `<img>`/`</img>`), `internvl_chat` (remote-code
InternVL, which also takes `image_flags`), `qwen2_vl` (Qwen2-VL and
Qwen2.5-VL: the image as a flat sequence of 14 px patches plus its
`image_grid_thw`, and `mm_token_type_ids` for the multimodal RoPE).
"""

from __future__ import annotations

import copy
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from irgpt import storage
from irgpt.errors import CommandError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPEC_FILE = "irgpt_vlm.json"
ADAPTER_DIR = "adapter"

TINY_PATCH = 8
TINY_VOCAB_SIZE = 1024
"""The tokenizer size `train_tokenizer` aims at (dry-run estimates of the tiny model)."""


@dataclass(frozen=True)
class VLMInputSpec:
    """How samples become model inputs (the collator's contract with the model)."""

    image_size: int
    """Square side the image is resized to."""
    num_image_tokens: int
    """Copies of `image_token` one image expands into: the number of visual
    features the model scatters into the sequence."""
    image_token: str
    """The token whose embeddings the model replaces by visual features."""
    image_start: str | None = None
    """Token placed before the image tokens (InternVL `<img>`), or None."""
    image_end: str | None = None
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    prompt_format: Literal["irgpt", "chat_template"] = "irgpt"
    """`irgpt`: `<s>USER: <image>\\n{q} ASSISTANT: {a}</s>` (irgpt/models/tokenizer.py);
    `chat_template`: the tokenizer's own chat template (real checkpoints)."""
    family: Literal["llava", "internvl", "internvl_chat", "qwen2_vl"] = "llava"
    """`internvl_chat` = remote-code InternVL (its forward also takes `image_flags`);
    `qwen2_vl` = Qwen2-VL / Qwen2.5-VL (patch sequence + grid, see `image_inputs`)."""
    patch_size: int | None = None
    """Qwen2-VL only: the vision encoder's patch side (14)."""
    merge_size: int | None = None
    """Qwen2-VL only: patches merged per side into one LLM token (2)."""
    temporal_patch_size: int | None = None
    """Qwen2-VL only: frames per patch (2; a still image is repeated)."""

    def image_tensor(self, image: Any):
        """PNG/JPEG bytes or a PIL image -> float tensor [3, S, S], normalised.

        Grayscale (and any non-RGB mode) is converted to RGB, which replicates
        one channel to three; resized with the bilinear filter the scorers use.
        """
        import numpy as np
        import torch
        from PIL import Image

        from irgpt.data.images import RESIZE_FILTER

        img = Image.open(io.BytesIO(image)) if isinstance(image, (bytes, bytearray, memoryview)) else image
        img.load()
        img = img.convert("RGB")
        if img.size != (self.image_size, self.image_size):
            img = img.resize((self.image_size, self.image_size), RESIZE_FILTER)
        arr = np.asarray(img, dtype=np.float32) / 255.0
        mean = np.asarray(self.image_mean, dtype=np.float32)
        std = np.asarray(self.image_std, dtype=np.float32)
        return torch.from_numpy(((arr - mean) / std).transpose(2, 0, 1).copy())

    def image_inputs(self, images: list, input_ids=None, image_token_id: int | None = None) -> dict:
        """The model's image kwargs for a batch of `image_tensor` outputs.

        `llava` / `internvl`: `pixel_values` [B, 3, S, S]; `internvl_chat` adds
        `image_flags` [B, 1]. `qwen2_vl`: `pixel_values` [B * g * g,
        3 * t * p * p] (each image cut into p-px patches in the order of
        transformers' `Qwen2VLImageProcessor`, g = S / p, the still image
        repeated over t frames), `image_grid_thw` [B, 3] = (1, g, g) and, given
        `input_ids` and `image_token_id`, `mm_token_type_ids` (1 at image
        tokens) for the M-RoPE.
        """
        import torch

        pixels = torch.stack(images)
        if self.family == "internvl_chat":
            return {"pixel_values": pixels, "image_flags": torch.ones((len(images), 1), dtype=torch.long)}
        if self.family != "qwen2_vl":
            return {"pixel_values": pixels}
        p, m, t = self.patch_size, self.merge_size, self.temporal_patch_size
        b, c, size, _ = pixels.shape
        g = size // p
        patches = pixels.reshape(b, c, g // m, m, p, g // m, m, p).permute(0, 2, 5, 3, 6, 1, 4, 7)
        patches = patches.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, t, -1, -1)
        out = {"pixel_values": patches.reshape(b * g * g, c * t * p * p),
               "image_grid_thw": torch.tensor([[1, g, g]] * b, dtype=torch.long)}
        if input_ids is not None:
            out["mm_token_type_ids"] = (input_ids == image_token_id).long()
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VLMInputSpec:
        data = dict(data)
        for key in ("image_mean", "image_std"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def save(self, directory: str | Path) -> None:
        from irgpt.data import contracts

        contracts.parse(contracts.ModelManifest, self.to_dict(), f"{Path(directory, SPEC_FILE)} (being written)")
        Path(directory, SPEC_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> VLMInputSpec:
        """The spec of a model directory, checked against its contract (`irgpt.data.contracts`)."""
        from irgpt.data import contracts

        return cls.from_dict(contracts.read(contracts.ModelManifest, directory).raw)


@dataclass
class LoadedVLM:
    model: Any
    tokenizer: Any
    spec: VLMInputSpec
    path: Path = field(default_factory=Path)


# ------------------------------------------------------------ tiny model ----
def tiny_vlm_config(vocab_size: int, image_token_id: int, pad_token_id: int = 0, bos_token_id: int = 2,
                    eos_token_id: int = 3, image_size: int = 64):
    """LlavaConfig: tiny CLIP vision tower + tiny Llama, random init (no download).

    Vision: image `image_size`, patch 8, hidden 64, 2 layers, 3 channels
    (grayscale IR is replicated to 3). Features: the last layer's patch tokens
    (`vision_feature_select_strategy="default"` drops CLS), so one image is
    (image_size / 8)^2 tokens (64 at 64x64). LLM: Llama hidden 128, 2 layers,
    4 heads.
    """
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    if image_size % TINY_PATCH:
        raise CommandError(f"tiny VLM image_size must be a multiple of {TINY_PATCH}, got {image_size}")
    vision = CLIPVisionConfig(image_size=image_size, patch_size=TINY_PATCH, hidden_size=64, intermediate_size=128,
                              num_hidden_layers=2, num_attention_heads=4, num_channels=3, projection_dim=64)
    text = LlamaConfig(vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                       pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                       tie_word_embeddings=False)
    num_image_tokens = (image_size // TINY_PATCH) ** 2
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token_id,
                       image_seq_length=num_image_tokens, vision_feature_select_strategy="default",
                       vision_feature_layer=-1, projector_hidden_act="gelu", tie_word_embeddings=False)


TINY_IMAGE_SIZE = 64
"""The tiny VLM's image side when the data does not fix one (imported data)."""


def build_tiny_vlm(tokenizer, image_size: int = TINY_IMAGE_SIZE, seed: int = 0):
    """(model, spec): a random-init `LlavaForConditionalGeneration` sized to `tokenizer`.

    Initialisation is seeded and leaves the global RNG untouched.
    """
    import torch
    from transformers import LlavaForConditionalGeneration

    from irgpt.models.tokenizer import IMAGE

    image_id = tokenizer.convert_tokens_to_ids(IMAGE)
    if image_id is None or image_id == tokenizer.unk_token_id:
        raise CommandError(f"tokenizer has no {IMAGE} token (use irgpt.models.tokenizer.train_tokenizer)")
    config = tiny_vlm_config(len(tokenizer), image_id, tokenizer.pad_token_id or 0,
                             tokenizer.bos_token_id, tokenizer.eos_token_id, image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
        # The tiny LLM stands in for a pretrained one, and its output head stays frozen in
        # both stages. With the from-scratch init (std 0.02) a frozen head caps every logit
        # near +-2.6 (|row| 0.23 x |RMS-normed h| 11.3): no LoRA update could make a
        # confident prediction, and stage 2 stalled above the answers' unigram entropy.
        # Rows of norm ~1 (std hidden^-0.5) allow logits up to ~11, as a trained head does.
        hidden = config.text_config.hidden_size
        torch.nn.init.normal_(model.get_output_embeddings().weight, std=hidden ** -0.5)
    spec = VLMInputSpec(image_size=image_size, num_image_tokens=config.image_seq_length, image_token=IMAGE,
                        prompt_format="irgpt", family="llava")
    return model, spec


# --------------------------------------------------- specs of checkpoints ----
def _hw(value) -> int:
    return int(value[0] if isinstance(value, (list, tuple)) else value)


def _token_or_none(tokenizer, token: str) -> str | None:
    tid = tokenizer.convert_tokens_to_ids(token)
    return token if tid is not None and tid != tokenizer.unk_token_id else None


def _preprocessor_stats(path: Path | None) -> tuple[tuple | None, tuple | None]:
    if path is None or not (path / "preprocessor_config.json").is_file():
        return None, None
    data = json.loads((path / "preprocessor_config.json").read_text())
    mean, std = data.get("image_mean"), data.get("image_std")
    return (tuple(mean) if mean else None), (tuple(std) if std else None)


QWEN2_VL_TYPES = ("qwen2_vl", "qwen2_5_vl")
QWEN2_VL_MAX_SIDE = 448
"""The square side Qwen2-VL images are resized to (256 LLM tokens), unless the
checkpoint's processor allows fewer pixels (`max_pixels`)."""


def _qwen2_vl_spec(config, tokenizer, path: Path | None, mean, std, fmt: str) -> VLMInputSpec:
    """Qwen2-VL / Qwen2.5-VL: one fixed square side instead of the processor's dynamic
    resolution (a Decision, docs/training.md): the largest multiple of patch x merge
    that is <= 448 and whose area is within the processor's [min_pixels, max_pixels]."""
    vc = config.vision_config
    patch, merge = _hw(vc.patch_size), int(vc.spatial_merge_size)
    temporal = _hw(getattr(vc, "temporal_patch_size", 2))
    factor = patch * merge
    lo, hi = 56 * 56, 28 * 28 * 1280  # Qwen2VLImageProcessor's defaults
    if path is not None and (path / "preprocessor_config.json").is_file():
        data = json.loads((path / "preprocessor_config.json").read_text())
        size = data.get("size") or {}
        lo = int(data.get("min_pixels") or size.get("shortest_edge") or lo)
        hi = int(data.get("max_pixels") or size.get("longest_edge") or hi)
    side = min(QWEN2_VL_MAX_SIDE, int(hi ** 0.5)) // factor * factor
    if side < factor or side * side < lo:
        raise CommandError(f"{path}: preprocessor_config.json allows {lo}..{hi} pixels: no square side that is a "
                           f"multiple of {factor} fits (irgpt feeds Qwen2-VL one fixed square side <= {QWEN2_VL_MAX_SIDE})")
    token = tokenizer.convert_ids_to_tokens(int(config.image_token_id))
    return VLMInputSpec(image_size=side, num_image_tokens=(side // factor) ** 2, image_token=token,
                        image_start=_token_or_none(tokenizer, "<|vision_start|>"),
                        image_end=_token_or_none(tokenizer, "<|vision_end|>"),
                        image_mean=mean or CLIP_MEAN, image_std=std or CLIP_STD, prompt_format=fmt,
                        family="qwen2_vl", patch_size=patch, merge_size=merge, temporal_patch_size=temporal)


def input_spec_for(config, tokenizer, path: str | Path | None = None) -> VLMInputSpec:
    """Derive the input spec of a checkpoint from its config (and preprocessor_config.json).

    LLaVA family: (image/patch)^2 patch tokens, +1 for a CLS-token encoder
    (CLIP) with strategy `full`, -1 with `default`. InternVL: the config's
    `image_seq_length` (pixel shuffle: (448/14)^2 * 0.5^2 = 256), one 448 tile
    (no dynamic tiling: a Decision, docs/training.md), between `<img>`/`</img>`.
    Qwen2-VL: `_qwen2_vl_spec`.
    """
    from irgpt.models.tokenizer import CHAT_TEMPLATE

    path = Path(path) if path is not None else None
    mean, std = _preprocessor_stats(path)
    fmt = "irgpt" if tokenizer.chat_template in (None, CHAT_TEMPLATE) else "chat_template"
    model_type = getattr(config, "model_type", "")
    if model_type in QWEN2_VL_TYPES:
        return _qwen2_vl_spec(config, tokenizer, path, mean, std, fmt)
    if model_type == "internvl":
        vc = config.vision_config
        return VLMInputSpec(image_size=_hw(vc.image_size), num_image_tokens=int(config.image_seq_length),
                            image_token=tokenizer.convert_ids_to_tokens(config.image_token_id),
                            image_start=_token_or_none(tokenizer, "<img>"), image_end=_token_or_none(tokenizer, "</img>"),
                            image_mean=mean or IMAGENET_MEAN, image_std=std or IMAGENET_STD,
                            prompt_format=fmt, family="internvl")
    if model_type == "internvl_chat":  # remote-code InternVL (trust_remote_code)
        vc = config.vision_config
        size = _hw(getattr(config, "force_image_size", None) or vc.image_size)
        n = int((size // _hw(vc.patch_size)) ** 2 * config.downsample_ratio ** 2)
        return VLMInputSpec(image_size=size, num_image_tokens=n, image_token="<IMG_CONTEXT>",
                            image_start=_token_or_none(tokenizer, "<img>"), image_end=_token_or_none(tokenizer, "</img>"),
                            image_mean=mean or IMAGENET_MEAN, image_std=std or IMAGENET_STD,
                            prompt_format=fmt, family="internvl_chat")
    vc = getattr(config, "vision_config", None)
    image_id = getattr(config, "image_token_id", None)
    if vc is None or image_id is None:
        raise CommandError(f"unsupported model type {model_type!r}: supported are LLaVA-family (llava, llava-1.5 "
                           f"style configs with a vision_config and image_token_id), internvl, internvl_chat, "
                           f"{', '.join(QWEN2_VL_TYPES)}")
    size, patch = _hw(vc.image_size), _hw(vc.patch_size)
    has_cls = str(getattr(vc, "model_type", "")).startswith("clip")
    strategy = getattr(config, "vision_feature_select_strategy", "default")
    n = (size // patch) ** 2 + int(has_cls) - int(strategy == "default")
    siglip = "siglip" in str(getattr(vc, "model_type", ""))
    return VLMInputSpec(image_size=size, num_image_tokens=n, image_token=tokenizer.convert_ids_to_tokens(image_id),
                        image_mean=mean or ((0.5, 0.5, 0.5) if siglip else CLIP_MEAN),
                        image_std=std or ((0.5, 0.5, 0.5) if siglip else CLIP_STD),
                        prompt_format=fmt, family="llava")


# -------------------------------------------------------- save and load ----
def is_peft_model(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)


def save_vlm(model, tokenizer, out: str | Path, spec: VLMInputSpec | None = None, merge_lora: bool = True) -> Path:
    """Write model + tokenizer + input spec so `load_vlm(out)` (and `from_pretrained`) reload them.

    A peft (stage 2) model writes its adapter (LoRA + the trained projector,
    peft's own format) to `out/adapter/`, and, with `merge_lora`, the merged
    full model to `out/` (made from a copy, so `model` keeps training; a copy
    costs one model's memory). ZeRO-3 callers must pass gathered weights.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    full = model
    if is_peft_model(model):
        model.save_pretrained(out / ADAPTER_DIR)
        if not merge_lora:
            tokenizer.save_pretrained(out / ADAPTER_DIR)
            if spec is not None:
                spec.save(out / ADAPTER_DIR)
            return out
        full = copy.deepcopy(model).merge_and_unload()
    full.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if spec is None:
        spec = input_spec_for(full.config, tokenizer, out)
    spec.save(out)
    return out


def _read_config(path: Path, trust_remote_code: bool):
    from transformers import AutoConfig

    if not path.is_dir():
        raise CommandError(f"model directory not found: {path} (set train.model to a local checkpoint directory)")
    if not (path / "config.json").is_file():
        raise CommandError(f"{path}: no config.json; not a Hugging Face model directory")
    try:
        return AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    except ValueError as exc:
        if "trust_remote_code" in str(exc) and not trust_remote_code:
            raise CommandError(f"{path}: this checkpoint ships its own model code; set train.trust_remote_code: true "
                               f"only if you trust it ({exc})") from exc
        raise CommandError(f"{path}: cannot read config.json: {exc}") from exc


def model_class(config):
    """The transformers Auto class that builds `config`'s model (remote code: `AutoModel`
    unless its `auto_map` names `AutoModelForImageTextToText`)."""
    from transformers import AutoModel, AutoModelForImageTextToText

    auto_map = getattr(config, "auto_map", None) or {}
    return AutoModel if auto_map and "AutoModelForImageTextToText" not in auto_map else AutoModelForImageTextToText


def _spec_of(path: Path, config, tokenizer) -> VLMInputSpec:
    """The spec irgpt saved beside the model, or the one derived from the checkpoint's files."""
    return VLMInputSpec.load(path) if (path / SPEC_FILE).is_file() else input_spec_for(config, tokenizer, path)


def check_vlm_dir(path: str | Path, trust_remote_code: bool = False, max_length: int = 2048) -> dict:
    """Everything `irgpt train` / `eval run` need from a model directory, checked without reading weights.

    The config and tokenizer are read; the input spec derived (an unsupported
    `model_type` is refused here, naming the supported ones); the image tokens
    looked up in the tokenizer and the chat template probed (`VLMCollator`);
    the model built on the `meta` device to find its vision / projector / LLM
    modules. Returns what was found; raises CommandError naming the problem.
    """
    import torch

    from irgpt.models.collator import VLMCollator
    from irgpt.models.freeze import vlm_parts
    from irgpt.models.tokenizer import load_tokenizer

    path = storage.fetch(path)  # an object-storage URI: this node's cached copy
    config = _read_config(path, trust_remote_code)
    try:
        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise CommandError(f"{path}: cannot load its tokenizer: {exc}") from exc
    spec = _spec_of(path, config, tokenizer)
    collator = VLMCollator(tokenizer, spec, max(max_length, spec.num_image_tokens + 2))
    with torch.device("meta"):
        model = model_class(config).from_config(config, trust_remote_code=trust_remote_code)
    parts = vlm_parts(model)
    return {"model_type": getattr(config, "model_type", None), "architecture": type(model).__name__,
            "family": spec.family, "image_size": spec.image_size, "num_image_tokens": spec.num_image_tokens,
            "image_tokens": [t for t in (spec.image_start, spec.image_token, spec.image_end) if t],
            "prompt_format": spec.prompt_format, "list_content": collator.content_as_list,
            "eos_token": tokenizer.eos_token, "modules": vars(parts)}


def load_vlm(path: str | Path, trust_remote_code: bool = False, dtype=None) -> LoadedVLM:
    """Load a saved VLM (tiny or a real LLaVA-family / InternVL / Qwen2-VL checkpoint) by local path.

    Never downloads (`local_files_only=True`). `trust_remote_code` runs code
    shipped in the checkpoint; pass True only when the run config says so
    (`train.trust_remote_code`). `dtype`: e.g. torch.bfloat16 for GPU runs.
    """
    from irgpt.models.tokenizer import load_tokenizer

    path = storage.fetch(path)  # an object-storage URI: this node's cached copy
    config = _read_config(path, trust_remote_code)
    kwargs: dict = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = model_class(config).from_pretrained(str(path), **kwargs)
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    spec = _spec_of(path, config, tokenizer)
    if spec.family == "internvl_chat":  # the remote model finds its image tokens by this attribute
        model.img_context_token_id = tokenizer.convert_tokens_to_ids(spec.image_token)
    return LoadedVLM(model=model, tokenizer=tokenizer, spec=spec, path=path)
