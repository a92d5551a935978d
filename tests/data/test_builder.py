"""Rule-based builder (Pipeline V): docs/method.md answer formats, round-trips, readers, `data build`."""

import argparse
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from irgpt.config.sections import SynthConfig
from irgpt.data import build_cli
from irgpt.data.annotations import Annotated, read_coco, read_voc
from irgpt.data.builder import (
    BUILDER_TASKS,
    NotApplicable,
    Sample,
    build_sample,
    build_samples,
    count_phrase,
    normalised_centre,
    pixel_box,
)
from irgpt.data.io import read_manifest, read_rejects, read_table
from irgpt.data.scene import make_scene
from irgpt.data.schema import SAMPLE_SCHEMA, answer_text, human_text
from irgpt.data.synth import scene_rows
from irgpt.eval.parse import (
    parse_boxes,
    parse_choice,
    parse_choice_set,
    parse_count,
    parse_index,
    parse_location,
    parse_options,
    parse_yes_no,
)

# docs/method.md "The benchmark": one regex per answer format, matched in full.
FORMATS = {
    "caption": r"[A-Z][^<>\n]*\.",
    "scene": r"\([A-D]\) [a-z][a-z ]*",
    "recognition": r"\([A-D]\) [a-z][a-z ]*",
    "grounding": r"The target bounding box is <box>\[\[\d+, \d+, \d+, \d+\]\]</box>\.",
    "relationship": r"yes|no",
    "reid": r"[2-8]",
    "security": r"\([A-D]\) [a-z][a-z ]*( \([A-D]\) [a-z][a-z ]*){0,3}",
    "location": r"<ref>[a-z][a-z ]*</ref> at <pos>\[\(\d+, \d+\)(, \(\d+, \d+\))*\]</pos>",
    "aerial_counting": r"<num>\d+</num>",
    "pedestrian_counting": r"<num>\d+</num>",
}
OPTIONS_LINE = re.compile(r"^[^\n]+\?[^\n]*\n\([A]\) [^()\n]+ \(B\) [^()\n]+ \(C\) [^()\n]+ \(D\) [^()\n]+$")
VOCAB = ("person", "car", "bicycle", "dog", "bus", "truck", "scooter", "motor", "hydrant")

STREET = Annotated("img1", None, 640, 512, (
    ("person", 50, 200, 90, 380), ("person", 300, 210, 330, 330), ("car", 400, 300, 600, 420),
    ("dog", 200, 350, 260, 400), ("bicycle", 100, 300, 180, 380)))


def _present(ann):
    return {o[0] for o in ann.objects}


def _check(ann: Annotated, sample, vocabulary=VOCAB):
    """The answer matches docs/method.md's format and parses back to the annotation's truth."""
    assert re.fullmatch(FORMATS[sample.task], sample.answer), (sample.task, sample.answer)
    q = sample.question
    present = _present(ann)
    if sample.task in ("recognition", "security", "scene"):
        assert OPTIONS_LINE.match(q), q
        options = parse_options(q)
        assert sorted(options) == list("ABCD") and len(set(options.values())) == 4
    if sample.task == "recognition":
        letter = parse_choice(sample.answer, options)
        assert [k for k, v in options.items() if v in present] == [letter]
        assert options[letter] == sample.answer.split(") ", 1)[1]
    elif sample.task == "security":
        letters = parse_choice_set(sample.answer, options)
        assert letters == {k for k, v in options.items() if v not in present} == sample.target
        assert sample.answer == " ".join(f"({k}) {options[k]}" for k in sorted(letters))
    elif sample.task == "grounding":
        (box,) = parse_boxes(sample.answer)
        assert tuple(int(v) for v in box) == sample.target
        assert sample.target in {pixel_box(o[1:]) for o in ann.objects}
        # the description names exactly this object
        m = re.fullmatch(r"(?:Please provide the bounding box of |Where is |Locate )the (?:(leftmost|rightmost) )?"
                         r"([a-z ]+?)(?: in the image\.|\? Answer with its bounding box\.| and give its bounding box\.)", q)
        assert m, q
        cands = sorted((o for o in ann.objects if o[0] == m.group(2)), key=lambda o: (o[1] + o[3]) / 2)
        if m.group(1) is None:
            assert len(cands) == 1
        expect = cands[-1] if m.group(1) == "rightmost" else cands[0]
        assert pixel_box(expect[1:]) == sample.target
    elif sample.task == "location":
        loc = parse_location(sample.answer)
        pts = [tuple(int(v) for v in p) for p in loc.points]
        truth = sorted(normalised_centre(o[1:], ann.width, ann.height) for o in ann.objects if o[0] == loc.ref)
        assert pts == truth and all(0 <= v <= 1000 for p in pts for v in p)
        assert [p[0] for p in pts] == sorted(p[0] for p in pts)  # left to right
    elif sample.task == "relationship":
        assert parse_yes_no(sample.answer) == sample.target[3]
        assert _relation_truth(ann, q) == sample.target[3]
    elif sample.task in ("aerial_counting", "pedestrian_counting"):
        members = {"car", "bus", "truck", "motorcycle"} if sample.task == "aerial_counting" else {"person"}
        assert parse_count(sample.answer) == sum(o[0] in members for o in ann.objects)
    elif sample.task == "caption":
        assert len(sample.answer.split()) < 60
        described = [c for c in sample.target if count_phrase(sample.target[c], c) in sample.answer]
        assert len(described) == min(4, len(sample.target)), (sample.answer, sample.target)


