"""Render a scene graph as visible and infrared images (vectorised NumPy).

Two steps. `rasterize` paints the regions and object parts into per-pixel
attribute maps (`Layers`: visible albedo, material, temperature, a shared
texture field). `render_band` turns the maps into one band; the bands depart
from visible in a graded way (the Lesson-1 ground truth, GT_BAND_RANK):

    vis       albedo x illumination x (1 + texture); RGB
    vis_gray  ITU-R 601 luma of vis
    nir       60% visible luma + 40% the material's NIR reflectance (vegetation
              much brighter, water darker), almost the same texture
    swir      45% luma + 55% SWIR reflectance (skin, water, sky dark), less
              texture, auto exposure matched to the visible camera's mean and
              contrast (InGaAs cameras meter the same light; SWIR sees through
              haze rather than adding it), blur 1 px, noise
    mwir      emission: 85% temperature (per-image AGC, plus thermal patches of
              ground / sky) + 15% reflected light, blur, vignetting and slow
              drift, sensor noise, column fixed-pattern stripes
    lwir      temperature only, more blur, drift and noise, row and column stripes

Thermal bands are optionally black-hot (inverted). `encode` makes the PNG
bytes (pixels only, fixed zlib level `PNG_COMPRESS_LEVEL`), so the same seed
gives the same bytes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from irgpt.data.scene import MATERIALS, M, Region, SceneObject, span

# Per-material constants, indexed like scene.MATERIALS.
_T = {  # material: (NIR reflectance, SWIR reflectance, texture amplitude)
    "sky": (0.35, 0.08, 0.03), "asphalt": (0.22, 0.2, 0.12), "concrete": (0.5, 0.42, 0.1),
    "grass": (0.8, 0.35, 0.25), "soil": (0.45, 0.45, 0.2), "water": (0.03, 0.02, 0.08),
    "foliage": (0.85, 0.4, 0.3), "bark": (0.45, 0.35, 0.2), "skin": (0.6, 0.15, 0.03),
    "fabric": (0.55, 0.5, 0.08), "paint": (0.4, 0.35, 0.04), "glass": (0.1, 0.08, 0.05),
    "rubber": (0.05, 0.05, 0.05), "fur": (0.55, 0.4, 0.15), "brick": (0.55, 0.5, 0.15),
    "marking": (0.85, 0.7, 0.03), "wood": (0.6, 0.5, 0.12)}
NIR_REFL = np.array([_T[m][0] for m in MATERIALS], dtype=np.float32)
SWIR_REFL = np.array([_T[m][1] for m in MATERIALS], dtype=np.float32)
TEX_AMP = np.array([_T[m][2] for m in MATERIALS], dtype=np.float32)
_HEAT = {"sky": 2.0, "asphalt": 2.0, "concrete": 1.5, "grass": 1.5, "soil": 2.0, "water": 0.5, "foliage": 1.0}
HEAT_AMP = np.array([_HEAT.get(m, 0.3) for m in MATERIALS], dtype=np.float32)
"""C of thermal patchiness per material (scaled by `Layers.heat`)."""
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
THERMAL = ("mwir", "lwir")
RENDERED_BANDS = ("vis", "vis_gray", "nir", "swir", "mwir", "lwir")


@dataclass
class Layers:
    albedo: np.ndarray  # (H, W, 3) float32 visible albedo
    material: np.ndarray  # (H, W) int16
    temp: np.ndarray  # (H, W) float32, degrees C
    ir: np.ndarray  # (H, W) float32 in [-1, 1], NIR/SWIR reflectance deviation
    texture: np.ndarray  # (H, W) float32, unit variance
    heat: np.ndarray  # (H, W) float32: thermal patches (sun, moisture, clouds) independent of texture


def value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise: a coarse Gaussian grid, bilinearly upsampled (cell = grid spacing in pixels)."""
    gh, gw = int(h / cell) + 2, int(w / cell) + 2
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    y = (np.arange(h, dtype=np.float32) + 0.5) / cell
    x = (np.arange(w, dtype=np.float32) + 0.5) / cell
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    rows = grid[y0] * (1 - fy) + grid[y0 + 1] * fy  # (h, gw): separable bilinear
    return rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx


