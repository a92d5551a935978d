"""The Lesson 1 feature extractor: a masked autoencoder (transformers ViTMAE).

The paper uses InfMAE re-trained with masking on infrared and visible
grayscale images (docs/method.md "Lesson 1"); the demo uses a tiny ViTMAE of the
same shape of computation (`tiny_config`), trained by `irgpt fe-train`
(`irgpt.train.mae_job`). Images are single-channel: infrared bands and
`vis_gray` are grayscale already, RGB `vis` images are converted to L
(`irgpt.data.images.decode_to_array(mode="L")`) before they reach the model.

Features (`extract_features`): the encoder runs with mask ratio 0 and a fixed
`noise = arange(num_patches)` so ViTMAE's random shuffle is the identity (all
patches kept, in their original order); the feature is the mean of the
patch tokens after the encoder's final LayerNorm, excluding the CLS token
(MAE's own linear-probe recipe uses the average of the patch tokens; the CLS
token of a pixel-reconstruction model is untrained by the loss). The encoder
runs in eval mode under `torch.no_grad`, on fixed-size chunks
(`irgpt.models.chunks.fixed_chunks`), so every row's feature is bit-identical
whatever batch it arrives in.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from irgpt import storage
from irgpt.data.images import RESIZE_FILTER
from irgpt.errors import CommandError
from irgpt.models.chunks import MODEL_CHUNK, fixed_chunks
from irgpt.models.weights import weights_hash  # noqa: F401  (re-exported)

TINY = "tiny"
"""`Lesson1Config.extractor` value for the random-init tiny config."""

TINY_IMAGE_SIZE = 64
"""Input side of the tiny config (the synthetic data's image size)."""

PIXEL_MEAN = 0.5
PIXEL_STD = 0.5
"""Input normalisation: x = (u8 / 255 - 0.5) / 0.5, in [-1, 1]. One channel,
so ImageNet RGB statistics do not apply; fe-train and scoring share these."""


def tiny_config(image_size: int = TINY_IMAGE_SIZE, mask_ratio: float = 0.75) -> ViTMAEConfig:
    """The demo's ViTMAE: 64 px, patch 8 (64 patches), 1 channel, 4 x 128 encoder.

    `norm_pix_loss` (the MAE paper's default: each target patch normalised to
    mean 0, std 1) keeps the pooled features from following image brightness;
    with the plain pixel loss the Lesson 1 band order breaks (docs/lesson1.md).
    """
    return ViTMAEConfig(
        image_size=image_size,
        patch_size=8,
        num_channels=1,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=256,
        decoder_hidden_size=64,
        decoder_num_hidden_layers=2,
        decoder_num_attention_heads=4,
        decoder_intermediate_size=128,
        mask_ratio=mask_ratio,
        norm_pix_loss=True,
    )


def build_tiny_mae(image_size: int = TINY_IMAGE_SIZE, mask_ratio: float = 0.75, seed: int = 0) -> ViTMAEForPreTraining:
    """Random-init tiny ViTMAE; the same seed gives the same weights (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTMAEForPreTraining(tiny_config(image_size, mask_ratio))
    return model.eval()


EXTRACTOR_KINDS = ("auto", "vitmae", "infmae")


def _locate(path_or_tiny: str, kind: str) -> tuple[str, Path | None]:
    """(kind, file or directory to load) for `scoring.lesson1.extractor` and `extractor_kind`;
    (`vitmae` | `infmae`, None) for `tiny`. Raises when the path holds neither kind, or the other."""
    from irgpt.models.infmae import INFMAE_FILE

    if kind not in EXTRACTOR_KINDS:
        raise CommandError(f"scoring.lesson1.extractor_kind must be one of {list(EXTRACTOR_KINDS)}, got {kind!r}")
    if path_or_tiny == TINY:
        return ("infmae" if kind == "infmae" else "vitmae"), None
    path = storage.fetch(path_or_tiny)  # an object-storage URI: this node's cached copy
    if path.is_file():
        found, target = "infmae", path
    elif (path / INFMAE_FILE).is_file():
        found, target = "infmae", path / INFMAE_FILE
    elif (path / "config.json").is_file():
        found, target = "vitmae", path
    else:
        raise CommandError(f"feature extractor {path_or_tiny!r}: not 'tiny', not an InfMAE checkpoint file (or a "
                           f"directory with {INFMAE_FILE}) and not a Hugging Face ViTMAE directory (no config.json)")
    if kind not in ("auto", found):
        held = "an InfMAE checkpoint" if found == "infmae" else "a ViTMAE"
        raise CommandError(f"feature extractor {path_or_tiny}: scoring.lesson1.extractor_kind is {kind}, but it "
                           f"holds {held}")
    return found, target


def load_extractor(path_or_tiny: str, image_size: int = TINY_IMAGE_SIZE, seed: int = 0, kind: str = "auto"):
    """The Lesson 1 feature extractor `scoring.lesson1.extractor` names, in eval mode.

    `kind` (`scoring.lesson1.extractor_kind`): `vitmae`, `infmae`, or `auto`
    (detected from what the path holds):
    - `"tiny"`: a random-init tiny ViTMAE (`build_tiny_mae`), or with kind
      `infmae` a tiny InfMAE of the release's topology (`build_tiny_infmae`);
    - a file: an InfMAE checkpoint (`irgpt.models.infmae.load_infmae`, the
      release's `checkpoint-N.pth` layout or a bare state dict);
    - a directory holding `infmae.pth`: the output of `irgpt fe-train` on an InfMAE;
    - a directory holding `config.json`: a Hugging Face ViTMAE (`save_pretrained`),
      read with `local_files_only=True` (nothing is ever downloaded).

    A saved model keeps its own image size (`extract_features` resizes to it);
    `image_size` only applies to `"tiny"`.
    """
    from irgpt.models import infmae

    found, target = _locate(path_or_tiny, kind)
    if target is None:
        if found == "infmae":
            return infmae.build_tiny_infmae(image_size=image_size, seed=seed)
        return build_tiny_mae(image_size=image_size, seed=seed)
    if found == "infmae":
        return infmae.load_infmae(target, need_decoder=False)
    return ViTMAEForPreTraining.from_pretrained(str(target), local_files_only=True).eval()


def describe_extractor(path_or_tiny: str, kind: str = "auto") -> dict:
    """What `load_extractor(path_or_tiny, kind=kind)` would load, without reading weights (dry runs)."""
    from irgpt.models.infmae import check_infmae

    found, target = _locate(path_or_tiny, kind)
    if target is None:
        return {"kind": found, "weights": "random init"}
    if found == "infmae":
        return check_infmae(target)
    cfg = ViTMAEConfig.from_pretrained(str(target), local_files_only=True)
    return {"kind": "vitmae", "image_size": cfg.image_size, "hidden_size": cfg.hidden_size}


def extractor_kind(model) -> str:
    """`infmae` or `vitmae`: which of the two a loaded extractor is."""
    from irgpt.models.infmae import InfMAE

    return "infmae" if isinstance(getattr(model, "module", model), InfMAE) else "vitmae"


def _encoder(model):
    """The ViTMAEModel inside a ViTMAEForPreTraining (or the model itself)."""
    return getattr(model, "vit", model)


@contextlib.contextmanager
def _feature_mode(model):
    """Mask ratio 0 and eval mode for the duration; restores both afterwards.

    ViTMAE reads `config.mask_ratio` in `random_masking` at every forward (the
    config object is shared by the pre-training wrapper and its encoder).
    """
    encoder = _encoder(model)
    old_ratio, was_training = encoder.config.mask_ratio, model.training
    encoder.config.mask_ratio = 0.0
    model.eval()
    try:
        yield encoder
    finally:
        encoder.config.mask_ratio = old_ratio
        model.train(was_training)


def model_image_size(model) -> int:
    size = _encoder(model).config.image_size
    return int(size if isinstance(size, int) else size[0])


def resize_images(images_uint8: np.ndarray, size: int) -> np.ndarray:
    """(n, H, W) uint8 -> (n, size, size) with the project's one resize filter."""
    a = np.asarray(images_uint8)
    if a.ndim != 3 or a.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (n, H, W), got {a.dtype} {a.shape}")
    if a.shape[1:] == (size, size):
        return a
    return np.stack([np.asarray(Image.fromarray(im, mode="L").resize((size, size), RESIZE_FILTER)) for im in a])


def to_pixel_values(images_uint8: np.ndarray, size: int, *, mean: float = PIXEL_MEAN, std: float = PIXEL_STD,
                    channels: int = 1) -> torch.Tensor:
    """uint8 (n, H, W) grey -> normalised float32 (n, channels, size, size), the grey plane
    repeated over the channels (shared with fe-train and the InfMAE path)."""
    a = resize_images(images_uint8, size)
    x = torch.from_numpy(np.ascontiguousarray(a)).to(torch.float32).div_(255.0)
    x = x.sub_(mean).div_(std).unsqueeze(1)
    return x if channels == 1 else x.expand(-1, channels, -1, -1).contiguous()


def identity_noise(batch: int, num_patches: int) -> torch.Tensor:
    """ViTMAE `noise` whose argsort is the identity: no shuffle, original patch order."""
    return torch.arange(num_patches, dtype=torch.float32).expand(batch, num_patches)


@torch.no_grad()
def extract_features(model, images_uint8: np.ndarray, chunk: int = MODEL_CHUNK) -> np.ndarray:
    """Mean-pooled patch-token features, float32 (n, hidden) (see module doc); an InfMAE
    model takes its own path (`irgpt.models.infmae.extract_features`)."""
    from irgpt.models.infmae import InfMAE
    from irgpt.models.infmae import extract_features as infmae_features

    if isinstance(model, InfMAE):
        return infmae_features(model, images_uint8, chunk)
    a = np.asarray(images_uint8)
    if a.ndim != 3 or a.dtype != np.uint8 or a.shape[0] == 0:
        raise ValueError(f"expected a non-empty uint8 array (n, H, W), got {a.dtype} {a.shape}")
    pixels = to_pixel_values(a, model_image_size(model))
    with _feature_mode(model) as encoder:
        num_patches = encoder.embeddings.patch_embeddings.num_patches

        def fn(piece: torch.Tensor) -> torch.Tensor:
            out = encoder(pixel_values=piece, noise=identity_noise(piece.shape[0], num_patches))
            return out.last_hidden_state[:, 1:, :].mean(dim=1)  # drop CLS, mean over patches

        feats = fixed_chunks(fn, pixels, chunk)
    return feats.to(torch.float32).numpy()


def unwrap(model):
    """The bare model inside a DDP / `prepare_model` wrapper."""
    return getattr(model, "module", model)


