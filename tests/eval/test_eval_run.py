"""`irgpt eval run`: row selection, decoding, batched greedy generation, the Ray run and the CLI.

A random-init tiny VLM answers garbage: the tests check the plumbing (every
row answered once, ordering, files, determinism, unparseable answers
counted), not the quality.
"""

from __future__ import annotations

import argparse
import io
import json

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from irgpt.config import load_config
from irgpt.data.io import base_manifest, write_manifest, write_table
from irgpt.data.schema import SAMPLE_SCHEMA
from irgpt.errors import CommandError
from irgpt.eval import cli
from irgpt.eval.generate import BenchmarkGenerator, decode_answer, stop_and_drop_ids
from irgpt.eval.outputs import METRICS_FILE, PREDICTIONS_FILE, TABLE_FILE
from irgpt.eval.run import benchmark_rows, parse_tasks, plan_eval_parts
from irgpt.eval.tasks import BENCHMARK_TASKS

SCENE_Q = "Which scene is shown?\n(A) road (B) forest (C) street (D) field"
REC_Q = "What is the object in the picture?\n(A) person (B) car (C) dog (D) bus"
SEC_Q = "Which targets are NOT in the image?\n(A) truck (B) dog (C) person (D) bus"

# (id, task, question, answer); all split "benchmark"
BENCH = [
    ("b00", "scene", SCENE_Q, "(B) forest"),
    ("b01", "recognition", REC_Q, "(A) person"),
    ("b02", "grounding", "Where is the car?", "The target bounding box is <box>[[5, 6, 30, 40]]</box>."),
    ("b03", "relationship", "Is there a car on the left side of the first person?", "yes"),
    ("b04", "reid", "Which cell matches the top-left one?", "8"),
    ("b05", "security", SEC_Q, "(A) truck (D) bus"),
    ("b06", "location", "Find every car.", "<ref>car</ref> at <pos>[(100, 200), (300, 400)]</pos>"),
    ("b07", "aerial_counting", "How many cars are there?", "<num>21</num>"),
    ("b08", "pedestrian_counting", "How many people are there?", "<num>7</num>"),
    ("b09", "scene", SCENE_Q, "(A) road"),
    ("b10", "relationship", "Is there a dog on the right side of the car?", "no"),
    ("b11", "recognition", REC_Q, "(D) bus"),
]
BAD_IMAGE_ID = "b05"  # corrupt PNG bytes: answered "" with an error, never dropped
HEADER = ["Scene", "Rec.", "Gro.", "Rel.", "ReID", "Sec.", "psum", "Loc.", "A.C.", "P.C.", "nsum"]
SETS = ["--set", "eval.max_new_tokens=4", "--set", "eval.batch_size=8", "--set", "eval.concurrency=1", "--set", "eval.max_error_rate=0.1"]  # 1 bad image of 12 rows


