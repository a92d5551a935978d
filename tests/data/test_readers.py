"""irgpt.data.readers: every file layout, per-record errors, whole-file errors, field checks."""

from __future__ import annotations

import json

import pytest

from irgpt.data.readers import (
    RecordRejected,
    iter_annotation_files,
    iter_records,
    normalise_task,
    parse_record,
)
from irgpt.errors import CommandError


def rec(i, image="a.png", **extra):
    return {
        "id": str(i),
        "image": [image],
        "conversations": [
            {"from": "human", "value": "<image>\nDescribe the image."},
            {"from": "gpt", "value": f"caption {i}"},
        ],
        **extra,
    }


def _ids(path):
    return [r.obj["id"] for r in iter_records(path)]


def _layout(path):
    (ann,) = iter_annotation_files(path)
    return ann.layout


# ---------------------------------------------------------------- layouts ----
def test_json_array(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([rec(0), rec(1), rec(2)], indent=4))
    records = list(iter_records(p))
    assert [r.line_or_index for r in records] == [0, 1, 2] and _ids(p) == ["0", "1", "2"]
    assert _layout(p) == "array" and records[0].source_file == str(p)


def test_jsonl_with_blank_lines_counts_lines(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text(
        json.dumps(rec(0)) + "\n\n" + json.dumps(rec(1)) + "\r\n   \n" + json.dumps(rec(2)) + "\n"
    )
    assert [r.line_or_index for r in iter_records(p)] == [1, 3, 5]
    assert _layout(p) == "jsonl" and _ids(p) == ["0", "1", "2"]


def test_concatenated_pretty_printed(tmp_path):
    p = tmp_path / "a.json"
    p.write_text("\n".join(json.dumps(rec(i), indent=2) for i in range(3)))
    assert _layout(p) == "concatenated"
    assert [r.line_or_index for r in iter_records(p)] == [0, 1, 2] and _ids(p) == ["0", "1", "2"]


def test_concatenated_without_whitespace_and_with_bom(tmp_path):
    p = tmp_path / "a.json"
    p.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(rec(i)) for i in range(3)).encode())
    assert _layout(p) == "concatenated" and _ids(p) == ["0", "1", "2"]


def test_several_arrays_back_to_back(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([rec(0), rec(1)]) + "\n" + json.dumps([rec(2)]))
    assert [r.line_or_index for r in iter_records(p)] == [0, 1, 2] and _ids(p) == ["0", "1", "2"]


def test_empty_file_has_no_records(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text("  \n")
    assert list(iter_records(p)) == [] and _layout(p) == "empty"


def test_meta_file(tmp_path):
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "flir.jsonl").write_text("\n".join(json.dumps(rec(i)) for i in range(2)))
    (tmp_path / "ann" / "nir.json").write_text(json.dumps([rec(9)]))
    meta = {
        "flir_caption": {
            "root": "images/flir",
            "annotation": "ann/flir.jsonl",
            "repeat_time": 1,
            "length": 2,
        },
        "nir_caption": {
            "root": "/abs/nir",
            "annotation": str(tmp_path / "ann" / "nir.json"),
            "length": 5,
        },
    }
    p = tmp_path / "meta.json"
    p.write_text(json.dumps(meta, indent=2))
    files = list(iter_annotation_files(p))
    assert [f.meta_name for f in files] == ["flir_caption", "nir_caption"]
    assert files[0].image_root == tmp_path / "images" / "flir"  # relative to the meta file
    assert files[1].image_root.as_posix() == "/abs/nir"
    assert files[0].declared_length == 2 and files[0].extra == {"repeat_time": 1}
    assert [len(f.records) for f in files] == [2, 1] and files[0].meta_file == p
    assert [r.source_file for r in iter_records(p)] == [
        str(tmp_path / "ann" / "flir.jsonl")
    ] * 2 + [str(tmp_path / "ann" / "nir.json")]


def test_meta_file_paths_go_through_remap(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "x.jsonl").write_text(json.dumps(rec(0)))
    p = tmp_path / "meta.json"
    p.write_text(json.dumps({"x": {"root": "/old/img", "annotation": "/old/x.jsonl"}}))
    (ann,) = iter_annotation_files(p, remap=lambda s: s.replace("/old", str(tmp_path / "new")))
    assert ann.image_root == tmp_path / "new" / "img" and len(ann.records) == 1


def test_meta_file_with_missing_annotation_is_a_command_error(tmp_path):
    p = tmp_path / "meta.json"
    p.write_text(json.dumps({"x": {"root": "r", "annotation": "gone.jsonl"}}))
    with pytest.raises(CommandError, match=r"gone\.jsonl: annotation file of meta entry 'x'"):
        list(iter_records(p))


def test_single_record_object_is_not_a_meta_file(tmp_path):
    p = tmp_path / "one.json"
    p.write_text(json.dumps(rec(0), indent=2))
    assert _ids(p) == ["0"]