def _relation_truth(ann, q):
    """An independent reading of a relationship question against the boxes."""
    m = re.fullmatch(r"Is there an? ([a-z ]+?) (on the right side of|on the left side of|above|below) "
                     r"the (first )?([a-z ]+?)( from left to right)?\?", q)
    assert m, q
    cat, rel, ref_cat = m.group(1), m.group(2), m.group(4)
    cx = lambda o: ((o[1] + o[3]) / 2, (o[2] + o[4]) / 2)  # noqa: E731
    ref = min((o for o in ann.objects if o[0] == ref_cat), key=cx)
    others = [o for o in ann.objects if o[0] == cat and o is not ref]
    axis, sign = {"on the right side of": (0, 1), "on the left side of": (0, -1), "above": (1, -1), "below": (1, 1)}[rel]
    return any(sign * (cx(o)[axis] - cx(ref)[axis]) > 0 for o in others)


@pytest.mark.parametrize("task", BUILDER_TASKS)
def test_formats_and_round_trip_on_many_seeds(task):
    made = 0
    for seed in range(40):
        try:
            s = build_sample(STREET, task, np.random.default_rng(seed), VOCAB, "lwir")
        except NotApplicable:
            continue
        assert s.task == task and s.rule.startswith(task + ".")
        _check(STREET, s)
        made += 1
    assert made == 40


def test_recognition_question_matches_method_example():
    s = build_sample(Annotated("x", None, 100, 100, (("person", 1, 1, 20, 40),)), "recognition",
                     np.random.default_rng(0), ())
    assert s.question.split("\n")[0] in ("What is the object in the picture?", "Which of these objects appears in the image?",
                                         "Which object can be seen in this image?")
    # a one-category vocabulary (LLVIP) borrows the default distractors
    assert len(set(parse_options(s.question).values())) == 4


def test_relationship_is_balanced():
    answers = [build_sample(STREET, "relationship", np.random.default_rng(s), VOCAB).answer for s in range(200)]
    assert 0.35 < answers.count("yes") / len(answers) < 0.65


def test_not_applicable_reasons():
    twins = Annotated("t", None, 100, 100, (("car", 10, 10, 30, 30), ("car", 11, 40, 31, 60)))
    with pytest.raises(NotApplicable, match="uniquely"):
        build_sample(twins, "grounding", np.random.default_rng(0), VOCAB)
    empty = Annotated("e", None, 100, 100, ())
    samples, skipped = build_samples(empty, BUILDER_TASKS, seed=0, vocabulary=VOCAB)
    assert samples == [] and {t for t, _ in skipped} == set(BUILDER_TASKS)


def test_build_samples_is_deterministic_and_task_independent():
    a, _ = build_samples(STREET, BUILDER_TASKS, seed=7, vocabulary=VOCAB)
    b, _ = build_samples(STREET, ["grounding", "caption"], seed=7, vocabulary=VOCAB)
    by_task = {s.task: s for s in a}
    assert [by_task["grounding"], by_task["caption"]] == b
    c, _ = build_samples(STREET, BUILDER_TASKS, seed=8, vocabulary=VOCAB)
    assert a != c


def test_synthetic_rows_round_trip_against_the_scene_graph():
    cfg = SynthConfig(num_samples=40, seed=11)
    seen = set()
    for i in range(40):
        scene = make_scene(cfg.seed, i, cfg.image_size)
        for r in scene_rows(cfg, i):
            if r["task"] == "caption":
                continue
            ann = scene.annotated(r["band"])
            answer, question = answer_text(r["conversations"]), human_text(r["conversations"])
            assert re.fullmatch(FORMATS[r["task"]], answer), (r["task"], answer)
            seen.add(r["task"])
            if r["task"] == "scene":
                options = parse_options(question)
                assert options[parse_choice(answer, options)] == scene.name
            elif r["task"] == "reid":
                assert 2 <= parse_index(answer) <= 8
                img = Image.open(io.BytesIO(r["image"]))
                assert img.size == (cfg.image_size, cfg.image_size)
            else:
                target = None  # what _check compares the parsed answer against
                if r["task"] == "grounding":
                    target = tuple(int(v) for v in parse_boxes(answer)[0])
                elif r["task"] == "security":
                    target = parse_choice_set(answer)
                elif r["task"] == "relationship":
                    target = (None, None, None, parse_yes_no(answer))
                _check(ann, Sample(r["task"], r["rule"], question, answer, target), vocabulary=())
    assert seen >= {"scene", "recognition", "grounding", "relationship", "reid", "security", "location"}


