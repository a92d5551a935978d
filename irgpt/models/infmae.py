"""InfMAE, the infrared masked autoencoder the paper uses for Lesson 1, as a feature extractor.

InfMAE (liufangcen/InfMAE, `models_infmae_skip4.py`) is not a ViT-MAE but a
ConvMAE-style hybrid: three stages with patch sizes 4, 2, 2 (16 in all) and
widths e0, e1, e2 (256, 384, 768 in the base model); convolutional blocks
(`blocks1`, `blocks2`: depthwise 5x5 "attention" and 1x1 MLPs) in stages 1-2
and transformer blocks (`blocks3`) in stage 3; the stage-1 and stage-2 maps are
projected to e2 (`stage1_output_decode`, `stage2_output_decode`) and added to
the stage-3 tokens before the final norm; a fixed 2-D sin-cos position
embedding and no CLS token; a 512-wide decoder. Its "skip4" masking sorts the
tokens by the mean of a flat 16x16 patch embedding (`patch_embed`) and keeps
every 4th.

This module is our own code whose parameter names and shapes equal the
official release's, so an official `checkpoint-N.pth` (the MAE-style dict
`{model, optimizer, epoch, scaler, args}`, `args` a pickled
`argparse.Namespace`) loads with `strict=True` (`load_infmae`). Loading is
`torch.load(weights_only=True)` with only `argparse.Namespace` allow-listed;
the architecture is read from the tensor shapes (head counts by the release's
rule: head width 64 in the encoder, 32 in the decoder, unless `args` names
them).

Features (`extract_features`): the image resized to the model's input size
(224 for the release) with the project's filter, grey replicated to three
channels, normalised with InfMAE's own mean 0.425 / std 0.200; the encoder
runs with every token kept (no masking); the feature is the mean over tokens
of the final-norm stage-3 tokens (stage-1 and stage-2 projections added, as
the encoder outputs them). Computed in fixed chunks, so batch-invariant.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from irgpt.errors import CommandError
from irgpt.models.chunks import MODEL_CHUNK, fixed_chunks
from irgpt.models.mae import to_pixel_values

PIXEL_MEAN = 0.425
PIXEL_STD = 0.200
"""InfMAE's normalisation (its pre-training transform), the same for all three channels."""


@dataclass(frozen=True)
class InfMAEConfig:
    img_size: int = 224
    patch_size: tuple[int, int, int] = (4, 2, 2)
    embed_dim: tuple[int, int, int] = (256, 384, 768)
    depth: tuple[int, int, int] = (2, 2, 11)
    num_heads: int = 12
    mlp_ratio: tuple[float, float, float] = (4.0, 4.0, 4.0)
    decoder_embed_dim: int = 512
    decoder_depth: int = 2
    decoder_num_heads: int = 16
    in_chans: int = 3
    norm_pix_loss: bool = False
    masking: str = "skip4"
    """`skip4` (the release: keep every 4th token by intensity order) or `random` (MAE)."""
    mask_ratio: float = 0.75
    """For `random` masking only (skip4 always keeps a quarter)."""

    @property
    def image_size(self) -> int:
        return self.img_size

    @property
    def hidden_size(self) -> int:
        return self.embed_dim[2]

    @property
    def total_patch(self) -> int:
        return self.patch_size[0] * self.patch_size[1] * self.patch_size[2]

    @property
    def grid(self) -> int:
        return self.img_size // self.total_patch


BASE = InfMAEConfig()
"""The released model (`infmae_vit_base_patch16`)."""
TINY = InfMAEConfig(img_size=64, embed_dim=(32, 48, 64), depth=(1, 1, 2), num_heads=1, decoder_embed_dim=32,
                    decoder_depth=1, decoder_num_heads=1, norm_pix_loss=True)
"""The same topology at CPU-test size (4 x 4 tokens of 64 px images); the per-patch
normalised pixel loss, as the tiny ViTMAE (docs/lesson1.md: without it pooled
features follow image brightness)."""


