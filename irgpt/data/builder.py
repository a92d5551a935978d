"""Rule-based instruction builder: the paper's Pipeline V (annotations -> samples).

Every rule reads one `Annotated` record and either returns a `Sample` (task,
rule name, question, answer, and the ground truth the answer encodes) or
raises `NotApplicable` with the reason. Answer formats are docs/method.md's table
("The benchmark"); the formatters below are the only place they are written:

    recognition  (C) person                    one present category among 4 options
    grounding    The target bounding box is <box>[[x1, y1, x2, y2]]</box>.   pixels, integers
    location     <ref>car</ref> at <pos>[(x, y), ...]</pos>   box centres, 0-1000 frame, left to right
    relationship yes / no                      balanced by the RNG
    security     (A) scooter (B) motor (D) hydrant   every absent option, letter order
    counting     <num>N</num>

Rules are deterministic given the RNG; `build_samples` derives one RNG per
(seed, image, task), so choosing a subset of tasks never changes the others.
The synthetic generator (`irgpt.data.synth`) calls `build_sample` with its
scene graph converted to `Annotated`, and adds the scene and ReID rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from irgpt.data.annotations import Annotated
from irgpt.data.schema import stable_hash

BUILDER_TASKS = ("caption", "recognition", "grounding", "location", "relationship", "security",
                 "aerial_counting", "pedestrian_counting")
DEFAULT_BUILD_TASKS = BUILDER_TASKS[:6]
"""`irgpt data build` default: counting only on request (it suits aerial / crowd data)."""

LETTERS = "ABCD"
VEHICLES = frozenset({"car", "bus", "truck", "van", "motorcycle", "motor", "motorbike", "vehicle",
                      "freight car", "freight_car", "trailer"})
PEOPLE = frozenset({"person", "people", "pedestrian"})
BACKGROUND = frozenset({"building", "tree"})
DEFAULT_DISTRACTORS = ("duck", "horse", "crocodile", "giraffe", "elephant", "zebra", "penguin",
                       "kangaroo", "camel", "flamingo")
"""Used only when the label vocabulary has fewer than 4 absent categories
(LLVIP annotates only `person`): animals unlikely to be in unannotated frames."""

MAX_LOCATION_POINTS = 30
BAND_NOUNS = {"vis": "photo", "vis_gray": "grayscale photo", "nir": "near-infrared image",
              "swir": "short-wave infrared image", "mwir": "mid-wave thermal image",
              "lwir": "thermal infrared image", "unknown": "infrared image"}
_PLURALS = {"person": "people", "bus": "buses", "pedestrian": "pedestrians", "people": "people"}
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

CAPTION_QUESTIONS = ("Describe the image.", "Describe this image briefly.",
                     "What does this image show?", "Give a short description of the image.")
RECOGNITION_QUESTIONS = ("What is the object in the picture?", "Which of these objects appears in the image?",
                         "Which object can be seen in this image?")
GROUNDING_QUESTIONS = ("Please provide the bounding box of {} in the image.",
                       "Where is {}? Answer with its bounding box.", "Locate {} and give its bounding box.")
SECURITY_QUESTIONS = ("Which of the following targets are NOT in the image?",
                      "Which of these objects do not appear in the image? Choose all that apply.")


class NotApplicable(Exception):
    """A rule that cannot make a sample from this record; `str(exc)` says why."""


@dataclass(frozen=True)
class Sample:
    task: str
    rule: str
    question: str
    answer: str
    target: object = None
    """The ground truth the answer encodes (boxes, points, letters, count)."""


def conversation(question: str, answer: str) -> list[dict]:
    return [{"from": "human", "value": "<image>\n" + question}, {"from": "gpt", "value": answer}]


# ------------------------------------------------------------ formats ----
def _round(v: float) -> int:
    return int(math.floor(v + 0.5))


def pixel_box(box: Sequence[float]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    return _round(x1), _round(y1), _round(x2), _round(y2)


def normalised_centre(box: Sequence[float], width: int, height: int) -> tuple[int, int]:
    """Box centre in the 0-1000 frame of location answers."""
    x1, y1, x2, y2 = box
    x = _round((x1 + x2) / 2 / width * 1000)
    y = _round((y1 + y2) / 2 / height * 1000)
    return min(max(x, 0), 1000), min(max(y, 0), 1000)


def format_options(options: Sequence[str]) -> str:
    return " ".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))


def format_box(box: Sequence[int]) -> str:
    return "<box>[[{}, {}, {}, {}]]</box>".format(*box)


def format_points(ref: str, points: Sequence[tuple[int, int]]) -> str:
    return f"<ref>{ref}</ref> at <pos>[" + ", ".join(f"({x}, {y})" for x, y in points) + "]</pos>"


def format_count(n: int) -> str:
    return f"<num>{n}</num>"


# ------------------------------------------------------------ helpers ----
def plural(cat: str) -> str:
    if cat in _PLURALS:
        return _PLURALS[cat]
    if cat.endswith(("s", "x", "ch", "sh")):
        return cat + "es"
    return cat + "s"


def article(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def count_phrase(n: int, cat: str) -> str:
    if n == 1:
        return article(cat)
    return f"{_NUMBER_WORDS[n] if n <= 10 else n} {plural(cat)}"


def _centre(box) -> tuple[float, float]:
    return (box[1] + box[3]) / 2, (box[2] + box[4]) / 2


def groups(ann: Annotated) -> dict[str, list[tuple]]:
    """Objects per category, each list ordered left to right (centre x, then y)."""
    out: dict[str, list[tuple]] = {}
    for obj in ann.objects:
        out.setdefault(obj[0], []).append(obj)
    return {c: sorted(v, key=_centre) for c, v in sorted(out.items())}


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


def absent_pool(present: set[str], vocabulary: Sequence[str], need: int = 4) -> list[str]:
    """Categories known not to be in the image: the label vocabulary first, topped up
    with DEFAULT_DISTRACTORS to at least `need` (security may list 4 absent options)."""
    pool = [c for c in dict.fromkeys(vocabulary) if c not in present]
    if len(pool) < need:
        pool += [c for c in DEFAULT_DISTRACTORS if c not in present and c not in pool]
    return pool


def _choose(rng: np.random.Generator, items: Sequence[str], k: int) -> list[str]:
    return [items[i] for i in rng.choice(len(items), size=k, replace=False)]


def _position(boxes: list[tuple], width: int) -> str:
    thirds = {min(int(_centre(b)[0] / width * 3), 2) for b in boxes}
    if len(thirds) > 1:
        return "across the image"
    return ("on the left", "in the middle", "on the right")[thirds.pop()]


# -------------------------------------------------------------- rules ----
def rule_caption(ann: Annotated, rng, vocabulary, band) -> Sample:
    if not ann.objects:
        raise NotApplicable("no objects to describe")
    template = int(rng.integers(3))
    question = _pick(rng, CAPTION_QUESTIONS)
    g = groups(ann)
    order = sorted(g, key=lambda c: (c in BACKGROUND, -len(g[c]), c))[:4]
    parts = [f"{count_phrase(len(g[c]), c)} {_position(g[c], ann.width)}" for c in order]
    objs = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    noun = BAND_NOUNS.get(band, BAND_NOUNS["unknown"])
    of_scene = f" of {article(ann.scene)}" if ann.scene else ""
    if template == 0:
        text = f"{article(noun).capitalize()}{of_scene}. It shows {objs}."
    elif template == 1:
        text = f"{article(noun).capitalize()}{of_scene} with {objs}."
    else:
        verb = "is" if len(g[order[0]]) == 1 else "are"
        text = f"In this {noun}{of_scene}, there {verb} {objs}."
    text = " ".join([text, *ann.notes])
    return Sample("caption", f"caption.template_v{template + 1}", question, text,
                  {c: len(v) for c, v in g.items()})


def rule_recognition(ann: Annotated, rng, vocabulary, band) -> Sample:
    present = sorted({o[0] for o in ann.objects})
    if not present:
        raise NotApplicable("no objects to recognise")
    target = _pick(rng, present)
    distractors = _choose(rng, absent_pool(set(present), vocabulary), 3)
    options = [[target, *distractors][i] for i in rng.permutation(4)]
    letter = LETTERS[options.index(target)]
    question = _pick(rng, RECOGNITION_QUESTIONS) + "\n" + format_options(options)
    return Sample("recognition", "recognition.one_present", question, f"({letter}) {target}",
                  (letter, target))


def _unique_targets(ann: Annotated) -> list[tuple[str, tuple, str]]:
    """(description, object, rule) for every target a short phrase names uniquely."""
    margin = max(2.0, 0.03 * ann.width)
    out = []
    for cat, objs in groups(ann).items():
        if len(objs) == 1:
            out.append((f"the {cat}", objs[0], "unique_target"))
            continue
        xs = [_centre(o)[0] for o in objs]
        if xs[1] - xs[0] >= margin:
            out.append((f"the leftmost {cat}", objs[0], "leftmost_target"))
        if xs[-1] - xs[-2] >= margin:
            out.append((f"the rightmost {cat}", objs[-1], "rightmost_target"))
    return out


def rule_grounding(ann: Annotated, rng, vocabulary, band) -> Sample:
    targets = _unique_targets(ann)
    if not targets:
        raise NotApplicable("no uniquely describable target")
    desc, obj, rule = _pick(rng, targets)
    box = pixel_box(obj[1:])
    question = _pick(rng, GROUNDING_QUESTIONS).format(desc)
    return Sample("grounding", f"grounding.{rule}", question,
                  f"The target bounding box is {format_box(box)}.", box)


def rule_location(ann: Annotated, rng, vocabulary, band) -> Sample:
    g = {c: v for c, v in groups(ann).items() if len(v) <= MAX_LOCATION_POINTS}
    if not g:
        raise NotApplicable("no objects (or more than MAX_LOCATION_POINTS of every category)")
    cat = _pick(rng, list(g))
    points = sorted(normalised_centre(o[1:], ann.width, ann.height) for o in g[cat])
    question = (f"Find all the {plural(cat)} in the image and give their centre points "
                "(0-1000 coordinates).")
    return Sample("location", "location.all_instances", question, format_points(cat, points),
                  (cat, points))


_RELATIONS = {"right": (0, 1, "on the right side of"), "left": (0, -1, "on the left side of"),
              "above": (1, -1, "above"), "below": (1, 1, "below")}


def rule_relationship(ann: Annotated, rng, vocabulary, band) -> Sample:
    g = groups(ann)
    mx, my = max(2.0, 0.05 * ann.width), max(2.0, 0.05 * ann.height)
    refs = []
    for cat, objs in g.items():
        xs = [_centre(o)[0] for o in objs]
        if len(objs) == 1:
            refs.append((f"the {cat}", objs[0]))
        elif xs[1] - xs[0] >= mx:
            refs.append((f"the first {cat} from left to right", objs[0]))
    yes, no = [], []
    for ref_desc, ref in refs:
        rc = _centre(ref)
        for cat, objs in g.items():
            others = [o for o in objs if o is not ref]
            if not others:
                continue
            for rel, (axis, sign, phrase) in _RELATIONS.items():
                m = mx if axis == 0 else my
                d = [sign * (_centre(o)[axis] - rc[axis]) for o in others]
                if any(v > m for v in d):
                    yes.append((cat, rel, phrase, ref_desc))
                elif all(v < -m for v in d):
                    no.append((cat, rel, phrase, ref_desc))
    if not yes:
        raise NotApplicable("no spatial relation holds clearly between two objects")
    rule = "relationship.spatial_pair"
    answer = bool(rng.random() < 0.5)
    if answer:
        cat, rel, phrase, ref_desc = _pick(rng, yes)
    elif no:
        cat, rel, phrase, ref_desc = _pick(rng, no)
    else:  # every present pair holds: ask about a category that is not there
        cat = _pick(rng, absent_pool({o[0] for o in ann.objects}, vocabulary))
        rel = _pick(rng, list(_RELATIONS))
        phrase, ref_desc = _RELATIONS[rel][2], _pick(rng, refs)[0]
        rule = "relationship.absent_category"
    question = f"Is there {article(cat)} {phrase} {ref_desc}?"
    return Sample("relationship", rule, question, "yes" if answer else "no",
                  (cat, rel, ref_desc, answer))


def rule_security(ann: Annotated, rng, vocabulary, band) -> Sample:
    present = sorted({o[0] for o in ann.objects})
    if not present:
        raise NotApplicable("no objects (an empty annotation may be incomplete)")
    n_present = int(rng.integers(0, min(3, len(present)) + 1))
    pool = absent_pool(set(present), vocabulary)
    chosen = _choose(rng, present, n_present) + _choose(rng, pool, 4 - n_present)
    options = [chosen[i] for i in rng.permutation(4)]
    absent = [LETTERS[i] for i, o in enumerate(options) if o not in present]
    question = _pick(rng, SECURITY_QUESTIONS) + "\n" + format_options(options)
    answer = " ".join(f"({L}) {options[LETTERS.index(L)]}" for L in absent)
    return Sample("security", "security.absent_set", question, answer, frozenset(absent))


def _counting(task: str, members: frozenset, what: str, rule: str, questions: Sequence[str]):
    def rule_fn(ann: Annotated, rng, vocabulary, band) -> Sample:
        n = sum(1 for o in ann.objects if o[0] in members)
        if n == 0:
            raise NotApplicable(f"no {what} to count")
        return Sample(task, rule, _pick(rng, questions), format_count(n), n)

    return rule_fn


RULES: dict[str, Callable[..., Sample]] = {
    "caption": rule_caption,
    "recognition": rule_recognition,
    "grounding": rule_grounding,
    "location": rule_location,
    "relationship": rule_relationship,
    "security": rule_security,
    "aerial_counting": _counting(
        "aerial_counting", VEHICLES, "vehicles", "aerial_counting.vehicles",
        ("How many vehicles are there in this aerial image?", "Count the vehicles seen from above.")),
    "pedestrian_counting": _counting(
        "pedestrian_counting", PEOPLE, "people", "pedestrian_counting.people",
        ("How many people are there in the image?", "Count the pedestrians in this crowd.")),
}


def build_sample(ann: Annotated, task: str, rng: np.random.Generator,
                 vocabulary: Sequence[str] = (), band: str = "unknown") -> Sample:
    """Apply the rule for `task`; raises NotApplicable (with the reason) or KeyError."""
    if task not in RULES:
        raise KeyError(f"no builder rule for task {task!r}; known: {', '.join(BUILDER_TASKS)}")
    return RULES[task](ann, rng, tuple(vocabulary), band)


def task_rng(seed: int, key: str, task: str) -> np.random.Generator:
    """The RNG of one (seed, record, task): independent of order and of the other tasks."""
    return np.random.default_rng([seed, stable_hash(key), stable_hash(task)])


def build_samples(ann: Annotated, tasks: Sequence[str], seed: int = 0, vocabulary: Sequence[str] = (),
                  band: str = "unknown", key: str | None = None) -> tuple[list[Sample], list[tuple[str, str]]]:
    """All requested tasks for one record: (samples, [(task, reason not applicable)])."""
    samples, skipped = [], []
    for task in tasks:
        try:
            samples.append(build_sample(ann, task, task_rng(seed, key or ann.image_id, task), vocabulary, band))
        except NotApplicable as exc:
            skipped.append((task, str(exc)))
    return samples, skipped