def test_aerial_counting_needs_vehicles():
    people = Annotated("p", None, 100, 100, (("person", 1, 1, 9, 20),))
    with pytest.raises(NotApplicable, match="no vehicles"):
        build_sample(people, "aerial_counting", np.random.default_rng(0), VOCAB)
    s = build_sample(people, "pedestrian_counting", np.random.default_rng(0), VOCAB)
    assert s.answer == "<num>1</num>"


# ----------------------------------------------------------------- readers ----
def _png(path, w, h):
    Image.fromarray(np.full((h, w), 128, np.uint8)).save(path)


def _coco(tmp_path):
    (tmp_path / "img").mkdir()
    _png(tmp_path / "img" / "a.png", 64, 48)
    _png(tmp_path / "img" / "b.png", 64, 48)
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48},
                   {"id": 2, "file_name": "b.png", "width": 64, "height": 48},
                   {"id": 3, "file_name": "missing.png", "width": 64, "height": 48},
                   {"id": 4, "file_name": "a.png", "width": 64, "height": 48}],
        "annotations": [{"image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 20]},
                        {"image_id": 1, "category_id": 2, "bbox": [30, 10, 20, 12]},
                        {"image_id": 2, "category_id": 1, "bbox": [50, 10, 30, 10]},  # x2 = 80 > 64
                        {"image_id": 3, "category_id": 1, "bbox": [1, 1, 5, 5]},
                        {"image_id": 4, "category_id": 1, "bbox": [0, 0, 64.4, 48]}],  # clipped
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}, {"id": 3, "name": "hydrant"}],
    }
    path = tmp_path / "FLIR_val.json"
    path.write_text(json.dumps(data))
    return path


def test_read_coco(tmp_path):
    path = _coco(tmp_path)
    records, rejects, names = read_coco(path, tmp_path / "img")
    assert names == ["car", "hydrant", "person"]
    assert [r.image_id for r in records] == ["1", "3", "4"]
    assert records[0].objects == (("person", 2.0, 3.0, 12.0, 23.0), ("car", 30.0, 10.0, 50.0, 22.0))
    assert records[2].objects == (("person", 0.0, 0.0, 64.0, 48.0),)
    (rej,) = rejects
    assert rej["sample_id"] == "2" and "outside the 64x48 image" in rej["reason"] and "person" in rej["reason"]


def _voc(name, w, h, objects, extra=""):
    objs = "".join(f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
                   f"<ymax>{d}</ymax></bndbox></object>" for n, a, b, c, d in objects)
    return (f"{extra}<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height>"
            f"</size>{objs}</annotation>")


def test_read_voc_rejects_entities_and_outside_boxes(tmp_path):
    ann = tmp_path / "Annotations"
    ann.mkdir()
    (ann / "010001.xml").write_text(_voc("010001.jpg", 64, 48, [("person", 1, 2, 20, 40)]))
    (ann / "010002.xml").write_text(_voc("010002.jpg", 64, 48, [("person", 1, 2, 90, 40)]))
    bomb = '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
    (ann / "010003.xml").write_text(_voc("&lol2;.jpg", 64, 48, [], extra=bomb.replace('<?xml version="1.0"?>', "")))
    (ann / "010004.xml").write_text("<annotation><filename>x.jpg</filename>")
    records, rejects, names = read_voc(ann, tmp_path)
    assert [r.image_id for r in records] == ["010001"] and names == ["person"]
    assert records[0].objects == (("person", 1.0, 2.0, 20.0, 40.0),)
    assert records[0].image_path == str(tmp_path / "010001.jpg")
    reasons = {r["source_file"].rsplit("/", 1)[-1]: r["reason"] for r in rejects}
    assert "outside the 64x48 image" in reasons["010002.xml"]
    assert "entity expansion" in reasons["010003.xml"]
    assert "not well-formed" in reasons["010004.xml"]
    # a single file works too
    records, rejects, _ = read_voc(ann / "010001.xml")
    assert len(records) == 1 and not rejects


# ------------------------------------------------------------------- build ----
def _build(argv):
    parser = argparse.ArgumentParser()
    build_cli.add_arguments(parser)
    return build_cli.run(parser.parse_args(argv))


