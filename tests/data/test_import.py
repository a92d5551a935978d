"""irgpt data import: nothing lost, path rules, inference tables, determinism, the CLI."""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from irgpt.config.sections import ImportConfig
from irgpt.data import import_cli
from irgpt.data.importer import import_files, infer_band, infer_task, resolve_image
from irgpt.data.io import read_manifest, read_rejects, read_table, shard_paths
from irgpt.data.readers import RecordRejected
from irgpt.errors import CommandError


def _png(path: Path, shape=(8, 8), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def _corrupt(path: Path) -> Path:
    data = _png(path, (64, 64)).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def rec(i, image, question="<image>\nDescribe the image.", answer=None, **extra):
    return {
        "id": str(i),
        "image": [str(image)],
        "conversations": [
            {"from": "human", "value": question},
            {"from": "gpt", "value": answer or f"caption {i}"},
        ],
        **extra,
    }


def _write(path: Path, records, layout="jsonl") -> Path:
    if layout == "jsonl":
        text = "\n".join(json.dumps(r) for r in records) + "\n"
    elif layout == "array":
        text = json.dumps(records, indent=2)
    else:  # concatenated, pretty-printed
        text = "\n".join(json.dumps(r, indent=2) for r in records)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _reasons(out):
    return [r["reason"] for r in read_rejects(out).to_pylist()]


# ------------------------------------------------------- nothing is lost ----
def test_mixed_file_reconciles(tmp_path):
    img = tmp_path / "img"
    good = [_png(img / f"g{i}.png", seed=i) for i in range(3)]
    records = [
        rec(0, "img/g0.png"),
        rec(1, "img/missing.png"),
        rec(2, "img/g1.png"),
        rec(3, _corrupt(img / "bad.png")),
        rec(4, "img/g2.png"),
        {"id": "5"},
        [1, 2],
    ]
    ann = _write(tmp_path / "lwir_set.json", records, layout="concatenated")
    out = tmp_path / "out"
    m = import_files([ann], out, cfg=ImportConfig())
    assert m["counts"] == {"read": 7, "written": 3, "rejected": 4}
    assert m["counts"]["read"] == m["counts"]["written"] + m["counts"]["rejected"]
    assert m["rejects_by_reason"] == {
        "cannot decode image": 1,
        "missing image file": 1,
        "no image field": 1,
        "not a JSON object": 1,
    }
    assert m["inputs"][0]["layout"] == "concatenated" and m["num_rows"] == 3
    rows = read_table(out).to_pylist()
    assert [r["sample_id"] for r in rows] == ["lwir_set/0", "lwir_set/2", "lwir_set/4"]
    assert (
        rows[0]["image_path"] == str(good[0].resolve()) and rows[0]["image"] == good[0].read_bytes()
    )
    assert {r["band"] for r in rows} == {"lwir"} and {r["source"] for r in rows} == {"lwir_set"}
    assert (rows[0]["width"], rows[0]["height"], rows[0]["split"]) == (8, 8, "train")
    rejects = read_rejects(out).to_pylist()
    assert [(r["line_or_index"], r["sample_id"], r["stage"]) for r in rejects] == [
        (1, "lwir_set/1", "import"),
        (3, "lwir_set/3", "import"),
        (5, "lwir_set/5", "import"),
        (6, None, "import"),
    ]
    assert all(r["source_file"] == str(ann) for r in rejects)
    assert m["composition"]["task"] == {"caption": 3} and m["composition"]["split"] == {"train": 3}


def test_every_importer_reject_reason(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "big.png", (40, 40))
    (tmp_path / "sub").mkdir()
    lines = [
        json.dumps(rec(0, "a.png")),
        '{"id": "1", "image": ',  # invalid JSON
        json.dumps(rec(2, "a.png")).replace("caption", "capt\udcff"),  # invalid UTF-8 (byte 0xff)
        json.dumps(rec(0, "a.png")),  # duplicate id
        json.dumps(rec(4, "../outside.png")),  # path escapes
        json.dumps(rec(5, "big.png")),  # too large
        json.dumps(rec(6, "a.png", width=9, height=8)),  # size mismatch
        json.dumps(
            rec(7, "a.png", question="<image>\nHow many?", answer="<num>3</num>")
        ),  # ambiguous
        json.dumps(rec(8, "a.png", task="detection")),  # unknown task
        json.dumps(rec(9, "sub")),  # a directory
    ]
    data = "\n".join(lines).encode("utf-8", "surrogateescape")  # \udcff -> the raw byte 0xff
    p = tmp_path / "x.jsonl"
    p.write_bytes(data)
    _png(tmp_path.parent / "outside.png")
    m = import_files([p], tmp_path / "out", cfg=ImportConfig(max_pixels=1000))
    assert m["counts"] == {"read": 10, "written": 1, "rejected": 9}
    reasons = _reasons(tmp_path / "out")
    assert reasons[0].startswith("invalid JSON: ") and "line 2" in reasons[0]
    column = data.split(b"\n")[2].index(b"\xff") + 1
    assert reasons[1] == f"invalid UTF-8: byte {column} of line 3"
    assert reasons[2] == f"duplicate id: 'x/0' was already imported from {p} line 1"
    assert reasons[3].startswith("path escapes image root: ../outside.png")
    assert reasons[4].startswith("image too large: 40x40 = 1600 pixels > max_pixels=1000")
    assert reasons[5] == "size mismatch: the record says 9x8, the image is 8x8"
    assert reasons[6].startswith("ambiguous task: a <num> count")
    assert reasons[7].startswith("unknown task name: 'detection'")
    assert reasons[8].startswith("missing image file: ") and "is a directory" in reasons[8]
    assert [r["line_or_index"] for r in read_rejects(tmp_path / "out").to_pylist()] == list(
        range(2, 11)
    )


# ------------------------------------------------------------ path rules ----
def test_symlink_out_of_root_is_rejected(tmp_path):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    _png(root / "in.png")
    target = _png(elsewhere / "secret.png")
    os.symlink(target, root / "link.png")
    os.symlink(root / "in.png", root / "inner_link.png")  # stays inside: fine
    with pytest.raises(RecordRejected, match="path escapes image root"):
        resolve_image("link.png", root)
    assert resolve_image("inner_link.png", root) == (root / "in.png").resolve()
    with pytest.raises(RecordRejected, match="path escapes image root"):
        resolve_image(str(target), root)  # absolute path outside the root, no map
    assert resolve_image(str(root / "in.png"), root) == (root / "in.png").resolve()


def test_root_map_longest_prefix_and_containment(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _png(a / "x" / "1.png")
    _png(b / "1.png")
    rmap = [("/mnt/authors/data", str(a)), ("/mnt/authors/data/x", str(b))]
    assert (
        resolve_image("/mnt/authors/data/x/1.png", tmp_path / "r", rmap) == (b / "1.png").resolve()
    )
    assert (
        resolve_image("/mnt/authors/data/x/1.png", tmp_path / "r", rmap[:1])
        == (a / "x" / "1.png").resolve()
    )
    with pytest.raises(RecordRejected, match="path escapes image root"):
        # OLD matches whole path components only: `data` is no prefix of `dataset`, so this
        # path is not mapped, and as an absolute path outside the root it is refused.
        resolve_image("/mnt/authors/dataset/1.png", a, rmap)
    with pytest.raises(RecordRejected, match="path escapes image root"):
        resolve_image("/mnt/authors/data/x/../../../etc/passwd", a, rmap)  # escapes NEW


def test_import_with_root_map_and_image_root(tmp_path):
    images = tmp_path / "irtd"
    _png(images / "FLIR" / "t1.png")
    _png(images / "rel" / "r1.png")
    ann = _write(
        tmp_path / "ann" / "set.json",
        [
            rec(0, "/mnt/jixie16t/zhe/Data4MLLM/FLIR/t1.png"),
            rec(1, "rel/r1.png"),
            rec(2, "../x.png"),
        ],
        "array",
    )
    out = tmp_path / "out"
    m = import_files(
        [ann], out, image_root=images, root_map=[("/mnt/jixie16t/zhe/Data4MLLM", str(images))]
    )
    assert m["counts"] == {"read": 3, "written": 2, "rejected": 1}
    assert [r["image_path"] for r in read_table(out).to_pylist()] == [
        str((images / "FLIR" / "t1.png").resolve()),
        str((images / "rel" / "r1.png").resolve()),
    ]
    assert _reasons(out)[0].startswith("path escapes image root: ../x.png")
    assert m["image_roots"] == [str(images.resolve())] and m["root_map"] == [
        ["/mnt/jixie16t/zhe/Data4MLLM", str(images)]
    ]
    # Without --image-root, relative paths resolve against the annotation file's folder.
    _png(tmp_path / "ann" / "rel" / "r1.png")
    m2 = import_files([ann], tmp_path / "out2")
    assert m2["counts"]["written"] == 1 and m2["inputs"][0]["image_root"] == str(
        (tmp_path / "ann").resolve()
    )


def test_meta_file_import_uses_entry_roots_and_names(tmp_path):
    _png(tmp_path / "imgs" / "nir" / "a.png")
    _write(
        tmp_path / "nir_caption.jsonl",
        [rec(0, "a.png"), {k: v for k, v in rec(1, "a.png").items() if k != "id"}],
    )
    meta = tmp_path / "meta.json"
    meta.write_text(
        json.dumps(
            {
                "rgbnir_nir": {
                    "root": "imgs/nir",
                    "annotation": "nir_caption.jsonl",
                    "repeat_time": 1,
                    "length": 2,
                }
            }
        )
    )
    out = tmp_path / "out"
    m = import_files([meta], out)
    rows = read_table(out).to_pylist()
    assert [r["sample_id"] for r in rows] == [
        "rgbnir_nir/0",
        "rgbnir_nir-0000002",
    ]  # derived: name-line
    assert {r["source"] for r in rows} == {"rgbnir_nir"} and {r["band"] for r in rows} == {"nir"}
    assert m["inputs"][0]["meta_name"] == "rgbnir_nir" and m["inputs"][0]["declared_length"] == 2


# ------------------------------------------------------------- inference ----
@pytest.mark.parametrize(
    "texts, band",
    [
        (("flir_adas", "/d/images_thermal_train/1.jpg"), "lwir"),
        (("irtd", "/data/1-LLVIP/infrared/train/010001.jpg"), "lwir"),
        (
            ("irtd", "/data/1-LLVIP/visible/train/010001.jpg"),
            "vis",
        ),  # sensor word beats data-set name
        (("kaist", "set00/V000/lwir/I00000.jpg"), "lwir"),
        (("rgbnir", "/d/51-RGBNIR/country/0001_nir.tiff"), "nir"),
        (("Near-Infrared set", "a.png"), "nir"),
        (("swir_cam", "a.png"), "swir"),
        (("MWIR", "a.png"), "mwir"),
        (("rgb", "a.png"), "vis"),
        (("vedai", "/d/4-VEDAI/train/trainimgr/10682.jpg"), "unknown"),  # no keyword: no guess
        (("rgb_thermal", "a.png"), "unknown"),  # conflicting sensor words
        (("infrared", "x/ir/a.png"), "unknown"),
    ],
)
def test_infer_band(texts, band):
    assert infer_band(*texts) == band


@pytest.mark.parametrize(
    "question, answer, task",
    [
        ("Calculate the number of cars in the picture.", "<num>21</num>", "aerial_counting"),
        ("How many people are in this crowd?", "<num>77</num>", "pedestrian_counting"),
        (
            "Give the box of the white car.",
            "The target bounding box is <box>[[500, 223, 512, 238]]</box>.",
            "grounding",
        ),
        ("Locate all cars.", "<ref>car</ref> at <pos>[(10, 20), (30, 40)]</pos>", "location"),
        (
            "Is there a car on the right side of the first person from left to right?",
            "yes",
            "relationship",
        ),
        ("Is there a dog?", "No.", "relationship"),
        ("Which image in the grid numbered 1-8 matches the top-left person?", "8", "reid"),
        (
            "Which targets are NOT in the image?\n(A) scooter (B) motor (C) car (D) hydrant",
            "(A) scooter (B) motor (D) hydrant",
            "security",
        ),
        ("Which of these is not in the image?\n(A) a (B) b (C) c (D) d", "(B) b", "security"),
        (
            "What is the scene in the picture?\n(A) urban (B) forest (C) field (D) sea",
            "(B) forest",
            "scene",
        ),
        (
            "What is the object in the picture?\n(A) person (B) duck (C) horse (D) crocodile",
            "(A) person",
            "recognition",
        ),
        ("Describe the image.", "A thermal image of a street at night.", "caption"),
        ("What number?", "3", "caption"),  # a digit without a grid question is not reid
    ],
)
def test_infer_task(question, answer, task):
    assert infer_task(question, answer) == task


@pytest.mark.parametrize(
    "question, answer",
    [
        ("How many?", "<num>3</num>"),
        ("How many cars and people?", "<num>3</num>"),
        ("Pick one.\n(A) x (B) y", "(A) x"),
    ],
)
def test_infer_task_ambiguous_is_rejected(question, answer):
    with pytest.raises(RecordRejected, match="ambiguous task"):
        infer_task(question, answer)


def test_overrides_win(tmp_path):
    _png(tmp_path / "a.png")
    ann = _write(
        tmp_path / "flir.jsonl", [rec(0, "a.png", band="nir", task="scene"), rec(1, "a.png")]
    )
    out = tmp_path / "out"
    import_files([ann], out, band="vis_gray", task="grounding", source="mine", split="benchmark")
    rows = read_table(out).to_pylist()
    assert {(r["band"], r["task"], r["source"], r["split"]) for r in rows} == {
        ("vis_gray", "grounding", "mine", "benchmark")
    }
    import_files([ann], tmp_path / "out2")
    assert [(r["band"], r["task"]) for r in read_table(tmp_path / "out2").to_pylist()] == [
        ("nir", "scene"),
        ("lwir", "caption"),
    ]


# ----------------------------------------------- images, shards, outputs ----
def test_16bit_reencoded_and_embed_off(tmp_path):
    ramp = (np.arange(201) * 100).astype(np.uint16).reshape(1, 201)
    Image.fromarray(ramp).save(tmp_path / "r.tif")
    ann = _write(tmp_path / "a.jsonl", [rec(0, "r.tif")])
    m = import_files([ann], tmp_path / "out")
    (row,) = read_table(tmp_path / "out").to_pylist()
    out = np.asarray(Image.open(io.BytesIO(row["image"])))
    assert out.dtype == np.uint8 and [out[0, 0], out[0, 100], out[0, 200]] == [0, 128, 255]
    assert m["images"] == {"embedded": True, "reencoded_png": 1, "original_bytes": 0}
    import_files([ann], tmp_path / "out2", cfg=ImportConfig(embed_images=False))
    (row2,) = read_table(tmp_path / "out2").to_pylist()
    assert row2["image"] is None and row2["image_path"] == str((tmp_path / "r.tif").resolve())


def test_shards_order_determinism_and_workers(tmp_path):
    for i in range(7):
        _png(tmp_path / f"{i}.png", seed=i)
    records = [rec(i, f"{i}.png") for i in range(7)]
    records.insert(3, rec(99, "gone.png"))
    ann = _write(tmp_path / "a.jsonl", records)
    m1 = import_files([ann], tmp_path / "o1", shard_rows=3)
    assert [p.name for p in shard_paths(tmp_path / "o1")] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert [pq.read_metadata(p).num_rows for p in shard_paths(tmp_path / "o1")] == [3, 3, 1]
    assert m1["shards"] == [p.name for p in shard_paths(tmp_path / "o1")]
    import_files([ann], tmp_path / "o2", shard_rows=3, workers=2)
    t1, t2 = read_table(tmp_path / "o1"), read_table(tmp_path / "o2")
    assert t1.equals(t2) and read_rejects(tmp_path / "o1").equals(read_rejects(tmp_path / "o2"))
    assert t1.column("sample_id").to_pylist() == [f"a/{i}" for i in range(7)]


def test_existing_output_needs_overwrite(tmp_path):
    _png(tmp_path / "a.png")
    big = _write(tmp_path / "a.jsonl", [rec(i, "a.png") for i in range(3)])
    import_files([big], tmp_path / "out", shard_rows=1)
    with pytest.raises(CommandError, match="already holds a dataset.*--overwrite"):
        import_files([big], tmp_path / "out")
    small = _write(tmp_path / "b.jsonl", [rec(0, "a.png")])
    import_files([small], tmp_path / "out", shard_rows=1, overwrite=True)
    assert (
        len(shard_paths(tmp_path / "out")) == 1 and read_manifest(tmp_path / "out")["num_rows"] == 1
    )


def test_zero_rows_still_writes_a_readable_shard(tmp_path):
    ann = _write(tmp_path / "a.jsonl", [rec(0, "gone.png")])
    m = import_files([ann], tmp_path / "out")
    assert m["counts"] == {"read": 1, "written": 0, "rejected": 1}
    assert read_table(tmp_path / "out").num_rows == 0


def test_readable_by_pandas_and_duckdb(tmp_path):
    import duckdb
    import pandas as pd
    _png(tmp_path / "a.png")
    import_files(
        [_write(tmp_path / "a.jsonl", [rec(i, "a.png") for i in range(5)])],
        tmp_path / "out",
        shard_rows=2,
    )
    out = tmp_path / "out"
    assert duckdb.sql(f"select count(*) from read_parquet('{out}/*.parquet')").fetchall() == [(5,)]
    assert len(pd.read_parquet([str(p) for p in shard_paths(out)])) == 5


def test_pandas_reads_the_directory(tmp_path):
    """pandas reads the dataset dir with the documented ignore list (manifest.json
    sits beside the shards, and Arrow only skips '_'/'.' names by itself)."""
    import pandas as pd

    from irgpt.data.io import PANDAS_IGNORE, read_pandas

    _png(tmp_path / "a.png")
    import_files([_write(tmp_path / "a.jsonl", [rec(0, "a.png")])], tmp_path / "out")
    assert len(pd.read_parquet(tmp_path / "out", ignore_prefixes=PANDAS_IGNORE)) == 1
    assert len(read_pandas(tmp_path / "out")) == 1


# -------------------------------------------------------------------- CLI ----
def _main(argv: list[str]) -> int:
    """What `irgpt data import ...` does: parse, run, CommandError -> exit 2."""
    parser = argparse.ArgumentParser(prog="irgpt")
    sub = parser.add_subparsers(dest="command", required=True)
    import_cli.add_arguments(sub.add_parser("import"))
    args = parser.parse_args(["import", *argv])
    try:
        return import_cli.run(args)
    except CommandError as exc:
        print(f"irgpt data import: error: {exc}")
        return 2


def test_cli_end_to_end(tmp_path, capsys):
    _png(tmp_path / "data" / "FLIR" / "a.png")
    _png(tmp_path / "data" / "FLIR" / "big.png", (40, 40))
    ann = _write(
        tmp_path / "flir.json",
        [
            rec(0, "/authors/FLIR/a.png"),
            rec(1, "/authors/FLIR/big.png"),
            rec(2, "/authors/FLIR/none.png"),
        ],
        "array",
    )
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  importer:\n    max_side: 4096\n")
    code = _main(
        [
            str(ann),
            "--out",
            str(tmp_path / "out"),
            "--image-root-map",
            f"/authors={tmp_path / 'data'}",
            "--split",
            "val",
            "--config",
            str(cfg),
            "--set",
            "data.importer.max_pixels=1000",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "read 3 records from 1 annotation file(s): 1 written, 2 rejected" in printed
    assert (
        "image too large" in printed
        and "missing image file" in printed
        and "band: lwir 1" in printed
    )
    m = read_manifest(tmp_path / "out")
    assert (
        m["config"]["data"]["importer"]["max_pixels"] == 1000
        and m["config"]["data"]["importer"]["max_side"] == 4096
    )
    assert m["composition"]["split"] == {"val": 1}


def test_cli_unusable_inputs_exit_non_zero(tmp_path, capsys):
    assert _main([str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.json: input file not found" in capsys.readouterr().out
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    assert _main([str(bad), "--out", str(tmp_path / "o")]) == 2
    assert (
        f"{bad}: not JSON records: expected '[' or '{{' at line 1 column 1"
        in capsys.readouterr().out
    )
    assert _main([str(bad), "--out", str(tmp_path / "o"), "--image-root-map", "nonsense"]) == 2
    assert "expected OLD_PREFIX=NEW_PREFIX" in capsys.readouterr().out
    assert not (tmp_path / "o").exists()  # nothing written for an unusable input


def test_cli_registered_in_irgpt_main(tmp_path, capsys):
    from irgpt import cli

    assert (
        cli.main(["data", "import", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")]) == 2
    )
    assert "nope.json: input file not found" in capsys.readouterr().err


def test_kill_9_of_an_overwriting_import_leaves_the_old_dataset_whole(tmp_path):
    """`kill -9` of `irgpt data import --overwrite` mid-write: D still holds the earlier
    import, its manifest matching its rows; the rerun replaces it and cleans up."""
    import signal
    import subprocess
    import sys
    import time

    _png(tmp_path / "a.png")
    small = _write(tmp_path / "small.jsonl", [rec(i, "a.png") for i in range(5)])
    out = tmp_path / "D"
    import_files([small], out)
    big = _write(tmp_path / "big.jsonl", [rec(i, "a.png") for i in range(60_000)])
    cmd = [sys.executable, "-m", "irgpt", "data", "import", str(big), "--out", str(out), "--overwrite"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob(".D.incoming-*/part-*.parquet")):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert list(tmp_path.glob(".D.incoming-*/part-*.parquet")), "the kill came before any shard"
    m = read_manifest(out)
    assert m["counts"]["written"] == 5 == read_table(out).num_rows
    import_files([small], out, overwrite=True)
    assert not list(tmp_path.glob(".D.incoming-*")) and read_table(out).num_rows == 5
