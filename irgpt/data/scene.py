"""Procedural scene graphs: what a synthetic image shows, with exact ground truth.

`make_scene(seed, index, size)` draws everything from the per-scene RNG
`numpy.random.default_rng([seed, index])`, so a scene never depends on which
process made it or in what order. A scene is a background layout (`Region`s:
sky, ground, road, water, vegetation) and `SceneObject`s from `CATEGORIES`,
each a few primitive `Part`s (rectangles / ellipses) carrying a material, a
visible colour and a temperature in degrees C. Boxes are integer pixel
coordinates at the chosen image size (x2, y2 exclusive): exactly the pixels
whose centre a part covers (`span`), so the renderer and the labels agree.

Temperatures follow everyday thermography: skin ~34 C, clothing between skin
and ambient, running engines 15-25 C above ambient, buildings a few degrees
above, vegetation a little below, water cooler, clear sky far below ambient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from irgpt.data.annotations import Annotated

SCENE_NAMES = {"street": "street", "parking_lot": "parking lot", "forest": "forest",
               "campus": "campus", "riverside": "riverside", "highway": "highway",
               "aerial": "aerial view", "crowd": "crowded plaza"}
"""Scene kind -> the name used in captions and scene options (no name contains another)."""
_KIND_WEIGHTS = {"street": 0.13, "parking_lot": 0.13, "forest": 0.13, "campus": 0.13,
                 "riverside": 0.13, "highway": 0.13, "aerial": 0.11, "crowd": 0.11}
COUNTING_TASKS = {"aerial": "aerial_counting", "crowd": "pedestrian_counting"}
CATEGORIES = ("person", "car", "bicycle", "dog", "bus", "motorcycle", "truck", "boat", "bench",
              "building", "tree")
MATERIALS = ("sky", "asphalt", "concrete", "grass", "soil", "water", "foliage", "bark", "skin",
             "fabric", "paint", "glass", "rubber", "fur", "brick", "marking", "wood")
M = {name: i for i, name in enumerate(MATERIALS)}

_COL = {"sky": (0.55, 0.7, 0.95), "asphalt": (0.3, 0.3, 0.32), "concrete": (0.66, 0.65, 0.62),
        "grass": (0.3, 0.55, 0.2), "soil": (0.45, 0.35, 0.25), "water": (0.2, 0.35, 0.5),
        "foliage": (0.16, 0.42, 0.14), "bark": (0.35, 0.25, 0.15), "glass": (0.15, 0.2, 0.25),
        "rubber": (0.08, 0.08, 0.08), "brick": (0.6, 0.3, 0.2), "marking": (0.95, 0.95, 0.9),
        "wood": (0.5, 0.35, 0.2)}
_PAINTS = ((0.8, 0.1, 0.1), (0.1, 0.2, 0.6), (0.9, 0.9, 0.9), (0.1, 0.1, 0.1), (0.5, 0.5, 0.55),
           (0.75, 0.7, 0.2), (0.2, 0.45, 0.2), (0.85, 0.45, 0.1))
_SKINS = ((0.96, 0.8, 0.69), (0.87, 0.67, 0.5), (0.6, 0.42, 0.3), (0.4, 0.27, 0.2))
_FURS = ((0.45, 0.3, 0.15), (0.1, 0.08, 0.06), (0.9, 0.88, 0.82), (0.7, 0.55, 0.3))


@dataclass(frozen=True)
class Part:
    shape: str  # "rect" | "ellipse"
    box: tuple[float, float, float, float]  # pixel coordinates (float)
    material: int
    colour: tuple[float, float, float]  # visible albedo, 0-1
    temp: float  # degrees C
    ir: float = 0.0  # in [-1, 1]: NIR/SWIR reflectance deviation from the material's mean


@dataclass(frozen=True)
class Region:
    """Background area: `all`, `below` (y >= y0 + slope*(x - W/2)), `band` (y0 <= y < y1), `rect`, `ellipse`."""

    shape: str
    params: tuple[float, ...]
    material: int
    colour: tuple[float, float, float]
    temp: float
    vgrad: float = 0.0  # brightness change from top to bottom of the region (sky glow)
    tgrad: float = 0.0  # temperature change (C) from top to bottom of the image


@dataclass(frozen=True)
class PersonIdentity:
    """What makes a person recognisable across crops (ReID), in visible and thermal."""

    skin: tuple[float, float, float]
    upper: tuple[float, float, float]
    lower: tuple[float, float, float]
    upper_dt: float  # clothing insulation: C below the skin/ambient mix
    lower_dt: float
    width_ratio: float
    stature: float
    bag: int  # 0 none, 1 left, 2 right
    hat: bool
    upper_ir: float
    lower_ir: float


@dataclass
class SceneObject:
    category: str
    box: tuple[int, int, int, int]
    parts: tuple[Part, ...]
    running: bool = False
    identity: PersonIdentity | None = None

    @property
    def temperature(self) -> float:
        return max(p.temp for p in self.parts)


@dataclass
class Scene:
    seed: int
    index: int
    size: int
    kind: str
    ambient: float
    illumination: float
    regions: list[Region]
    objects: list[SceneObject] = field(default_factory=list)

    @property
    def scene_id(self) -> str:
        return f"synth-s{self.seed}-{self.index:06d}"

    @property
    def name(self) -> str:
        return SCENE_NAMES[self.kind]

    def count(self, category: str) -> int:
        return sum(1 for o in self.objects if o.category == category)

    def notes(self, band: str) -> tuple[str, ...]:
        """Band-specific caption sentences that are true of this scene."""
        has_sky = any(r.material == M["sky"] for r in self.regions)
        if band in ("mwir", "lwir") and self.objects:
            hot = max(self.objects, key=lambda o: o.temperature)
            the = "The" if self.count(hot.category) == 1 else "A"
            out = [f"{the} {hot.category} is the warmest object."]
            running = [o for o in self.objects if o.running and o is not hot]
            if running:
                out.append(f"A running {running[0].category} has a warm engine.")
            elif has_sky:
                out.append("The sky is the coldest region.")
            return tuple(out)
        if band == "nir":
            if any(r.material == M["water"] for r in self.regions):
                return ("The water appears dark.",)
            if any(o.category == "tree" for o in self.objects) or self.kind == "forest":
                return ("Vegetation appears bright.",)
        if band == "swir" and has_sky:
            return ("The sky appears dark.",)
        return ()

    def annotated(self, band: str) -> Annotated:
        objs = tuple((o.category, *map(float, o.box)) for o in self.objects)
        return Annotated(self.scene_id, None, self.size, self.size, objs, self.name, self.notes(band))


# ------------------------------------------------------------ geometry ----
def span(a: float, b: float) -> tuple[int, int]:
    """Pixel indices [i0, i1) whose centres i + 0.5 lie in [a, b)."""
    return math.ceil(a - 0.5), math.ceil(b - 0.5)


def _parts(x1, y1, x2, y2, spec, flip=False, transpose=False) -> list[Part]:
    """Parts from (shape, fx1, fy1, fx2, fy2, material, colour, temp, ir) in box fractions."""
    w, h = x2 - x1, y2 - y1
    out = []
    for shape, a1, b1, a2, b2, mat, col, temp, ir in spec:
        if flip:
            a1, a2 = 1 - a2, 1 - a1
        if transpose:
            a1, b1, a2, b2 = b1, a1, b2, a2
        out.append(Part(shape, (x1 + a1 * w, y1 + b1 * h, x1 + a2 * w, y1 + b2 * h), M[mat],
                        tuple(float(c) for c in col), float(temp), float(ir)))
    return out


def _make(category, parts, size, **kw) -> SceneObject | None:
    xs, ys = [], []
    for p in parts:
        xs += span(p.box[0], p.box[2])
        ys += span(p.box[1], p.box[3])
    box = (max(min(xs), 0), max(min(ys), 0), min(max(xs), size), min(max(ys), size))
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return None
    return SceneObject(category, box, tuple(parts), **kw)


def _jit(rng, col, amount=0.15):
    f = rng.uniform(1 - amount, 1 + amount, 3)
    return tuple(min(max(float(c * k), 0.0), 1.0) for c, k in zip(col, f))


def random_identity(rng) -> PersonIdentity:
    return PersonIdentity(
        skin=_SKINS[int(rng.integers(len(_SKINS)))], upper=tuple(rng.uniform(0.05, 0.95, 3)),
        lower=tuple(rng.uniform(0.05, 0.8, 3)), upper_dt=float(rng.uniform(-4, 0)),
        lower_dt=float(rng.uniform(-4, 0)), width_ratio=float(rng.uniform(0.3, 0.5)),
        stature=float(rng.uniform(0.8, 1.0)), bag=int(rng.integers(3)), hat=bool(rng.random() < 0.3),
        upper_ir=float(rng.uniform(-1, 1)), lower_ir=float(rng.uniform(-1, 1)))


def person(x1, y1, h, ident: PersonIdentity, ambient, size, pose=0.0) -> SceneObject | None:
    """A standing person whose feet are at y1 + h; `pose` in [-1, 1] spreads the legs."""
    w = h * ident.width_ratio
    skin_t = 34.0
    up_t = 0.8 * skin_t + 0.2 * ambient + ident.upper_dt
    lo_t = 0.75 * skin_t + 0.25 * ambient + ident.lower_dt
    b0, b1 = {0: (0.0, 1.0), 1: (0.25, 1.0), 2: (0.0, 0.75)}[ident.bag]
    bw = b1 - b0
    cx = b0 + bw / 2
    g = 0.06 * pose
    spec = [("ellipse", cx - 0.24 * bw, 0.0, cx + 0.24 * bw, 0.2, "skin", ident.skin, skin_t, 0),
            ("rect", b0 + 0.08 * bw, 0.18, b1 - 0.08 * bw, 0.56, "fabric", ident.upper, up_t, ident.upper_ir),
            ("rect", b0 + (0.14 - g) * bw, 0.55, b0 + (0.46 - g) * bw, 1.0, "fabric", ident.lower, lo_t, ident.lower_ir),
            ("rect", b0 + (0.54 + g) * bw, 0.55, b0 + (0.86 + g) * bw, 1.0, "fabric", ident.lower, lo_t, ident.lower_ir)]
    if ident.hat:
        spec.append(("rect", cx - 0.28 * bw, 0.0, cx + 0.28 * bw, 0.07, "fabric", (0.2, 0.2, 0.2), ambient + 3, 0.5))
    if ident.bag:
        a = 0.0 if ident.bag == 1 else 0.75
        spec.append(("rect", a, 0.33, a + 0.25, 0.62, "fabric", (0.35, 0.25, 0.15), ambient + 1, -0.5))
    return _make("person", _parts(x1, y1, x1 + w, y1 + h, spec), size, identity=ident)


def _vehicle_side(cat, x1, y1, h, rng, ambient, size) -> SceneObject | None:
    w = h * _ASPECT[cat]
    run = bool(rng.random() < 0.6)
    paint = _jit(rng, _PAINTS[int(rng.integers(len(_PAINTS)))])
    body_t, eng_t = ambient + rng.uniform(0, 2) + (6 if run else 0), ambient + (rng.uniform(15, 25) if run else 1)
    ir = rng.uniform(-1, 1)
    wheel_t = ambient + (8 if run else 0.5)
    if cat == "car":
        spec = [("rect", 0, 0.35, 1, 0.8, "paint", paint, body_t, ir),
                ("rect", 0.18, 0.0, 0.72, 0.4, "glass", _COL["glass"], ambient - 2, 0),
                ("rect", 0.75, 0.35, 1.0, 0.62, "paint", paint, eng_t, ir),
                ("ellipse", 0.08, 0.6, 0.32, 1.0, "rubber", _COL["rubber"], wheel_t, 0),
                ("ellipse", 0.68, 0.6, 0.92, 1.0, "rubber", _COL["rubber"], wheel_t, 0)]
    elif cat == "bus":
        spec = [("rect", 0, 0, 1, 0.85, "paint", paint, body_t, ir),
                ("rect", 0.05, 0.12, 0.95, 0.45, "glass", _COL["glass"], ambient - 1, 0),
                ("rect", 0.0, 0.5, 0.15, 0.85, "paint", paint, eng_t, ir),
                ("ellipse", 0.08, 0.72, 0.22, 1.0, "rubber", _COL["rubber"], wheel_t, 0),
                ("ellipse", 0.75, 0.72, 0.89, 1.0, "rubber", _COL["rubber"], wheel_t, 0)]
    else:
        cargo = _jit(rng, _PAINTS[int(rng.integers(len(_PAINTS)))])
        spec = [("rect", 0, 0, 0.68, 0.82, "paint", cargo, ambient + rng.uniform(0, 2), -ir),
                ("rect", 0.7, 0.25, 1.0, 0.82, "paint", paint, body_t, ir),
                ("rect", 0.75, 0.3, 0.95, 0.5, "glass", _COL["glass"], ambient - 2, 0),
                ("rect", 0.7, 0.55, 1.0, 0.82, "paint", paint, eng_t, ir),
                *[("ellipse", a, 0.7, a + 0.16, 1.0, "rubber", _COL["rubber"], wheel_t, 0) for a in (0.06, 0.48, 0.78)]]
    parts = _parts(x1, y1, x1 + w, y1 + h, spec, flip=bool(rng.random() < 0.5))
    return _make(cat, parts, size, running=run)


def _vehicle_top(cat, x1, y1, length, rng, ambient, size, vertical) -> SceneObject | None:
    width = length * (0.45 if cat == "car" else 0.4)
    run = bool(rng.random() < 0.5)
    paint = _jit(rng, _PAINTS[int(rng.integers(len(_PAINTS)))])
    ir = rng.uniform(-1, 1)
    body_t, eng_t = ambient + rng.uniform(1, 4), ambient + (rng.uniform(15, 25) if run else 2)
    spec = [("rect", 0, 0, 1, 1, "paint", paint, body_t, ir),
            ("rect", 0.55, 0.1, 0.7, 0.9, "glass", _COL["glass"], ambient - 3, 0),
            ("rect", 0.72, 0.08, 1.0, 0.92, "paint", paint, eng_t, ir)]
    if cat != "car":
        spec[1] = ("rect", 0.0, 0.1, 0.68, 0.9, "paint", _jit(rng, (0.8, 0.8, 0.8)), ambient + 3, -ir)
    w, h = (width, length) if vertical else (length, width)
    parts = _parts(x1, y1, x1 + w, y1 + h, spec, flip=bool(rng.random() < 0.5), transpose=vertical)
    return _make(cat, parts, size, running=run)


def _simple(cat, x1, y1, h, rng, ambient, size) -> SceneObject | None:
    run = False
    if cat == "bicycle":
        w, col = _ASPECT[cat] * h, _jit(rng, _PAINTS[int(rng.integers(len(_PAINTS)))])
        spec = [("ellipse", 0, 0.45, 0.42, 1, "rubber", _COL["rubber"], ambient, 0),
                ("ellipse", 0.58, 0.45, 1, 1, "rubber", _COL["rubber"], ambient, 0),
                ("rect", 0.2, 0.45, 0.8, 0.6, "paint", col, ambient + 0.5, rng.uniform(-1, 1)),
                ("rect", 0.68, 0.15, 0.78, 0.5, "paint", col, ambient + 0.5, 0)]
    elif cat == "motorcycle":
        run = bool(rng.random() < 0.6)
        w, col = _ASPECT[cat] * h, _jit(rng, _PAINTS[int(rng.integers(len(_PAINTS)))])
        wt = ambient + (6 if run else 0.5)
        spec = [("ellipse", 0, 0.5, 0.35, 1, "rubber", _COL["rubber"], wt, 0),
                ("ellipse", 0.65, 0.5, 1, 1, "rubber", _COL["rubber"], wt, 0),
                ("rect", 0.2, 0.2, 0.85, 0.6, "paint", col, ambient + 2, rng.uniform(-1, 1)),
                ("ellipse", 0.35, 0.42, 0.65, 0.8, "paint", (0.3, 0.3, 0.3), ambient + (25 if run else 1), 0)]
    elif cat == "dog":
        w, col, t = _ASPECT[cat] * h, _jit(rng, _FURS[int(rng.integers(len(_FURS)))]), rng.uniform(30, 34)
        spec = [("ellipse", 0.05, 0.25, 0.75, 0.7, "fur", col, t, 0),
                ("ellipse", 0.65, 0.0, 1.0, 0.45, "fur", col, t + 1.5, 0),
                ("rect", 0.12, 0.6, 0.24, 1.0, "fur", col, t - 1, 0),
                ("rect", 0.55, 0.6, 0.67, 1.0, "fur", col, t - 1, 0)]
    elif cat == "bench":
        w = _ASPECT[cat] * h
        spec = [("rect", 0, 0.3, 1, 0.5, "wood", _jit(rng, _COL["wood"]), ambient + 1, 0),
                ("rect", 0, 0, 1, 0.18, "wood", _jit(rng, _COL["wood"]), ambient + 1, 0),
                ("rect", 0.05, 0.5, 0.12, 1, "paint", (0.2, 0.2, 0.2), ambient, 0),
                ("rect", 0.88, 0.5, 0.95, 1, "paint", (0.2, 0.2, 0.2), ambient, 0)]
    elif cat == "boat":
        run = bool(rng.random() < 0.5)
        w, col = _ASPECT[cat] * h, _jit(rng, _PAINTS[int(rng.integers(len(_PAINTS)))])
        spec = [("rect", 0, 0.5, 1, 1, "paint", col, ambient + rng.uniform(0, 4), rng.uniform(-1, 1)),
                ("rect", 0.3, 0.0, 0.7, 0.5, "paint", (0.9, 0.9, 0.88), ambient + 2, 0.3),
                ("rect", 0.35, 0.1, 0.65, 0.3, "glass", _COL["glass"], ambient - 2, 0),
                ("rect", 0.0, 0.55, 0.12, 0.9, "paint", col, ambient + (20 if run else 1), 0)]
    else:
        raise ValueError(cat)
    return _make(cat, _parts(x1, y1, x1 + w, y1 + h, spec, flip=bool(rng.random() < 0.5)), size, running=run)


def building(x1, y1, w, h, rng, ambient, size) -> SceneObject | None:
    mat = "brick" if rng.random() < 0.4 else "concrete"
    wall_t = ambient + rng.uniform(2, 6)
    spec = [("rect", 0, 0, 1, 1, mat, _jit(rng, _COL[mat]), wall_t, rng.uniform(-1, 1))]
    rows, cols = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    for r in range(rows):
        for c in range(cols):
            lit = rng.random() < 0.4
            fx, fy = (c + 0.25) / cols, 0.08 + (r + 0.2) / rows * 0.8
            spec.append(("rect", fx, fy, fx + 0.5 / cols, fy + 0.45 / rows * 0.8, "glass",
                         (0.9, 0.8, 0.5) if lit else _COL["glass"], wall_t + (6 if lit else -1), 0))
    return _make("building", _parts(x1, y1, x1 + w, y1 + h, spec), size)


def tree(x1, y1, w, h, rng, ambient, size) -> SceneObject | None:
    spec = [("rect", 0.42, 0.6, 0.58, 1.0, "bark", _jit(rng, _COL["bark"]), ambient, 0),
            ("ellipse", 0, 0, 1, 0.72, "foliage", _jit(rng, _COL["foliage"]), ambient - rng.uniform(1, 3), rng.uniform(-0.5, 0.5))]
    return _make("tree", _parts(x1, y1, x1 + w, y1 + h, spec), size)


# ------------------------------------------------------------- layout ----
def _overlaps(box, boxes, gap=1) -> bool:
    return any(box[0] < b[2] + gap and b[0] < box[2] + gap and box[1] < b[3] + gap and b[1] < box[3] + gap
               for b in boxes)


_FOREGROUND = {  # category: (height as fraction of the image at the nearest row, count ranges per kind)
    "person": 0.32, "car": 0.2, "bus": 0.3, "truck": 0.28, "bicycle": 0.15, "motorcycle": 0.16,
    "dog": 0.1, "bench": 0.08, "boat": 0.12}
_ASPECT = {"car": 1.9, "bus": 2.7, "truck": 2.3, "bicycle": 1.5, "motorcycle": 1.6, "dog": 1.4,
           "bench": 2.5, "boat": 2.5}
_COMPOSITION = {
    "street": {"car": (1, 3), "person": (1, 3), "bicycle": (0, 1), "dog": (0, 1), "bus": (0, 1),
               "motorcycle": (0, 1), "building": (1, 3), "tree": (0, 2)},
    "parking_lot": {"car": (2, 5), "truck": (0, 1), "person": (0, 2), "motorcycle": (0, 1),
                    "building": (0, 1), "tree": (0, 1)},
    "forest": {"tree": (3, 6), "person": (0, 2), "dog": (0, 1)},
    "campus": {"building": (1, 2), "person": (1, 4), "bicycle": (0, 2), "tree": (1, 3), "dog": (0, 1)},
    "riverside": {"boat": (1, 2), "person": (0, 2), "tree": (1, 3), "dog": (0, 1), "bench": (0, 1)},
    "highway": {"car": (2, 5), "truck": (0, 2), "bus": (0, 1), "motorcycle": (0, 1), "tree": (0, 2)},
}


def _background(kind, rng, S, ambient) -> tuple[list[Region], float, tuple[float, float] | None]:
    """Regions, horizon y, and the water band (riverside) in pixels."""
    hz = S * rng.uniform(0.3, 0.48)
    slope = rng.uniform(-0.06, 0.06)
    sky = Region("all", (), M["sky"], _jit(rng, _COL["sky"], 0.1), ambient - rng.uniform(10, 20), vgrad=0.25, tgrad=6)

    def reg(shape, params, mat, dt, **kw):
        return Region(shape, params, M[mat], _jit(rng, _COL[mat], 0.1), ambient + dt, **kw)

    water = None
    if kind == "street":
        regs = [sky, reg("below", (hz, slope), "concrete", rng.uniform(0, 3)),
                reg("below", (hz + 0.25 * (S - hz), slope), "asphalt", rng.uniform(1, 6))]
    elif kind == "parking_lot":
        regs = [sky, reg("below", (hz, slope), "asphalt", rng.uniform(1, 6))]
        for k in range(int(rng.integers(3, 7))):
            x = S * (k + rng.uniform(0.3, 0.7)) / 6
            regs.append(reg("rect", (x, hz + 0.4 * (S - hz), x + max(1.0, S / 64), S), "marking", 1))
    elif kind == "forest":
        regs = [sky, reg("band", (hz - 0.18 * S, hz + 2, 0.0), "foliage", -2),
                reg("below", (hz, slope), "grass", -1),
                reg("ellipse", (S * rng.uniform(0.2, 0.8), S * 0.85, S * 0.3, S * 0.1), "soil", 1)]
    elif kind == "campus":
        regs = [sky, reg("below", (hz, slope), "grass", -1),
                reg("band", (hz + 0.45 * (S - hz), hz + 0.65 * (S - hz), slope), "concrete", 3)]
    elif kind == "riverside":
        w0, w1 = hz + 0.08 * (S - hz), hz + 0.42 * (S - hz)
        water = (w0, w1)
        regs = [sky, reg("below", (hz, 0.0), "grass", -1), reg("band", (w0, w1, 0.0), "water", -rng.uniform(2, 5))]
    elif kind == "highway":
        regs = [sky, reg("below", (hz, slope), "grass", -1),
                reg("below", (hz + 0.1 * (S - hz), slope), "asphalt", rng.uniform(1, 6))]
        regs.append(reg("rect", (0, hz + 0.6 * (S - hz), S, hz + 0.6 * (S - hz) + max(1.0, S / 64)), "marking", 1))
    elif kind == "aerial":
        hz = 0.0
        m = rng.uniform(0.0, 0.12, 4) * S
        regs = [reg("all", (), "grass", -1), reg("rect", (m[0], m[1], S - m[2], S - m[3]), "asphalt", rng.uniform(1, 7))]
    else:  # crowd
        hz = S * rng.uniform(0.12, 0.22)
        regs = [sky, reg("below", (hz, 0.0), "concrete", rng.uniform(0, 3))]
    return regs, hz, water


def _ground_objects(kind, rng, S, hz, water, ambient) -> list[SceneObject]:
    """Objects standing on the ground, larger when nearer (lower); none overlap within a layer.

    A candidate's frame (x, y, w, h) is checked before its parts are built: parts
    lie inside the frame, so the object's box does too.
    """
    back, fore = [], []
    for cat, (lo, hi) in _COMPOSITION[kind].items():
        for _ in range(int(rng.integers(lo, hi + 1))):
            for _try in range(20):
                ident = None
                if cat in ("building", "tree"):
                    w, h = S * rng.uniform(0.14, 0.3), S * rng.uniform(0.22, 0.45)
                    if cat == "tree" and kind == "forest":
                        h *= rng.uniform(1.0, 1.6)
                    yb = hz + (S - hz) * (rng.uniform(0.0, 0.08) if cat == "building" else rng.uniform(0.02, 0.3))
                    pool = back
                else:
                    if cat == "boat":
                        yb = rng.uniform(water[0] + 0.4 * (water[1] - water[0]), water[1])
                    else:
                        y_lo = water[1] + 2 if water else hz + 0.15 * (S - hz)
                        yb = rng.uniform(min(y_lo, S - 2), S - 1)
                    h = S * _FOREGROUND[cat] * (0.35 + 0.65 * (yb - hz) / (S - hz))
                    if cat == "person":
                        ident = random_identity(rng)
                        h *= ident.stature
                    w = h * (ident.width_ratio if ident else _ASPECT[cat])
                    pool = fore
                x, y = rng.uniform(0, max(S - w, 0.0)), yb - h
                frame = (x, y, x + w, yb)
                if y < 0 or x + w > S or _overlaps(frame, [o.box for o in pool]):
                    continue
                if cat == "building":
                    obj = building(x, y, w, h, rng, ambient, S)
                elif cat == "tree":
                    obj = tree(x, y, w, h, rng, ambient, S)
                elif cat == "person":
                    obj = person(x, y, h, ident, ambient, S, rng.uniform(-1, 1))
                elif cat in ("car", "bus", "truck"):
                    obj = _vehicle_side(cat, x, y, h, rng, ambient, S)
                else:
                    obj = _simple(cat, x, y, h, rng, ambient, S)
                if obj is not None:
                    pool.append(obj)
                    break
    key = lambda o: o.box[3]  # noqa: E731 - painter's order: farther (higher) first
    return sorted(back, key=key) + sorted(fore, key=key)


def _grid_cells(rng, n, rows, cols):
    cells = rng.choice(rows * cols, size=n, replace=False)
    return [(int(c) // cols, int(c) % cols) for c in sorted(cells)]


def _aerial_objects(rng, S, ambient) -> list[SceneObject]:
    n, g = int(rng.integers(3, 31)), 6
    cell = S / g
    out = []
    for r, c in _grid_cells(rng, n, g, g):
        u = rng.random()
        cat = "car" if u < 0.8 else ("truck" if u < 0.92 else "bus")
        length = cell * (0.72 if cat == "car" else 0.9) * rng.uniform(0.9, 1.0)
        vertical = bool(rng.random() < 0.5)
        wid = length * (0.45 if cat == "car" else 0.4)
        w, h = (wid, length) if vertical else (length, wid)
        x = c * cell + rng.uniform(0.02, 0.98) * (cell - w)
        y = r * cell + rng.uniform(0.02, 0.98) * (cell - h)
        obj = _vehicle_top(cat, x, y, length, rng, ambient, S, vertical)
        if obj is not None:
            out.append(obj)
    return out


def _crowd_objects(rng, S, hz, ambient) -> list[SceneObject]:
    back = []
    for _ in range(int(rng.integers(0, 3))):
        w, h = S * rng.uniform(0.15, 0.3), hz * rng.uniform(0.7, 1.0)
        obj = building(rng.uniform(0, S - w), hz - h + 1, w, h, rng, ambient, S)
        if obj is not None and not _overlaps(obj.box, [o.box for o in back]):
            back.append(obj)
    rows, cols = 5, 8
    y0 = hz + 0.04 * S
    ch, cw = (S - y0) / rows, S / cols
    people = []
    for r, c in _grid_cells(rng, int(rng.integers(3, 41)), rows, cols):
        ident = random_identity(rng)
        h = ch * 0.85 * ident.stature
        h = min(h, cw * 0.9 / ident.width_ratio)
        x = c * cw + rng.uniform(0.05, 0.95) * (cw - h * ident.width_ratio)
        y = y0 + r * ch + rng.uniform(0.05, 0.95) * (ch - h)
        obj = person(x, y, h, ident, ambient, S, rng.uniform(-1, 1))
        if obj is not None:
            people.append(obj)
    return back + sorted(people, key=lambda o: o.box[3])


def _draw_kind(rng: np.random.Generator) -> str:
    kinds = list(_KIND_WEIGHTS)
    p = np.array(list(_KIND_WEIGHTS.values()))
    return kinds[int(rng.choice(len(kinds), p=p / p.sum()))]


def scene_kind(seed: int, index: int) -> str:
    """The kind of scene `index` without building it (the RNG's first draw)."""
    return _draw_kind(np.random.default_rng([seed, index]))


def make_scene(seed: int, index: int, size: int) -> Scene:
    """Scene `index` of the dataset with `seed`, laid out at `size` x `size` pixels."""
    rng = np.random.default_rng([seed, index])
    kind = _draw_kind(rng)
    ambient = float(rng.uniform(0, 25))
    illumination = float(rng.uniform(0.6, 1.0))
    regions, hz, water = _background(kind, rng, size, ambient)
    if kind == "aerial":
        objects = _aerial_objects(rng, size, ambient)
    elif kind == "crowd":
        objects = _crowd_objects(rng, size, hz, ambient)
    else:
        objects = _ground_objects(kind, rng, size, hz, water, ambient)
    return Scene(seed, index, size, kind, ambient, illumination, regions, objects)


def reid_grid(scene: Scene, rng: np.random.Generator) -> tuple[list[Region], list[SceneObject], int]:
    """A 2x4 grid of person crops numbered 1-8 (`1234` over `5678`).

    Crop 1 (top-left) shows the scene's first person; exactly one of crops 2-8
    shows the same identity (another pose, scale and background); the others
    are new identities. Returns (regions, objects, answer number 2-8). Raises
    ValueError when the scene has no person.
    """
    query = next((o.identity for o in scene.objects if o.identity is not None), None)
    if query is None:
        raise ValueError("scene has no person")
    S = scene.size
    cw, ch = S / 4, S / 2
    answer = int(rng.integers(2, 9))
    regions, objects = [], []
    for cell in range(8):
        r, c = divmod(cell, 4)
        x0, y0 = c * cw, r * ch
        mat = ("concrete", "asphalt", "grass", "brick")[int(rng.integers(4))]
        regions.append(Region("rect", (x0, y0, x0 + cw, y0 + ch), M[mat], _jit(rng, _COL[mat], 0.1),
                              scene.ambient + rng.uniform(-2, 6)))
        ident = query if cell in (0, answer - 1) else random_identity(rng)
        h = ch * 0.9 * ident.stature * rng.uniform(0.92, 1.0)
        h = min(h, cw * 0.95 / ident.width_ratio)
        x = x0 + rng.uniform(0.1, 0.9) * (cw - h * ident.width_ratio)
        y = y0 + ch - h - rng.uniform(0.0, 0.06) * ch
        obj = person(x, y, h, ident, scene.ambient, S, rng.uniform(-1, 1))
        if obj is not None:
            objects.append(obj)
    return regions, objects, answer