def _png(seed: int) -> bytes:
    arr = (np.random.default_rng(seed).random((64, 64)) * 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _row(sid, task, question, answer, split="benchmark", seed=0):
    return {
        "sample_id": sid, "image": b"not a png" if sid == BAD_IMAGE_ID else _png(seed), "image_path": None,
        "band": "lwir", "source": "test", "task": task, "split": split,
        "conversations": [{"from": "human", "value": "<image>\n" + question}, {"from": "gpt", "value": answer}],
        "width": 64, "height": 64, "paired_vis_id": None, "rule": None,
    }


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    """12 benchmark rows of 9 tasks in two shards, plus caption and val rows that must be left out."""
    out = tmp_path_factory.mktemp("bench")
    rows = [_row(*item, seed=i) for i, item in enumerate(BENCH)]
    rows.insert(3, _row("c00", "caption", "Describe the infrared image.", "A thermal image of a car."))
    rows.insert(8, _row("v00", "scene", SCENE_Q, "(B) forest", split="val"))
    rows.append(_row("a00", "caption", "Describe the infrared image.", "A dog.", seed=99))
    half = len(rows) // 2
    for k, chunk in enumerate((rows[half:], rows[:half])):  # shard order != id order
        write_table(out / f"part-{k:05d}.parquet", pa.Table.from_pylist(chunk, schema=SAMPLE_SCHEMA))
    write_manifest(out, base_manifest("test-bench", num_rows=len(rows)))
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from irgpt.models.tokenizer import synthetic_corpus, train_tokenizer
    from irgpt.models.vlm import build_tiny_vlm, save_vlm

    tok = train_tokenizer(synthetic_corpus(100), vocab_size=400)
    model, spec = build_tiny_vlm(tok, image_size=64, seed=0)
    return save_vlm(model, tok, tmp_path_factory.mktemp("model") / "tiny", spec)


def _items(bench_dir):
    from irgpt.data.io import read_table

    table = read_table(bench_dir)
    return [r for r in table.to_pylist() if r["split"] == "benchmark" and r["task"] != "caption"]


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _parse(argv):
    parser = argparse.ArgumentParser(prog="irgpt")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


# ---------------------------------------------------------- no model ----
def test_select_rows_split_tasks_order_limit(bench_dir):
    rows = benchmark_rows(bench_dir)
    assert [r.id for r in rows] == [b[0] for b in BENCH]  # caption and val rows left out, ordered by id
    b02 = rows[2]
    assert (b02.task, b02.question, b02.answer) == ("grounding", BENCH[2][2], BENCH[2][3])
    assert [r.id for r in benchmark_rows(bench_dir, limit=5)] == ["b00", "b01", "b02", "b03", "b04"]
    assert [r.id for r in benchmark_rows(bench_dir, tasks=parse_tasks("scene,Rel."))] == ["b00", "b03", "b09", "b10"]
    assert [r.id for r in benchmark_rows(bench_dir, split="val")] == ["v00"]
    with pytest.raises(CommandError, match="no rows of split 'train'"):
        benchmark_rows(bench_dir, split="train")
    with pytest.raises(CommandError, match="--split"):
        benchmark_rows(bench_dir, split="test")
    with pytest.raises(CommandError, match="unknown task 'caption'"):
        parse_tasks("scene,caption")
    with pytest.raises(CommandError, match="--limit"):
        benchmark_rows(bench_dir, limit=0)


def test_plan_eval_parts_cover_rows_once(bench_dir):
    rows = benchmark_rows(bench_dir)
    parts = plan_eval_parts(rows, part_rows=4)
    ids = [i for p in parts for i in p["ids"]]
    assert sorted(ids) == [r.id for r in rows] and len(ids) == len(set(ids))
    assert all(len(p["offsets"]) <= 4 and len({p["file"]}) == 1 for p in parts)
    assert all(p["start"] == p["offsets"][0] and p["stop"] == p["offsets"][-1] + 1 for p in parts)
    assert plan_eval_parts(rows, part_rows=4) == parts  # deterministic


def test_decode_keeps_answer_tags_even_when_special():
    from tokenizers import AddedToken

    from irgpt.models.tokenizer import synthetic_corpus, train_tokenizer

    tok = train_tokenizer(synthetic_corpus(40), vocab_size=300)
    stop, drop = stop_and_drop_ids(tok, generation_eos=[tok.eos_token_id], pad_id=tok.pad_token_id)
    assert tok.eos_token_id in stop and tok.pad_token_id in drop and tok.bos_token_id in drop
    answer = tok("<num>21</num> and <box>[[1, 2, 3, 4]]</box>", add_special_tokens=False)["input_ids"]
    ids = [tok.bos_token_id, *answer, tok.eos_token_id, *tok(" junk")["input_ids"], tok.pad_token_id]
    assert decode_answer(tok, ids, stop, drop) == "<num>21</num> and <box>[[1, 2, 3, 4]]</box>"
    assert decode_answer(tok, [tok.eos_token_id], stop, drop) == ""
    # A tokenizer that marks the tags (and a chat turn end) special: tags kept, the marker stops / drops.
    tok.add_tokens([AddedToken("<|im_end|>", special=True)], special_tokens=True)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in ("<ref>", "</ref>")],
                   special_tokens=True)
    stop, drop = stop_and_drop_ids(tok, None, tok.pad_token_id)
    ids = tok("<ref>car</ref> at <pos>[(1, 2)]</pos><|im_end|>tail", add_special_tokens=False)["input_ids"]
    assert decode_answer(tok, ids, stop, drop) == "<ref>car</ref> at <pos>[(1, 2)]</pos>"
    assert tok.decode(ids, skip_special_tokens=True).startswith("car")  # why skip_special_tokens is not used


