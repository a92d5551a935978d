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

import numpy as np

from irgpt.data.scene_objects import (
    ASPECT,
    CATEGORIES,
    COLOURS,
    COUNTING_TASKS,
    KIND_WEIGHTS,
    MATERIALS,
    SCENE_NAMES,
    M,
    Part,
    PersonIdentity,
    Region,
    Scene,
    SceneObject,
    building,
    jitter,
    person,
    random_identity,
    small_object,
    span,
    tree,
    vehicle_side,
    vehicle_top,
)

__all__ = [  # the scene vocabulary lives in scene_objects; callers import it from here
    "CATEGORIES", "COUNTING_TASKS", "M", "MATERIALS", "Part", "PersonIdentity", "Region", "SCENE_NAMES",
    "Scene", "SceneObject", "make_scene", "reid_grid", "scene_kind", "span",
]


# ------------------------------------------------------------- layout ----
def _overlaps(box, boxes, gap=1) -> bool:
    return any(box[0] < b[2] + gap and b[0] < box[2] + gap and box[1] < b[3] + gap and b[1] < box[3] + gap
               for b in boxes)


_FOREGROUND = {  # category: (height as fraction of the image at the nearest row, count ranges per kind)
    "person": 0.32, "car": 0.2, "bus": 0.3, "truck": 0.28, "bicycle": 0.15, "motorcycle": 0.16,
    "dog": 0.1, "bench": 0.08, "boat": 0.12}
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
    sky = Region("all", (), M["sky"], jitter(rng, COLOURS["sky"], 0.1), ambient - rng.uniform(10, 20), vgrad=0.25, tgrad=6)

    def reg(shape, params, mat, dt, **kw):
        return Region(shape, params, M[mat], jitter(rng, COLOURS[mat], 0.1), ambient + dt, **kw)

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
                    w = h * (ident.width_ratio if ident else ASPECT[cat])
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
                    obj = vehicle_side(cat, x, y, h, rng, ambient, S)
                else:
                    obj = small_object(cat, x, y, h, rng, ambient, S)
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
        obj = vehicle_top(cat, x, y, length, rng, ambient, S, vertical)
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
    kinds = list(KIND_WEIGHTS)
    p = np.array(list(KIND_WEIGHTS.values()))
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
        regions.append(Region("rect", (x0, y0, x0 + cw, y0 + ch), M[mat], jitter(rng, COLOURS[mat], 0.1),
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
