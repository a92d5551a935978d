"""A corpus of bad inputs for `irgpt data import`: each kind is a reject with its reason.

One import reads every kind at once (and a second, comma-separated file in the IR-TD
authors' layout); the command exits 0, prints no traceback, and reconciles
`read == written + rejected`, with each reject naming its file, position and problem.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from irgpt.data.io import read_manifest, read_rejects, read_table


def _png(path: Path, shape=(8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def rec(i, image="ok.png", question="<image>\nDescribe the image.", answer=None, **extra):
    return {
        "id": str(i),
        "image": [image],
        "conversations": [
            {"from": "human", "value": question},
            {"from": "gpt", "value": answer or f"caption {i}"},
        ],
        **extra,
    }


def _line(obj) -> bytes:
    return json.dumps(obj).encode()


def _turns(*pairs):
    return [{"from": f, "value": v} for f, v in pairs]


# (kind, the JSON Lines line, the start of its reject reason)
CASES = [
    ("invalid JSON", b'{"id": "1", "image": ', "invalid JSON: "),
    ("invalid UTF-8", _line(rec(2)).replace(b"caption", b"capt\xff"), "invalid UTF-8: byte "),
    ("lone surrogate", _line(rec(3)).replace(b"caption", b"caption \\ud83d"),
     "invalid text: lone surrogate U+D83D in conversations[1].value"),
    ("lone surrogate in the id", _line(rec(33)).replace(b'"33"', b'"\\udc00x"'),
     "invalid text: lone surrogate U+DC00 in id"),
    ("deep nesting", b'{"id": "4", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "invalid JSON: nesting too deep"),
    ("huge integer", b'{"id": "5", "x": ' + b"7" * 5000 + b"}",
     "invalid JSON: integer with more than 4300 digits"),
    ("not an object", b"[1, 2]", "not a JSON object: got list"),
    ("invalid id", _line({**rec(7), "id": [7]}), "invalid id: [7]"),
    ("no image", _line({k: v for k, v in rec(8).items() if k != "image"}), "no image field"),
    ("image not a string", _line({**rec(9), "image": 9}), "invalid image field: 9"),
    ("multi-image", _line({**rec(10), "image": ["a.png", "b.png"]}),
     "multi-image records are not supported: 2 images"),
    ("no conversations", _line({**rec(11), "conversations": []}), "no conversations"),
    ("malformed turn", _line({**rec(12), "conversations": [{"from": "human"}]}),
     "malformed conversation turn: turn 0"),
    ("unsupported role", _line({**rec(13), "conversations": _turns(("system", "x"), ("gpt", "y"))}),
     "unsupported turn role: turn 0 is from 'system'"),
    ("no human turn", _line({**rec(14), "conversations": _turns(("gpt", "y"))}), "no human turn"),
    ("no gpt turn", _line({**rec(15), "conversations": _turns(("human", "x"))}), "no gpt turn"),
    ("empty answer", _line(rec(16, answer=" ")), "empty answer"),
    ("unknown task", _line(rec(17, task="detection")), "unknown task name: 'detection'"),
    ("unknown band", _line(rec(18, band="uv")), "unknown band name: 'uv'"),
    ("invalid width", _line(rec(19, width=-3)), "invalid width/height: width=-3"),
    ("path escapes root", _line(rec(20, "../outside.png")), "path escapes image root: ../outside.png"),
    ("NUL in path", _line(rec(21, "a\u0000.png")), "invalid image path: "),
    ("symlink loop", _line(rec(22, "loop.png")), "invalid image path: "),
    ("missing image", _line(rec(23, "none.png")), "missing image file: "),
    ("directory image", _line(rec(24, "sub")), "missing image file: "),
    ("FIFO image", _line(rec(25, "fifo.png")), "not a regular file: "),
    ("file over max_file_bytes", _line(rec(26, "huge.png")), "image too large: "),
    ("not an image", _line(rec(27, "text.png")), "cannot decode image: not a recognised image format"),
    ("truncated image", _line(rec(28, "half.png")), "cannot decode image: "),
    ("too many pixels", _line(rec(29, "big.png")), "image too large: 200x200 = 40000 pixels"),
    ("size mismatch", _line(rec(30, width=9, height=8)), "size mismatch: the record says 9x8"),
    ("duplicate id", _line(rec(0)), "duplicate id: 'bad/0' was already imported"),
    ("ambiguous task", _line(rec(32, question="<image>\nHow many?", answer="<num>3</num>")),
     "ambiguous task: "),
]


def _images(root: Path) -> None:
    _png(root / "ok.png")
    _png(root / "big.png", (200, 200))
    _png(root.parent / "outside.png")
    (root / "sub").mkdir()
    os.symlink("loop.png", root / "loop.png")
    os.mkfifo(root / "fifo.png")
    with open(root / "huge.png", "wb") as fp:  # sparse: 1 GiB by stat, no disk used
        fp.truncate(1 << 30)
    (root / "text.png").write_text("this is not a picture\n")
    data = _png(root / "half.png", (64, 64)).read_bytes()
    (root / "half.png").write_bytes(data[: len(data) // 2])


def test_every_bad_input_kind_is_a_reject_with_its_reason(tmp_path):
    assert len(CASES) >= 25
    root = tmp_path / "images"
    _images(root)
    lines = [_line(rec(0))] + [line for _kind, line, _reason in CASES]
    (root / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    objs = [json.dumps(rec(100 + i), indent=2) for i in range(5)]
    objs[2] = objs[2].replace('"image"', '"image" "oops"', 1)
    (root / "irtd.json").write_text(",\n".join(objs) + ",\n")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "irgpt", "data", "import", str(root / "bad.jsonl"),
         str(root / "irtd.json"), "--out", str(out), "--workers", "1",
         "--set", "data.importer.max_pixels=10000"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout

    manifest = read_manifest(out)
    read, written = len(lines) + 5, 1 + 4
    assert manifest["counts"] == {"read": read, "written": written, "rejected": read - written}
    assert read_table(out).num_rows == written
    rejects = read_rejects(out).to_pylist()
    jsonl = [r for r in rejects if r["source_file"].endswith("bad.jsonl")]
    assert [r["line_or_index"] for r in jsonl] == list(range(2, len(CASES) + 2))
    for (kind, _line_bytes, reason), row in zip(CASES, jsonl):
        assert row["reason"].startswith(reason), (kind, row["reason"])
        assert row["sample_id"] is None or row["sample_id"].encode("utf-8")
        assert row["stage"] == "import"
    (irtd,) = [r for r in rejects if r["source_file"].endswith("irtd.json")]
    assert irtd["line_or_index"] == 2 and "(byte " in irtd["reason"]
    assert irtd["reason"].startswith("invalid JSON: Expecting ':' delimiter at line ")
    # the rejects table itself is readable by pandas (no lone surrogates made it in)
    import pandas as pd

    assert len(pd.read_parquet(out / "_rejects")) == read - written
    by_kind = {kind: row for (kind, _l, _r), row in zip(CASES, jsonl)}
    assert by_kind["lone surrogate in the id"]["sample_id"] == "bad/\\udc00x"