def test_cli_registers_score_and_run(tmp_path):
    args = _parse(["eval", "run", "--model", "M", "--bench", "B", "--tasks", "scene,ReID", "--limit", "3",
                   "--set", "eval.batch_size=2"])
    assert (args.model, args.bench, args.out, args.split, args.tasks, args.limit) == ("M", "B", None, "benchmark",
                                                                                      "scene,ReID", 3)
    assert args.set == ["eval.batch_size=2"] and callable(args.func)
    assert callable(_parse(["eval", "score", "--predictions", "p.jsonl"]).func)
    missing = _parse(["eval", "run", "--model", str(tmp_path), "--bench", str(tmp_path)])
    with pytest.raises(CommandError, match="not a model directory"):
        missing.func(missing)


# ------------------------------------------------- generation in process ----
def test_generator_left_padding_matches_one_by_one_and_is_deterministic(model_dir, bench_dir):
    # One batch of 4 prompts of different lengths (scene's options are long), plus the bad image.
    items = [r for r in _items(bench_dir) if r["sample_id"] in ("b10", "b00", BAD_IMAGE_ID, "b02", "b07")]
    gen = BenchmarkGenerator(str(model_dir), batch_size=4, max_new_tokens=6)
    first = gen.generate(items)
    assert [p["id"] for p in first] == [r["sample_id"] for r in items]  # input order, every row
    assert first == gen.generate(items)  # greedy: the same answers again
    gen.batch_size = 1
    assert first == gen.generate(items)  # left padding + attention mask == unpadded prompts
    bad = next(p for p in first if p["id"] == BAD_IMAGE_ID)
    assert bad["answer"] == "" and bad["error"].startswith("UnidentifiedImageError") and "0x" not in bad["error"]
    assert all(p["error"] == "" for p in first if p["id"] != BAD_IMAGE_ID)
    assert any(p["answer"] for p in first)