def test_build_coco_dataset(tmp_path, capsys):
    path = _coco(tmp_path)
    out = tmp_path / "out"
    rc = _build(["--annotations", str(path), "--image-root", str(tmp_path / "img"), "--out", str(out),
                 "--tasks", "caption,recognition,grounding,location,security", "--band", "lwir", "--seed", "1"])
    assert rc == 0 and "rows" in capsys.readouterr().out
    table = read_table(out)
    assert table.schema.equals(SAMPLE_SCHEMA)
    rows = table.to_pylist()
    assert {r["source"] for r in rows} == {"flir_val"} and {r["band"] for r in rows} == {"lwir"}
    assert {r["task"] for r in rows if r["image_path"].endswith("a.png")} >= {"caption", "recognition", "grounding"}
    raw = (tmp_path / "img" / "a.png").read_bytes()
    assert all(r["image"] == raw and (r["width"], r["height"]) == (64, 48) for r in rows)
    assert all(re.fullmatch(FORMATS[r["task"]], answer_text(r["conversations"])) for r in rows if r["task"] != "caption")
    assert len({r["sample_id"] for r in rows}) == len(rows)
    rejects = read_rejects(out).to_pylist()
    reasons = " | ".join(r["reason"] for r in rejects)
    assert "outside the 64x48 image" in reasons and "missing image file" in reasons
    manifest = read_manifest(out)
    assert manifest["num_rows"] == len(rows) and manifest["num_rejects"] == len(rejects)
    assert manifest["composition"]["task"] == {t: sum(r["task"] == t for r in rows) for t in manifest["composition"]["task"]}


def test_build_voc_without_size_and_empty_objects(tmp_path):
    ann = tmp_path / "xml"
    ann.mkdir()
    _png(tmp_path / "a.png", 40, 30)
    _png(tmp_path / "b.png", 40, 30)
    (ann / "a.xml").write_text(_voc("a.png", 0, 0, [("person", 1, 1, 10, 25), ("person", 25, 2, 35, 28)]))
    (ann / "b.xml").write_text(_voc("b.png", 40, 30, []))
    out = tmp_path / "out"
    assert _build(["--annotations", str(ann), "--format", "voc", "--image-root", str(tmp_path), "--out", str(out),
                   "--tasks", "caption,pedestrian_counting"]) == 0
    rows = read_table(out).to_pylist()
    assert sorted(r["task"] for r in rows) == ["caption", "pedestrian_counting"]
    assert {(r["width"], r["height"]) for r in rows} == {(40, 30)}
    count = next(r for r in rows if r["task"] == "pedestrian_counting")
    assert parse_count(answer_text(count["conversations"])) == 2
    reasons = [r["reason"] for r in read_rejects(out).to_pylist()]
    assert any("no objects" in r for r in reasons) and any("no people" in r for r in reasons)


def test_build_unknown_task_is_a_command_error(tmp_path):
    from irgpt.errors import CommandError

    with pytest.raises(CommandError, match="unknown task"):
        _build(["--annotations", str(_coco(tmp_path)), "--out", str(tmp_path / "o"), "--tasks", "caption,nope"])


def _random_record(rng, k):
    cats = ["person", "car", "dog", "bus", "truck", "bicycle", "tree"]
    w, h = int(rng.integers(50, 700)), int(rng.integers(50, 700))
    objs = []
    for _ in range(int(rng.integers(0, 9))):
        x1, y1 = rng.uniform(0, w - 4), rng.uniform(0, h - 4)
        objs.append((cats[int(rng.integers(len(cats)))], x1, y1, rng.uniform(x1 + 2, w), rng.uniform(y1 + 2, h)))
    return Annotated(f"r{k}", None, w, h, tuple(objs))


def test_fuzz_every_rule_on_random_records():
    """Random records and vocabularies (empty to larger than the image's): no crash, every answer checks."""
    rng = np.random.default_rng(0)
    vocabularies = [(), ("person",), VOCAB[:4], VOCAB, ("person", "car", "dog", "bus", "truck", "bicycle", "tree")]
    for k in range(150):
        ann, vocab = _random_record(rng, k), vocabularies[k % len(vocabularies)]
        for task in BUILDER_TASKS:
            try:
                s = build_sample(ann, task, np.random.default_rng(k), vocab)
            except NotApplicable:
                continue
            _check(ann, s, vocab)


@pytest.mark.slow
def test_builder_never_crashes_on_synthetic_scenes():
    from irgpt.data.scene import CATEGORIES

    for seed in (0, 13):
        for i in range(1500):
            ann = make_scene(seed, i, 64).annotated("lwir")
            for task in BUILDER_TASKS:
                try:
                    _check(ann, build_sample(ann, task, np.random.default_rng(i), CATEGORIES, "lwir"), CATEGORIES)
                except NotApplicable:
                    pass