def _region_mask(r: Region, yy: np.ndarray, xx: np.ndarray, w: int) -> np.ndarray | tuple[slice, slice]:
    p = r.params
    if r.shape == "all":
        return (slice(None), slice(None))
    if r.shape == "below":
        return yy >= p[0] + p[1] * (xx - w / 2)
    if r.shape == "band":
        line = p[2] * (xx - w / 2)
        return (yy >= p[0] + line) & (yy < p[1] + line)
    if r.shape == "rect":
        (c0, c1), (r0, r1) = span(p[0], p[2]), span(p[1], p[3])
        return (slice(max(r0, 0), max(r1, 0)), slice(max(c0, 0), max(c1, 0)))
    if r.shape == "ellipse":
        cx, cy, rx, ry = p
        return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    raise ValueError(f"unknown region shape {r.shape!r}")


def rasterize(regions: list[Region], objects: list[SceneObject], height: int, width: int,
              rng: np.random.Generator) -> Layers:
    """Paint regions, then object parts in order (later parts occlude earlier ones)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    albedo = np.zeros((height, width, 3), np.float32)
    material = np.zeros((height, width), np.int16)
    temp = np.zeros((height, width), np.float32)
    ir = np.zeros((height, width), np.float32)
    rel_y = yy / height - 0.5
    for r in regions:
        m = _region_mask(r, yy, xx, width)
        shade = 1.0 - r.vgrad * rel_y[m] if r.vgrad else 1.0
        col = np.asarray(r.colour, np.float32)
        albedo[m] = col * (shade[..., None] if r.vgrad else 1.0)
        material[m] = r.material
        temp[m] = r.temp + r.tgrad * rel_y[m] if r.tgrad else r.temp
        ir[m] = 0.0
    for obj in objects:
        for part in obj.parts:
            (c0, c1), (r0, r1) = span(part.box[0], part.box[2]), span(part.box[1], part.box[3])
            c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, width), min(r1, height)
            if c1 <= c0 or r1 <= r0:
                continue
            sl = (slice(r0, r1), slice(c0, c1))
            if part.shape == "ellipse":
                x1, y1, x2, y2 = part.box
                rx, ry = max((x2 - x1) / 2, 0.5), max((y2 - y1) / 2, 0.5)
                m = ((xx[sl] - (x1 + x2) / 2) / rx) ** 2 + ((yy[sl] - (y1 + y2) / 2) / ry) ** 2 <= 1.0
                m |= ~m.any()  # a sub-pixel ellipse still covers its one pixel
                idx = (np.nonzero(m)[0] + r0, np.nonzero(m)[1] + c0)
            else:
                idx = sl
            albedo[idx] = part.colour
            material[idx] = part.material
            temp[idx] = part.temp
            ir[idx] = part.ir
    s = max(height, width) / 64
    tex = 0.75 * value_noise(rng, height, width, 6 * s) + 0.45 * value_noise(rng, height, width, 1.5 * s)
    heat = value_noise(rng, height, width, 12 * s)
    return Layers(albedo, material, temp, ir, tex.astype(np.float32), heat.astype(np.float32))


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding."""
    if sigma <= 0:
        return img
    r = max(1, math.ceil(2.5 * sigma))
    k = np.exp(-(np.arange(-r, r + 1, dtype=np.float32) ** 2) / (2 * sigma * sigma))
    k /= k.sum()
    h, w = img.shape
    p = np.pad(img, r, mode="edge")
    rows = sum(k[i] * p[i:i + h, :] for i in range(2 * r + 1))
    return sum(k[i] * rows[:, i:i + w] for i in range(2 * r + 1))