# ------------------------------------------------------------ Ray run ----
def test_eval_run_cli_end_to_end(ray_local, model_dir, bench_dir, tmp_path):
    out = tmp_path / "eval"
    args = _parse(["eval", "run", "--model", str(model_dir), "--bench", str(bench_dir), "--out", str(out), *SETS])
    assert args.func(args) == 0

    preds = _read_jsonl(out / PREDICTIONS_FILE)
    assert [p["id"] for p in preds] == [b[0] for b in BENCH]  # one per row, ordered by id
    assert all({"id", "task", "answer", "label"} <= set(p) for p in preds)
    assert {p["id"]: (p["task"], p["label"]) for p in preds} == {b[0]: (b[1], b[3]) for b in BENCH}
    assert next(p for p in preds if p["id"] == BAD_IMAGE_ID)["answer"] == ""

    metrics = json.loads((out / METRICS_FILE).read_text())
    assert "psum" in metrics and "nsum" in metrics and metrics["psum_tasks"] == list(BENCHMARK_TASKS[:6])
    assert metrics["nsum_tasks"] == list(BENCHMARK_TASKS[6:])
    counts = {t: sum(1 for b in BENCH if b[1] == t) for t in BENCHMARK_TASKS}
    assert {t: r["n"] for t, r in metrics["tasks"].items()} == counts
    assert all(r["gt_unparseable"] == 0 and r["missing_predictions"] == 0 for r in metrics["tasks"].values())
    assert metrics["tasks"]["security"]["parse_rate"] < 1  # the empty answer counts as unparseable
    assert metrics["n"] == len(BENCH) and metrics["split"] == "benchmark"
    assert metrics["model"] == str(model_dir.resolve()) and metrics["bench"] == str(bench_dir.resolve())
    assert metrics["seconds"] > 0 and metrics["samples_per_s"] > 0
    assert metrics["generation"]["errors"] == 1 and metrics["generation"]["error_examples"][0]["id"] == BAD_IMAGE_ID

    table = (out / TABLE_FILE).read_text()
    header = next(line for line in table.splitlines() if line.startswith("| |"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == HEADER

    # predictions.jsonl is the pairs layout: `eval score` on it gives the same numbers.
    again = _parse(["eval", "score", "--predictions", str(out / PREDICTIONS_FILE), "--out", str(tmp_path / "s.json")])
    assert again.func(again) == 0
    rescored = json.loads((tmp_path / "s.json").read_text())
    assert (rescored["psum"], rescored["nsum"]) == (metrics["psum"], metrics["nsum"])


@pytest.mark.slow
def test_run_benchmark_deterministic_across_runs_and_actor_counts(ray_local, model_dir, bench_dir, tmp_path):
    from irgpt.eval.run import run_benchmark

    base = ["eval.max_new_tokens=6", "eval.batch_size=2", "eval.max_error_rate=0.1"]
    a = run_benchmark(load_config(None, [*base, "eval.concurrency=1"]), model_dir, bench_dir, tmp_path / "a")
    b = run_benchmark(load_config(None, [*base, "eval.concurrency=2"]), model_dir, bench_dir, tmp_path / "b")
    assert a["generation"]["parts"] == 2 and b["generation"]["concurrency"] == 2
    pa_, pb = _read_jsonl(tmp_path / "a" / PREDICTIONS_FILE), _read_jsonl(tmp_path / "b" / PREDICTIONS_FILE)
    assert pa_ == pb and len(pa_) == len(BENCH)
    assert (a["psum"], a["nsum"]) == (b["psum"], b["nsum"])


@pytest.mark.slow
def test_run_benchmark_limit_tasks_and_default_out(ray_local, model_dir, bench_dir):
    from irgpt.eval.run import run_benchmark

    cfg = load_config(None, ["eval.max_new_tokens=4", "eval.batch_size=4"])
    report = run_benchmark(cfg, model_dir, bench_dir, None, tasks="scene,recognition,Rel.", limit=4)
    out = model_dir / "eval"
    preds = _read_jsonl(out / PREDICTIONS_FILE)
    assert [p["id"] for p in preds] == ["b00", "b01", "b03", "b09"]
    assert report["n"] == 4 and report["limit"] == 4 and set(report["tasks"]) == {"scene", "recognition",
                                                                                    "relationship"}
    assert report["nsum"] is None and report["nsum_tasks"] == []
    assert json.loads((out / METRICS_FILE).read_text())["n"] == 4


def test_too_many_generation_errors_fail_the_run_after_writing_it(ray_local, model_dir, bench_dir, tmp_path):
    """1 failed generation of 12 rows is over the default eval.max_error_rate (0.02): exit 2, one line
    naming the row and the error; the outputs are written (to look at), not passed off as a score."""
    out = tmp_path / "eval"
    args = _parse(["eval", "run", "--model", str(model_dir), "--bench", str(bench_dir), "--out", str(out),
                   "--set", "eval.max_new_tokens=2"])
    from irgpt.errors import CommandError

    with pytest.raises(CommandError, match=rf"1 of 12 generations failed .*max_error_rate=0.02.*{BAD_IMAGE_ID}"):
        args.func(args)
    assert json.loads((out / METRICS_FILE).read_text())["generation"]["errors"] == 1
