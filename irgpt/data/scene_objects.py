"""The parts of a synthetic scene: materials, colours, `Part`, `Region`, `SceneObject`,
`Scene`, and the builders of each object category (people, vehicles, animals,
buildings, trees), with their temperatures.

Boxes are integer pixel coordinates at the chosen image size (x2, y2
exclusive): exactly the pixels whose centre a part covers (`span`), so the
renderer and the labels agree. Temperatures follow everyday thermography:
skin ~34 C, clothing between skin and ambient, running engines 15-25 C above
ambient, buildings a few degrees above, vegetation a little below, water
cooler, clear sky far below ambient. `irgpt.data.scene` lays them out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from irgpt.data.annotations import Annotated

SCENE_NAMES = {"street": "street", "parking_lot": "parking lot", "forest": "forest",
               "campus": "campus", "riverside": "riverside", "highway": "highway",
               "aerial": "aerial view", "crowd": "crowded plaza"}
"""Scene kind -> the name used in captions and scene options (no name contains another)."""
KIND_WEIGHTS = {"street": 0.13, "parking_lot": 0.13, "forest": 0.13, "campus": 0.13,
                 "riverside": 0.13, "highway": 0.13, "aerial": 0.11, "crowd": 0.11}
COUNTING_TASKS = {"aerial": "aerial_counting", "crowd": "pedestrian_counting"}
CATEGORIES = ("person", "car", "bicycle", "dog", "bus", "motorcycle", "truck", "boat", "bench",
              "building", "tree")
MATERIALS = ("sky", "asphalt", "concrete", "grass", "soil", "water", "foliage", "bark", "skin",
             "fabric", "paint", "glass", "rubber", "fur", "brick", "marking", "wood")
M = {name: i for i, name in enumerate(MATERIALS)}

COLOURS = {"sky": (0.55, 0.7, 0.95), "asphalt": (0.3, 0.3, 0.32), "concrete": (0.66, 0.65, 0.62),
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
ASPECT = {"car": 1.9, "bus": 2.7, "truck": 2.3, "bicycle": 1.5, "motorcycle": 1.6, "dog": 1.4,
           "bench": 2.5, "boat": 2.5}


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


def jitter(rng, col, amount=0.15):
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


def vehicle_side(cat, x1, y1, h, rng, ambient, size) -> SceneObject | None:
    w = h * ASPECT[cat]
    run = bool(rng.random() < 0.6)
    paint = jitter(rng, _PAINTS[int(rng.integers(len(_PAINTS)))])
    body_t, eng_t = ambient + rng.uniform(0, 2) + (6 if run else 0), ambient + (rng.uniform(15, 25) if run else 1)
    ir = rng.uniform(-1, 1)
    wheel_t = ambient + (8 if run else 0.5)
    if cat == "car":
        spec = [("rect", 0, 0.35, 1, 0.8, "paint", paint, body_t, ir),
                ("rect", 0.18, 0.0, 0.72, 0.4, "glass", COLOURS["glass"], ambient - 2, 0),
                ("rect", 0.75, 0.35, 1.0, 0.62, "paint", paint, eng_t, ir),
                ("ellipse", 0.08, 0.6, 0.32, 1.0, "rubber", COLOURS["rubber"], wheel_t, 0),
                ("ellipse", 0.68, 0.6, 0.92, 1.0, "rubber", COLOURS["rubber"], wheel_t, 0)]
    elif cat == "bus":
        spec = [("rect", 0, 0, 1, 0.85, "paint", paint, body_t, ir),
                ("rect", 0.05, 0.12, 0.95, 0.45, "glass", COLOURS["glass"], ambient - 1, 0),
                ("rect", 0.0, 0.5, 0.15, 0.85, "paint", paint, eng_t, ir),
                ("ellipse", 0.08, 0.72, 0.22, 1.0, "rubber", COLOURS["rubber"], wheel_t, 0),
                ("ellipse", 0.75, 0.72, 0.89, 1.0, "rubber", COLOURS["rubber"], wheel_t, 0)]
    else:
        cargo = jitter(rng, _PAINTS[int(rng.integers(len(_PAINTS)))])
        spec = [("rect", 0, 0, 0.68, 0.82, "paint", cargo, ambient + rng.uniform(0, 2), -ir),
                ("rect", 0.7, 0.25, 1.0, 0.82, "paint", paint, body_t, ir),
                ("rect", 0.75, 0.3, 0.95, 0.5, "glass", COLOURS["glass"], ambient - 2, 0),
                ("rect", 0.7, 0.55, 1.0, 0.82, "paint", paint, eng_t, ir),
                *[("ellipse", a, 0.7, a + 0.16, 1.0, "rubber", COLOURS["rubber"], wheel_t, 0) for a in (0.06, 0.48, 0.78)]]
    parts = _parts(x1, y1, x1 + w, y1 + h, spec, flip=bool(rng.random() < 0.5))
    return _make(cat, parts, size, running=run)


def vehicle_top(cat, x1, y1, length, rng, ambient, size, vertical) -> SceneObject | None:
    width = length * (0.45 if cat == "car" else 0.4)
    run = bool(rng.random() < 0.5)
    paint = jitter(rng, _PAINTS[int(rng.integers(len(_PAINTS)))])
    ir = rng.uniform(-1, 1)
    body_t, eng_t = ambient + rng.uniform(1, 4), ambient + (rng.uniform(15, 25) if run else 2)
    spec = [("rect", 0, 0, 1, 1, "paint", paint, body_t, ir),
            ("rect", 0.55, 0.1, 0.7, 0.9, "glass", COLOURS["glass"], ambient - 3, 0),
            ("rect", 0.72, 0.08, 1.0, 0.92, "paint", paint, eng_t, ir)]
    if cat != "car":
        spec[1] = ("rect", 0.0, 0.1, 0.68, 0.9, "paint", jitter(rng, (0.8, 0.8, 0.8)), ambient + 3, -ir)
    w, h = (width, length) if vertical else (length, width)
    parts = _parts(x1, y1, x1 + w, y1 + h, spec, flip=bool(rng.random() < 0.5), transpose=vertical)
    return _make(cat, parts, size, running=run)


def small_object(cat, x1, y1, h, rng, ambient, size) -> SceneObject | None:
    run = False
    if cat == "bicycle":
        w, col = ASPECT[cat] * h, jitter(rng, _PAINTS[int(rng.integers(len(_PAINTS)))])
        spec = [("ellipse", 0, 0.45, 0.42, 1, "rubber", COLOURS["rubber"], ambient, 0),
                ("ellipse", 0.58, 0.45, 1, 1, "rubber", COLOURS["rubber"], ambient, 0),
                ("rect", 0.2, 0.45, 0.8, 0.6, "paint", col, ambient + 0.5, rng.uniform(-1, 1)),
                ("rect", 0.68, 0.15, 0.78, 0.5, "paint", col, ambient + 0.5, 0)]
    elif cat == "motorcycle":
        run = bool(rng.random() < 0.6)
        w, col = ASPECT[cat] * h, jitter(rng, _PAINTS[int(rng.integers(len(_PAINTS)))])
        wt = ambient + (6 if run else 0.5)
        spec = [("ellipse", 0, 0.5, 0.35, 1, "rubber", COLOURS["rubber"], wt, 0),
                ("ellipse", 0.65, 0.5, 1, 1, "rubber", COLOURS["rubber"], wt, 0),
                ("rect", 0.2, 0.2, 0.85, 0.6, "paint", col, ambient + 2, rng.uniform(-1, 1)),
                ("ellipse", 0.35, 0.42, 0.65, 0.8, "paint", (0.3, 0.3, 0.3), ambient + (25 if run else 1), 0)]
    elif cat == "dog":
        w, col, t = ASPECT[cat] * h, jitter(rng, _FURS[int(rng.integers(len(_FURS)))]), rng.uniform(30, 34)
        spec = [("ellipse", 0.05, 0.25, 0.75, 0.7, "fur", col, t, 0),
                ("ellipse", 0.65, 0.0, 1.0, 0.45, "fur", col, t + 1.5, 0),
                ("rect", 0.12, 0.6, 0.24, 1.0, "fur", col, t - 1, 0),
                ("rect", 0.55, 0.6, 0.67, 1.0, "fur", col, t - 1, 0)]
    elif cat == "bench":
        w = ASPECT[cat] * h
        spec = [("rect", 0, 0.3, 1, 0.5, "wood", jitter(rng, COLOURS["wood"]), ambient + 1, 0),
                ("rect", 0, 0, 1, 0.18, "wood", jitter(rng, COLOURS["wood"]), ambient + 1, 0),
                ("rect", 0.05, 0.5, 0.12, 1, "paint", (0.2, 0.2, 0.2), ambient, 0),
                ("rect", 0.88, 0.5, 0.95, 1, "paint", (0.2, 0.2, 0.2), ambient, 0)]
    elif cat == "boat":
        run = bool(rng.random() < 0.5)
        w, col = ASPECT[cat] * h, jitter(rng, _PAINTS[int(rng.integers(len(_PAINTS)))])
        spec = [("rect", 0, 0.5, 1, 1, "paint", col, ambient + rng.uniform(0, 4), rng.uniform(-1, 1)),
                ("rect", 0.3, 0.0, 0.7, 0.5, "paint", (0.9, 0.9, 0.88), ambient + 2, 0.3),
                ("rect", 0.35, 0.1, 0.65, 0.3, "glass", COLOURS["glass"], ambient - 2, 0),
                ("rect", 0.0, 0.55, 0.12, 0.9, "paint", col, ambient + (20 if run else 1), 0)]
    else:
        raise ValueError(cat)
    return _make(cat, _parts(x1, y1, x1 + w, y1 + h, spec, flip=bool(rng.random() < 0.5)), size, running=run)


def building(x1, y1, w, h, rng, ambient, size) -> SceneObject | None:
    mat = "brick" if rng.random() < 0.4 else "concrete"
    wall_t = ambient + rng.uniform(2, 6)
    spec = [("rect", 0, 0, 1, 1, mat, jitter(rng, COLOURS[mat]), wall_t, rng.uniform(-1, 1))]
    rows, cols = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    for r in range(rows):
        for c in range(cols):
            lit = rng.random() < 0.4
            fx, fy = (c + 0.25) / cols, 0.08 + (r + 0.2) / rows * 0.8
            spec.append(("rect", fx, fy, fx + 0.5 / cols, fy + 0.45 / rows * 0.8, "glass",
                         (0.9, 0.8, 0.5) if lit else COLOURS["glass"], wall_t + (6 if lit else -1), 0))
    return _make("building", _parts(x1, y1, x1 + w, y1 + h, spec), size)


def tree(x1, y1, w, h, rng, ambient, size) -> SceneObject | None:
    spec = [("rect", 0.42, 0.6, 0.58, 1.0, "bark", jitter(rng, COLOURS["bark"]), ambient, 0),
            ("ellipse", 0, 0, 1, 0.72, "foliage", jitter(rng, COLOURS["foliage"]), ambient - rng.uniform(1, 3), rng.uniform(-0.5, 0.5))]
    return _make("tree", _parts(x1, y1, x1 + w, y1 + h, spec), size)