def _agc(temp: np.ndarray, min_span: float = 10.0, cold_clip: float = 12.0) -> np.ndarray:
    """Thermal camera automatic gain: temperature to [0, 1] between robust percentiles.

    Low end: the 1st percentile, but never more than `cold_clip` C below the
    median (a cold sky saturates to black instead of flattening the ground);
    high end: the 99.5th percentile, at least `min_span` C above the low end.
    """
    p1, p50, p995 = np.percentile(temp, [1.0, 50.0, 99.5])
    lo = max(p1, p50 - cold_clip)
    hi = max(p995, lo + min_span)
    return (temp - lo) / (hi - lo)


def _match_exposure(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Auto exposure and gain: give `x` the mean and contrast (std) of `reference`.

    A reflective-band camera (InGaAs SWIR) meters the same scene light as the
    visible camera beside it, so its gray levels span a similar range; what
    departs from visible is which materials are bright or dark and the texture.
    """
    sx = float(x.std())
    return reference.mean() + (x - x.mean()) * (float(reference.std()) / sx if sx > 1e-6 else 1.0)


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x * 255.0 + 0.5), 0, 255).astype(np.uint8)


def render_band(layers: Layers, band: str, rng: np.random.Generator, illumination: float = 1.0,
                black_hot: bool = False) -> np.ndarray:
    """One band as uint8: (H, W, 3) for `vis`, (H, W) otherwise."""
    mat = layers.material
    tex = layers.texture * TEX_AMP[mat]
    luma = layers.albedo @ _LUMA
    h, w = mat.shape
    if band in ("vis", "vis_gray"):
        vis = layers.albedo * (illumination * (1.0 + tex))[..., None]
        vis = np.clip(vis + rng.normal(0, 0.006, vis.shape).astype(np.float32), 0.0, 1.0)
        return _to_u8(vis) if band == "vis" else _to_u8(vis @ _LUMA)
    if band == "nir":
        refl = 0.6 * luma + 0.4 * (NIR_REFL[mat] + 0.08 * layers.ir)
        x = refl * illumination * (1.0 + 0.9 * tex) + rng.normal(0, 0.01, (h, w))
    elif band == "swir":
        refl = 0.45 * luma + 0.55 * np.clip(SWIR_REFL[mat] + 0.25 * layers.ir, 0, 1)
        x = refl * illumination * (1.0 + 0.25 * tex)
        x = _match_exposure(x, luma * illumination)
        x = blur(x, 1.0 * max(h, w) / 64) + rng.normal(0, 0.03, (h, w))
    elif band in THERMAL:
        # Uncooled-sensor non-uniformity: vignetting plus a slow drift field.
        yy, xx = np.mgrid[0:h, 0:w]
        r2 = ((yy + 0.5) / h - 0.5) ** 2 + ((xx + 0.5) / w - 0.5) ** 2
        drift = 0.05 * value_noise(rng, h, w, 32 * max(h, w) / 64) - 0.25 * r2
        t = _agc(layers.temp + HEAT_AMP[mat] * layers.heat)
        if band == "mwir":
            x = 0.85 * t + 0.15 * luma * illumination
            x = (blur(x, 0.8 * max(h, w) / 64) + drift + rng.normal(0, 0.025, (h, w))
                 + rng.normal(0, 0.02, (1, w)))
        else:
            x = (blur(t + 0.02 * tex, 1.3 * max(h, w) / 64) + 1.3 * drift + rng.normal(0, 0.04, (h, w))
                 + rng.normal(0, 0.03, (1, w)) + rng.normal(0, 0.015, (h, 1)))
    else:
        raise ValueError(f"cannot render band {band!r}; renderable: {', '.join(RENDERED_BANDS)}")
    if black_hot and band in THERMAL:
        x = 1.0 - x
    return _to_u8(x)


PNG_COMPRESS_LEVEL = 1
"""zlib level of the synthetic PNGs: sensor noise makes them nearly incompressible, and
level 6 spends ~4x the time for a few percent of size."""


def encode(pixels: np.ndarray) -> bytes:
    """Deterministic PNG: RGB for (H, W, 3), single-channel L for (H, W); pixels only, no metadata."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(
        buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buf.getvalue()


assert len(NIR_REFL) == len(M)