# ------------------------------------------------------------ the blocks ----
class _PatchEmbedFlat(nn.Module):  # the release's PatchEmbed_F
    def __init__(self, patch: int, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class _PatchEmbed(nn.Module):  # conv, LayerNorm over channels, GELU; channels-first in and out
    def __init__(self, patch: int, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)
        self.act = nn.GELU()

    def forward(self, x):
        x = self.proj(x)
        return self.act(self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


class _ConvMlp(nn.Module):  # CMlp
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Conv2d(dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _ConvBlock(nn.Module):  # CBlock: depthwise 5x5 "attention", visible tokens only when masked
    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _ConvMlp(dim, int(dim * mlp_ratio))

    def forward(self, x, visible=None):
        h = self.conv1(self.norm1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        x = x + self.conv2(self.attn(h if visible is None else visible * h))
        return x + self.mlp(self.norm2(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


class _Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads, self.scale = num_heads, (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):  # the transformer block (timm's ViT Block), LayerNorm eps 1e-6
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """The fixed 2-D sin-cos position embedding of MAE (no CLS row), float32 (grid*grid, dim)."""
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))

    def one_axis(pos):
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return torch.from_numpy(np.concatenate([one_axis(gw), one_axis(gh)], axis=1)).float()


# ------------------------------------------------------------- the model ----
class InfMAE(nn.Module):
    """Encoder and decoder with the release's parameter names (module doc)."""

    def __init__(self, config: InfMAEConfig = BASE):
        super().__init__()
        c = self.config = config
        e0, e1, e2 = c.embed_dim
        p0, p1, p2 = c.patch_size
        self.patch_embed = _PatchEmbedFlat(c.total_patch, c.in_chans, e2)
        self.patch_embed1 = _PatchEmbed(p0, c.in_chans, e0)
        self.patch_embed2 = _PatchEmbed(p1, e0, e1)
        self.patch_embed3 = _PatchEmbed(p2, e1, e2)
        self.patch_embed4 = nn.Linear(e2, e2)
        self.stage1_output_decode = nn.Conv2d(e0, e2, p1 * p2, stride=p1 * p2)
        self.stage2_output_decode = nn.Conv2d(e1, e2, p2, stride=p2)
        self.pos_embed = nn.Parameter(sincos_pos_embed(e2, c.grid).unsqueeze(0), requires_grad=False)
        self.blocks1 = nn.ModuleList(_ConvBlock(e0, c.mlp_ratio[0]) for _ in range(c.depth[0]))
        self.blocks2 = nn.ModuleList(_ConvBlock(e1, c.mlp_ratio[1]) for _ in range(c.depth[1]))
        self.blocks3 = nn.ModuleList(_Block(e2, c.num_heads, c.mlp_ratio[2]) for _ in range(c.depth[2]))
        self.norm = nn.LayerNorm(e2, eps=1e-6)
        d = c.decoder_embed_dim
        self.decoder_embed = nn.Linear(e2, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(d, c.grid).unsqueeze(0), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(_Block(d, c.decoder_num_heads, c.mlp_ratio[0])
                                            for _ in range(c.decoder_depth))
        self.decoder_norm = nn.LayerNorm(d, eps=1e-6)
        self.decoder_pred = nn.Linear(d, c.total_patch ** 2 * c.in_chans)
        self._init_weights()

    def _init_weights(self) -> None:
        """The release's initialisation: xavier-uniform linears, zero biases, unit norms."""
        w = self.patch_embed3.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stages(self, x, visible1=None, visible2=None):
        x = self.patch_embed1(x)
        for blk in self.blocks1:
            x = blk(x, visible1)
        s1 = self.stage1_output_decode(x).flatten(2).transpose(1, 2)
        x = self.patch_embed2(x)
        for blk in self.blocks2:
            x = blk(x, visible2)
        s2 = self.stage2_output_decode(x).flatten(2).transpose(1, 2)
        x = self.patch_embed4(self.patch_embed3(x).flatten(2).transpose(1, 2)) + self.pos_embed
        return x, s1, s2

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Every token kept: the final-norm stage-3 tokens, (N, grid*grid, e2)."""
        x, s1, s2 = self._stages(x)
        for blk in self.blocks3:
            x = blk(x)
        return self.norm(x + s1 + s2)

    # ---- masked pre-training (the release's objective; `irgpt fe-train` runs it) ----
    def masking(self, x: torch.Tensor, noise: torch.Tensor | None = None):
        """(kept positions in the shuffled order, ids_shuffle, ids_restore, mask (N, L): 1 = removed)."""
        n, length = x.shape[0], self.config.grid ** 2
        if self.config.masking == "skip4":
            order_key = self.patch_embed(x).mean(dim=-1)  # intensity order: the release's rule
            kept = torch.arange(0, length, 4, device=x.device)
        else:
            order_key = torch.rand(n, length, device=x.device) if noise is None else noise
            kept = torch.arange(int(length * (1 - self.config.mask_ratio)), device=x.device)
        ids_shuffle = torch.argsort(order_key, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        mask = torch.ones(n, length, device=x.device)
        mask[:, kept] = 0
        return kept, ids_shuffle, ids_restore, torch.gather(mask, 1, ids_restore)

    def forward(self, imgs: torch.Tensor, noise: torch.Tensor | None = None):
        """(loss on removed patches, prediction (N, L, P*P*C), mask), as the release returns."""
        c = self.config
        kept, ids_shuffle, ids_restore, mask = self.masking(imgs, noise)
        grid, (_p0, p1, p2) = c.grid, c.patch_size
        m = mask.reshape(-1, grid, grid)
        visible2 = 1 - m.repeat_interleave(p2, 1).repeat_interleave(p2, 2).unsqueeze(1)
        visible1 = 1 - m.repeat_interleave(p1 * p2, 1).repeat_interleave(p1 * p2, 2).unsqueeze(1)
        x, s1, s2 = self._stages(imgs, visible1, visible2)
        keep = ids_shuffle[:, kept]
        take = lambda t: torch.gather(t, 1, keep.unsqueeze(-1).expand(-1, -1, t.shape[-1]))  # noqa: E731
        x, s1, s2 = take(x), take(s1), take(s2)
        for blk in self.blocks3:
            x = blk(x)
        latent = self.norm(x + s1 + s2)
        y = self.decoder_embed(latent)
        full = self.mask_token.expand(y.shape[0], grid * grid, -1).clone()
        full[:, kept] = y  # the shuffled order: kept tokens where the masking put them
        y = torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(-1, -1, y.shape[-1])) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            y = blk(y)
        pred = self.decoder_pred(self.decoder_norm(y))
        target = self.patchify(imgs)
        if c.norm_pix_loss:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum(), pred, mask

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        p, g, ch = self.config.total_patch, self.config.grid, self.config.in_chans
        x = imgs.reshape(imgs.shape[0], ch, g, p, g, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(imgs.shape[0], g * g, p * p * ch)


# --------------------------------------------------------------- loading ----
_BLOCK = re.compile(r"^(blocks1|blocks2|blocks3|decoder_blocks)\.(\d+)\.")


def config_from_state(state: dict, args: argparse.Namespace | None = None) -> InfMAEConfig:
    """The architecture of a state dict, read from its tensor shapes (module doc)."""
    try:
        e0, _c, p0, _ = state["patch_embed1.proj.weight"].shape
        e1, _, p1, _ = state["patch_embed2.proj.weight"].shape
        e2, _, p2, _ = state["patch_embed3.proj.weight"].shape
        in_chans = state["patch_embed1.proj.weight"].shape[1]
        grid = math.isqrt(state["pos_embed"].shape[1])
    except KeyError as exc:
        raise CommandError(f"not an InfMAE state dict: no {exc.args[0]!r} tensor") from None
    depth = [0, 0, 0, 0]
    for key in state:
        hit = _BLOCK.match(key)
        if hit:
            i = ("blocks1", "blocks2", "blocks3", "decoder_blocks").index(hit.group(1))
            depth[i] = max(depth[i], int(hit.group(2)) + 1)
    ratios = tuple(state[f"{name}.0.mlp.fc1.weight"].shape[0] / dim if depth[i] else 4.0
                   for i, (name, dim) in enumerate((("blocks1", e0), ("blocks2", e1), ("blocks3", e2))))
    dec = state["decoder_embed.weight"].shape[0] if "decoder_embed.weight" in state else 512
    return InfMAEConfig(
        img_size=grid * p0 * p1 * p2, patch_size=(p0, p1, p2), embed_dim=(e0, e1, e2), depth=tuple(depth[:3]),
        num_heads=int(getattr(args, "num_heads", 0) or max(1, e2 // 64)), mlp_ratio=ratios,
        decoder_embed_dim=dec, decoder_depth=depth[3] or 1,
        decoder_num_heads=int(getattr(args, "decoder_num_heads", 0) or max(1, dec // 32)), in_chans=in_chans,
        norm_pix_loss=bool(getattr(args, "norm_pix_loss", False)),
    )


def read_checkpoint(path: str | Path, mmap: bool = False) -> tuple[dict, argparse.Namespace | None, dict]:
    """(model state dict, `args` or None, the rest) of an InfMAE checkpoint, unpickling nothing
    but tensors, containers and `argparse.Namespace`; `mmap` maps the tensors instead of reading them."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise CommandError(f"InfMAE checkpoint not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, ...
        raise CommandError(f"{path}: not a loadable InfMAE checkpoint ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:300]})") from None
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        return ckpt["model"], ckpt.get("args"), {k: v for k, v in ckpt.items() if k not in ("model", "args")}
    if isinstance(ckpt, dict) and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt, None, {}
    raise CommandError(f"{path}: expected an InfMAE checkpoint (a dict with 'model') or a bare state dict")


def _mismatch(path, own: dict, state: dict, need_decoder: bool) -> list[str]:
    """Parameter names and shapes `state` has against the model `own` (name -> tensor) expects."""
    decoder = {k for k in own if k.startswith(("decoder_", "mask_token"))}
    missing = sorted(set(own) - set(state) - (set() if need_decoder else decoder))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(state) & set(own) if tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or shapes:
        parts = [f"{name} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)) if keys]
        raise CommandError(f"{path}: does not match the InfMAE architecture; " + "; ".join(parts))
    return sorted(decoder - set(state))


def check_infmae(path: str | Path) -> dict:
    """The architecture of an InfMAE checkpoint, checked like `load_infmae` but on the `meta`
    device, with the file memory-mapped: no weights are read into memory (the dry run)."""
    state, args, rest = read_checkpoint(path, mmap=True)
    config = config_from_state(state, args)
    with torch.device("meta"):
        own = InfMAE(config).state_dict()
    missing_decoder = _mismatch(path, own, state, need_decoder=False)
    return {"kind": "infmae", "img_size": config.img_size, "embed_dim": config.embed_dim, "depth": config.depth,
            "decoder": "absent" if missing_decoder else "present", "epoch": rest.get("epoch")}


def load_infmae(path: str | Path, *, need_decoder: bool = False) -> InfMAE:
    """An InfMAE checkpoint file as a model in eval mode, loaded strictly.

    Every encoder tensor must be present with the right shape; decoder tensors
    are optional for feature extraction (`need_decoder=False`) and their absence
    is reported on the model (`missing_decoder`). Errors list the missing,
    unexpected and mis-shaped keys.
    """
    state, args, _rest = read_checkpoint(path)
    model = InfMAE(config_from_state(state, args))
    own = model.state_dict()
    missing_decoder = _mismatch(path, own, state, need_decoder)
    model.load_state_dict({**{k: v for k, v in own.items() if k not in state}, **state}, strict=True)
    model.missing_decoder = missing_decoder
    return model.eval()


INFMAE_FILE = "infmae.pth"
"""The checkpoint file `irgpt fe-train` writes into its output directory."""


def build_tiny_infmae(image_size: int = TINY.img_size, seed: int = 0) -> InfMAE:
    """`TINY` at `image_size` (a multiple of 16), random init, seeded; the global RNG is left alone."""
    if image_size % TINY.total_patch:
        raise CommandError(f"a tiny InfMAE needs an image size that is a multiple of {TINY.total_patch}, got {image_size}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return InfMAE(replace(TINY, img_size=image_size)).eval()


def save_infmae(model: InfMAE, path: str | Path, *, epoch: int = 0, optimizer: dict | None = None) -> None:
    """The release's checkpoint layout (`{model, optimizer, epoch, args}`), so its tools read ours."""
    args = argparse.Namespace(model="infmae", **{k: v for k, v in asdict(model.config).items()})
    torch.save({"model": model.state_dict(), "optimizer": optimizer, "epoch": epoch, "args": args}, path)


# -------------------------------------------------------------- features ----
@torch.no_grad()
def extract_features(model: InfMAE, images_uint8: np.ndarray, chunk: int = MODEL_CHUNK) -> np.ndarray:
    """Mean over tokens of the final-norm encoder tokens, float32 (n, e2), batch-invariant."""
    a = np.asarray(images_uint8)
    if a.ndim != 3 or a.dtype != np.uint8 or a.shape[0] == 0:
        raise ValueError(f"expected a non-empty uint8 array (n, H, W), got {a.dtype} {a.shape}")
    was_training = model.training
    model.eval()
    try:
        pixels = to_pixel_values(a, model.config.img_size, mean=PIXEL_MEAN, std=PIXEL_STD,
                                 channels=model.config.in_chans)
        feats = fixed_chunks(lambda piece: model.encode(piece).mean(dim=1), pixels, chunk)
    finally:
        model.train(was_training)
    return feats.to(torch.float32).numpy()


__all__ = ["BASE", "INFMAE_FILE", "TINY", "InfMAE", "InfMAEConfig", "build_tiny_infmae", "extract_features",
           "check_infmae", "load_infmae", "save_infmae", "config_from_state", "read_checkpoint"]
