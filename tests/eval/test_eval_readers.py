"""Annotation and prediction readers (irgpt.eval.readers): the three layouts, errors."""

import json

import pytest

from irgpt.errors import CommandError
from irgpt.eval.readers import (
    Sample,
    load_annotations,
    load_pairs,
    load_predictions,
    read_json_records,
)


def _record(rid, answer, question="How many?", **extra):
    return {
        "id": rid,
        "image": [f"/mnt/data/{rid}.jpg"],
        "conversations": [
            {"from": "human", "value": f"<image>\n{question}"},
            {"from": "gpt", "value": answer},
        ],
        **extra,
    }


RECORDS = [_record("0", "<num>21</num>"), _record(1, "<num>73</num>", task="A.C.")]
EXPECTED = [
    Sample("0", "<num>21</num>", "How many?", None, ("/mnt/data/0.jpg",), "ann.json"),
    Sample("1", "<num>73</num>", "How many?", "aerial_counting", ("/mnt/data/1.jpg",), "ann.json"),
]


@pytest.mark.parametrize(
    "layout",
    [
        lambda recs: json.dumps(recs, indent=4),  # JSON array (authors' AerialCounting.json)
        lambda recs: "\n".join(json.dumps(r) for r in recs) + "\n",  # JSONL
        lambda recs: "\n".join(json.dumps(r, indent=4) for r in recs),  # concatenated, no array
        lambda recs: ",\n".join(json.dumps(r, indent=2) for r in recs),  # concatenated with commas
        lambda recs: "".join(json.dumps(r) for r in recs),  # glued objects
    ],
    ids=["array", "jsonl", "concatenated", "concatenated-commas", "glued"],
)
def test_annotation_layouts(tmp_path, layout):
    path = tmp_path / "ann.json"
    path.write_text(layout(RECORDS), encoding="utf-8")
    assert load_annotations(path) == EXPECTED


def test_image_as_string_and_byte_order_mark(tmp_path):
    rec = _record("a", "yes", "Is it?")
    rec["image"] = "/x.jpg"
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(rec).encode())
    assert load_annotations(path)[0].images == ("/x.jpg",)


def test_first_exchange_is_used(tmp_path):
    rec = _record("a", "yes", "Is it?")
    rec["conversations"].append({"from": "human", "value": "And now?"})
    rec["conversations"].append({"from": "gpt", "value": "no"})
    path = tmp_path / "multi.json"
    path.write_text(json.dumps([rec]))
    sample = load_annotations(path)[0]
    assert (sample.question, sample.answer) == ("Is it?", "yes")


def test_json_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"id": "0", "answer": "a"}\n{"id": "1", "answer": "b"}\n{"id": "2", answer}\n')
    with pytest.raises(CommandError) as err:
        read_json_records(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "line 3, column 13 (char 66)" in msg


def test_json_array_error_names_position(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"id": "0"},\n  {"id": 1,}\n]')
    with pytest.raises(CommandError, match=r"broken\.json: invalid JSON at line 3, column 12"):
        read_json_records(path)


def test_trailing_garbage_after_concatenated_objects(tmp_path):
    path = tmp_path / "tail.json"
    path.write_text('{"id": "0"}\n{"id": "1"}\n]')
    with pytest.raises(CommandError, match=r"line 3, column 1"):
        read_json_records(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"id": "0"}, 5]', r"record 1 is a JSON int, not an object"),
        ('{"conversations": []}', r"record 0 \(line 1\) has no 'id'"),
        ('{"id": "0"}', r"has no 'conversations' list"),
        (
            '{"id": "0", "conversations": [{"from": "human", "value": "q"}]}',
            r"no human turn followed by a gpt turn",
        ),
        ('{"id": "0", "conversations": [{"from": "gpt", "value": 3}]}', r"needs a string 'value'"),
        ("", r"no annotation records"),
    ],
)
def test_annotation_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        load_annotations(path)


def test_duplicate_ids_and_unknown_task(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text(json.dumps(_record("7", "yes")) + "\n" + json.dumps(_record(7, "no")) + "\n")
    with pytest.raises(
        CommandError, match=r"record 1 \(line 2\) repeats id '7' \(first at record 0 \(line 1\)\)"
    ):
        load_annotations(path)
    path.write_text(json.dumps(_record("7", "yes", task="colour")))
    with pytest.raises(CommandError, match=r"unknown task 'colour'"):
        load_annotations(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CommandError, match=r"nope\.json: no such file"):
        load_annotations(tmp_path / "nope.json")
    with pytest.raises(CommandError, match=r"is a directory"):
        load_annotations(tmp_path)


def test_deeply_nested_json_is_a_clear_error(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"id": "x", "answer": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(CommandError, match=r"nested too deeply"):
        load_predictions(path)


def test_load_predictions(tmp_path):
    path = tmp_path / "pred.jsonl"
    lines = [
        {"id": "a", "answer": "(B) forest"},
        {"id": 2, "answer": 8},  # numbers become their JSON text
        {"id": "c", "answer": None},  # null is an empty answer
        {"id": "d", "answer": "yes", "label": "no"},  # a label is ignored here
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines))
    assert load_predictions(path) == {"a": "(B) forest", "2": "8", "c": "", "d": "yes"}


def test_load_predictions_errors(tmp_path):
    path = tmp_path / "pred.jsonl"
    path.write_text('{"id": "a"}\n')
    with pytest.raises(CommandError, match=r"record 0 \(line 1\) has no 'answer'"):
        load_predictions(path)
    path.write_text('{"id": "a", "answer": "x"}\n{"id": "a", "answer": "y"}\n')
    with pytest.raises(CommandError, match=r"repeats id 'a'"):
        load_predictions(path)
    path.write_text('{"id": [1], "answer": "x"}\n')
    with pytest.raises(CommandError, match=r"'id' must be a string or number"):
        load_predictions(path)


def test_load_pairs_jsonl_and_array(tmp_path):
    pairs = [
        {"answer": "<num>12</num>", "label": "<num>10</num>"},
        {"answer": "yes", "label": "no", "id": "q7", "question": "<image>\nIs it?", "task": "rel"},
    ]
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("\n".join(json.dumps(p) for p in pairs))
    array = tmp_path / "pairs.json"
    array.write_text(json.dumps(pairs))
    for path in (jsonl, array):
        samples, answers = load_pairs(path)
        assert samples == [
            Sample("0", "<num>10</num>", "", None, (), path.name),
            Sample("q7", "no", "Is it?", "relationship", (), path.name),
        ]
        assert answers == {"0": "<num>12</num>", "q7": "yes"}


def test_load_pairs_needs_labels(tmp_path):
    path = tmp_path / "pred.jsonl"
    path.write_text('{"id": "a", "answer": "x"}\n')
    with pytest.raises(CommandError, match=r"has no 'label' \(pass --annotations"):
        load_pairs(path)