# ----------------------------------------------------- per-record errors ----
def test_jsonl_bad_line_is_a_record_error_and_reading_goes_on(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text(
        json.dumps(rec(0)) + '\n{"id": "1", "image": \n' + json.dumps(rec(2)) + "\n[1, 2]\n"
    )
    records = list(iter_records(p))
    assert [r.line_or_index for r in records] == [1, 2, 3, 4]
    assert records[1].obj is None and records[1].error.startswith("invalid JSON: ")
    assert "line 2" in records[1].error
    assert records[2].obj["id"] == "2" and records[3].obj == [1, 2]  # parsed; rejected later


def test_jsonl_invalid_utf8_in_one_line(tmp_path):
    p = tmp_path / "a.jsonl"
    bad = json.dumps(rec(1)).encode().replace(b"caption", b"capt\xff\xfeion")
    p.write_bytes(
        json.dumps(rec(0)).encode() + b"\n" + bad + b"\n" + json.dumps(rec(2)).encode() + b"\n"
    )
    records = list(iter_records(p))
    assert [r.error for r in records][0] is None and records[2].obj["id"] == "2"
    assert records[1].error.startswith("invalid UTF-8: ") and records[1].line_or_index == 2


# ------------------------------------------------------ whole-file errors ----
@pytest.mark.parametrize(
    "content, message",
    [
        (
            b"id,image\n1,a.png\n",
            r"not JSON records: expected '\[' or '\{' at line 1 column 1, found 'i'",
        ),
        (b"\n\n   hello", r"at line 3 column 4, found 'h'"),
    ],
)
def test_unusable_files_raise_command_error_with_position(tmp_path, content, message):
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    with pytest.raises(CommandError, match=message) as err:
        list(iter_records(p))
    assert str(p) in str(err.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CommandError, match=r"nope\.json: input file not found"):
        list(iter_records(tmp_path / "nope.json"))
    with pytest.raises(CommandError, match="is a directory"):
        list(iter_records(tmp_path))


# ----------------------------------------------------------------- fields ----
def test_parse_record_ok_and_aliases():
    obj = rec(7, task="Aerial Counting", band="LWIR", width=64, height=32)
    obj["conversations"] = [
        {"from": "user", "value": "<image>\nq"},
        {"from": "assistant", "value": "a"},
    ]
    r = parse_record(obj)
    assert (r.id, r.image, r.task, r.band, r.width, r.height) == (
        "7",
        "a.png",
        "aerial_counting",
        "lwir",
        64,
        32,
    )
    assert [t["from"] for t in r.conversations] == ["human", "gpt"]
    assert parse_record({**rec(0), "id": 12, "image": "b.png"}).id == "12"
    assert parse_record({k: v for k, v in rec(0).items() if k != "id"}).id is None


@pytest.mark.parametrize(
    "name, want",
    [
        ("AerialCounting", "aerial_counting"),
        ("re-id", "reid"),
        ("Pedestrian counting", "pedestrian_counting"),
        ("detect", None),
    ],
)
def test_normalise_task(name, want):
    assert normalise_task(name) == want


def _without(key):
    return {k: v for k, v in rec(0).items() if k != key}


def _turns(*turns):
    return {**rec(0), "conversations": [{"from": f, "value": v} for f, v in turns]}


@pytest.mark.parametrize(
    "obj, reason",
    [
        ([1, 2], "not a JSON object"),
        ("text", "not a JSON object"),
        (_without("image"), "no image field"),
        ({**rec(0), "image": []}, "no image field"),
        ({**rec(0), "image": ["a.png", "b.png"]}, "multi-image records are not supported"),
        ({**rec(0), "image": 5}, "invalid image field"),
        (_without("conversations"), "no conversations"),
        ({**rec(0), "conversations": [{"from": "human"}]}, "malformed conversation turn"),
        (_turns(("human", "q"), ("system", "s"), ("gpt", "a")), "unsupported turn role"),
        (_turns(("gpt", "a")), "no human turn"),
        (_turns(("human", "q")), "no gpt turn"),
        (_turns(("human", "q"), ("gpt", "  ")), "empty answer"),
        ({**rec(0), "id": [1]}, "invalid id"),
        ({**rec(0), "id": True}, "invalid id"),
        ({**rec(0), "task": "detection"}, "unknown task name"),
        ({**rec(0), "band": "uv"}, "unknown band name"),
        ({**rec(0), "width": "64"}, "invalid width/height"),
    ],
)
def test_parse_record_rejects(obj, reason):
    with pytest.raises(RecordRejected) as err:
        parse_record(obj)
    assert err.value.kind == reason and str(err.value).startswith(reason)


# ------------------------------------------------- damage costs one record ----
def _errors(path):
    return [(r.line_or_index, r.error) for r in iter_records(path) if r.error]


@pytest.mark.parametrize("brackets", [False, True])
@pytest.mark.parametrize("trailing_comma", [False, True])
def test_comma_separated_objects_resynchronise_after_a_broken_one(tmp_path, brackets, trailing_comma):
    """The IR-TD release's layout: `{...},\n{...},` (pretty-printed), the third object broken."""
    objs = [json.dumps(rec(i), indent=2) for i in range(5)]
    objs[2] = objs[2].replace('"image"', '"image" "oops"', 1)
    text = ",\n".join(objs) + ("," if trailing_comma else "")
    text = f"[\n{text}\n]" if brackets else text
    p = tmp_path / "irtd.json"
    p.write_text(text)
    records = list(iter_records(p))
    assert [r.obj["id"] for r in records if r.error is None] == ["0", "1", "3", "4"]
    ((index, error),) = _errors(p)
    assert index == 2
    byte = text.index('"oops"')  # json reports where it expected ':'
    line = text[:byte].count("\n") + 1
    assert error.startswith(f"invalid JSON: Expecting ':' delimiter at line {line} column ")
    assert f"(byte {byte})" in error and "reading resumed at line" in error


def test_broken_array_element_costs_that_element(tmp_path):
    p = tmp_path / "a.json"
    p.write_bytes(b'[{"id": "0"},\n {"id": },\n {"id": "2"}]')
    records = list(iter_records(p))
    assert [r.obj["id"] for r in records if r.error is None] == ["0", "2"]
    assert records[1].line_or_index == 1 and "line 2 column 9" in records[1].error


def test_broken_concatenated_object_at_the_end(tmp_path):
    p = tmp_path / "a.json"
    p.write_bytes(b'{\n  "id": "0"\n}\n{\n  "id": \n}')
    (index, error), = _errors(p)
    assert index == 1 and "at line 6 column 1" in error and "the rest of the file is skipped" in error
    assert [r.obj["id"] for r in iter_records(p) if r.error is None] == ["0"]


def test_undecodable_byte_in_an_array_rejects_that_record_only(tmp_path):
    p = tmp_path / "a.json"
    p.write_bytes(b'[' + json.dumps(rec(0)).encode().replace(b"caption", b"capt\xffion") + b", "
                  + json.dumps(rec(1)).encode() + b"]")
    first, second = iter_records(p)
    with pytest.raises(RecordRejected, match=r"invalid text: undecodable byte 0xff in conversations\[1\].value"):
        parse_record(first.obj)
    assert parse_record(second.obj).id == "1"


def test_jsonl_bad_first_line_costs_one_record(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"id": "0", "image": \n' + "\n".join(json.dumps(rec(i)) for i in (1, 2)) + "\n")
    records = list(iter_records(p))
    assert _layout(p) == "jsonl" and [r.line_or_index for r in records] == [1, 2, 3]
    assert records[0].error.startswith("invalid JSON: ") and "at line 1" in records[0].error
    assert [r.obj["id"] for r in records[1:]] == ["1", "2"]


@pytest.mark.parametrize("layout", ["jsonl", "concatenated", "array"])
@pytest.mark.parametrize(
    "bad, reason",
    [
        ('{"id": "x", "deep": ' + "[" * 100_000 + "]" * 100_000 + "}", "invalid JSON: nesting too deep"),
        ('{"id": "x", "n": ' + "9" * 5000 + "}", "invalid JSON: integer with more than 4300 digits"),
    ],
    ids=["nesting", "huge-int"],
)
def test_nesting_and_huge_integers_cost_one_record(tmp_path, layout, bad, reason):
    good = [json.dumps(rec(i), indent=None if layout == "jsonl" else 2) for i in range(3)]
    parts = [good[0], bad, good[1], good[2]]
    text = {"jsonl": "\n".join(parts), "concatenated": "\n".join(parts),
            "array": "[\n" + ",\n".join(parts) + "\n]"}[layout]
    p = tmp_path / "a.json"
    p.write_text(text)
    records = list(iter_records(p))
    assert [r.obj["id"] for r in records if r.error is None] == ["0", "1", "2"]
    (bad_rec,) = [r for r in records if r.error]
    assert bad_rec.error.startswith(reason), bad_rec.error


def test_lone_surrogate_escape_is_a_reject():
    obj = rec(0)
    obj["conversations"][1]["value"] = "caption \ud83d"
    with pytest.raises(RecordRejected, match=r"invalid text: lone surrogate U\+D83D in conversations\[1\].value"):
        parse_record(obj)


def test_a_one_element_array_is_records_not_a_meta_file(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([{"x": {"annotation": "other.json"}}]))
    (ann,) = iter_annotation_files(p)
    assert ann.layout == "array" and ann.meta_name is None and ann.records[0].obj == {"x": {"annotation": "other.json"}}
