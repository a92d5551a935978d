"""``irgpt eval run``: greedy generation on the benchmark rows of a dataset, then scoring.

docs/method.md, "The benchmark: 9 tasks, psum and nsum"; docs/eval.md, "eval run".

How a run goes:
1. The driver reads the small columns of the benchmark dataset (``sample_id``,
   ``task``, ``split``, ``conversations``; never the images), keeps the rows of
   ``split`` whose task is one of the 9 benchmark tasks (caption rows never
   count), orders them by id and applies ``limit``. Each row's ground truth is
   its own first gpt turn, so no annotation file is needed.
2. It plans *parts*: runs of up to ``PART_BATCHES * eval.batch_size`` selected
   rows of one shard. The plan depends on the data, the selection and
   ``eval.batch_size`` only, never on the number of actors, so the batches,
   and so the predictions, do not change with ``eval.concurrency``.
3. ``ray.data.from_items(parts).map_batches(_PartWorker, compute=ActorPoolStrategy(size=...))``:
   each actor loads the model once (``load_vlm``), reads its part's rows
   (image bytes included) from Parquet itself, and generates in batches of
   ``eval.batch_size``: prompt-only encodings (``VLMCollator.encode(...,
   with_answers=False)``), LEFT-padded with an attention mask so every
   prompt ends where generation starts, ``do_sample=False`` (greedy),
   ``max_new_tokens=eval.max_new_tokens``. Rows are grouped by task and
   prompt length inside a part to keep padding small.
4. Only the new tokens are decoded, cut at the first end-of-sequence token,
   with every special token dropped *except* the answer-format tags
   (``<num>``, ``<box>``, ``<ref>``, ``<pos>`` and their closing tags), which
   the parsers need whether or not a tokenizer marks them special.
5. A row whose image or prompt cannot be built, or whose generation fails
   (also when retried alone), gets an empty answer and an ``error``: it is
   scored as unparseable, never dropped.
6. ``OUT/predictions.jsonl`` (ordered by id), ``OUT/metrics.json`` (the
   ``score_all`` report plus run facts) and ``OUT/table.md``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from irgpt import storage
from irgpt.errors import CommandError
from irgpt.eval.generate import BenchmarkGenerator
from irgpt.eval.outputs import md_cell, write_outputs
from irgpt.eval.tasks import BENCHMARK_TASKS, parse_task_label
from irgpt.progress import Progress
from irgpt.ray_utils import log0

DEFAULT_OUT = "eval"
"""Default output folder, inside the model directory."""
PART_BATCHES = 4
"""Generation batches per part (the unit an actor reads and reports)."""
_META_COLUMNS = ["sample_id", "task", "split", "conversations"]
_WORKER_COLUMNS = ["sample_id", "image", "image_path", "task", "conversations"]
_EXAMPLES = 5


# ------------------------------------------------------------ selection ----
@dataclass(frozen=True)
class BenchRow:
    """One selected benchmark row: where it lives and its ground truth."""

    id: str
    task: str
    question: str
    """First human turn without `<image>`."""
    answer: str
    """Ground truth: the first gpt turn."""
    file: str
    offset: int
    """Row index inside `file`."""


def parse_tasks(value: str | Sequence[str] | None) -> list[str] | None:
    """`"scene,Rec."` or a list of names -> canonical task names (None = all 9)."""
    if value is None:
        return None
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else [str(n).strip() for n in value]
    names = [n for n in names if n]
    if not names:
        raise CommandError("--tasks: no task names given")
    out = []
    for name in names:
        try:
            task = parse_task_label(name)
        except ValueError as exc:
            raise CommandError(f"--tasks: {exc}") from None
        if task not in out:
            out.append(task)
    return out


def benchmark_rows(bench_dir: str | Path, split: str = "benchmark", tasks: Sequence[str] | None = None,
                limit: int | None = None) -> list[BenchRow]:
    """The rows to evaluate, ordered by id (string order), at most `limit` of them.

    Reads only the metadata columns. Rows of other splits and non-benchmark
    tasks (caption) are left out; a duplicate id is an error.
    """
    import pyarrow.parquet as pq

    from irgpt.data.io import shard_paths
    from irgpt.data.schema import SPLITS, answer_text, human_text

    if split not in SPLITS:
        raise CommandError(f"--split: {split!r} is not one of {list(SPLITS)}")
    if limit is not None and limit < 1:
        raise CommandError(f"--limit must be >= 1, got {limit}")
    wanted = set(BENCHMARK_TASKS if tasks is None else tasks)
    unknown = wanted - set(BENCHMARK_TASKS)
    if unknown:
        raise CommandError(f"unknown benchmark task(s) {sorted(unknown)}; expected {', '.join(BENCHMARK_TASKS)}")
    bench_dir = Path(bench_dir)
    if not bench_dir.is_dir():
        raise CommandError(f"benchmark directory not found: {bench_dir}")
    files = shard_paths(bench_dir)
    if not files:
        raise CommandError(f"{bench_dir}: no part-*.parquet shards (not a dataset directory)")
    rows: list[BenchRow] = []
    seen: dict[str, str] = {}
    splits_found: dict[str, int] = {}
    for path in files:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        missing = [c for c in _META_COLUMNS if c not in names]
        if "image" not in names and "image_path" not in names:
            missing.append("image or image_path")
        if missing:
            raise CommandError(f"{path}: missing column(s) {missing} (see irgpt/data/schema.py)")
        table = pf.read(columns=_META_COLUMNS)
        ids = table.column("sample_id").to_pylist()
        row_tasks = table.column("task").to_pylist()
        row_splits = table.column("split").to_pylist()
        convs = table.column("conversations")
        for i, (sid, task, row_split) in enumerate(zip(ids, row_tasks, row_splits)):
            splits_found[str(row_split)] = splits_found.get(str(row_split), 0) + 1
            if row_split != split or task not in wanted:
                continue
            sid = str(sid)
            where = f"{path.name} row {i}"
            if sid in seen:
                raise CommandError(f"{bench_dir}: sample_id {sid!r} appears twice ({seen[sid]} and {where})")
            seen[sid] = where
            conv = convs[i].as_py() or []
            rows.append(BenchRow(sid, task, human_text(conv), answer_text(conv), str(path.resolve()), i))
    if not rows:
        chosen = "all benchmark tasks" if tasks is None else ", ".join(tasks)
        raise CommandError(f"{bench_dir}: no rows of split {split!r} and {chosen} "
                           f"(rows per split: {splits_found or 'none'})")
    rows.sort(key=lambda r: r.id)
    return rows[:limit] if limit is not None else rows


def plan_eval_parts(rows: Sequence[BenchRow], part_rows: int) -> list[dict]:
    """Parts of at most `part_rows` selected rows of one shard, in file/row order.

    Each part: `part`, `file`, `start`/`stop` (the row range `read_part`
    reads), `offsets` (selected rows inside the file) and their `ids`.
    """
    if part_rows < 1:
        raise CommandError(f"part size must be >= 1, got {part_rows}")
    by_file: dict[str, list[BenchRow]] = {}
    for row in rows:
        by_file.setdefault(row.file, []).append(row)
    parts = []
    for file in sorted(by_file):
        chosen = sorted(by_file[file], key=lambda r: r.offset)
        for k in range(0, len(chosen), part_rows):
            chunk = chosen[k:k + part_rows]
            parts.append({"part": len(parts), "file": file, "start": chunk[0].offset,
                          "stop": chunk[-1].offset + 1, "offsets": [r.offset for r in chunk],
                          "ids": [r.id for r in chunk]})
    return parts


class _PartWorker:
    """One per actor: loads the model once, then reads and answers whole parts."""

    def __init__(self, model_dir: str, generator_kwargs: dict):
        self.generator = BenchmarkGenerator(model_dir, **generator_kwargs)

    def __call__(self, batch: dict) -> dict:
        import pyarrow.parquet as pq

        from irgpt.data.io import read_part

        out = {"part": [], "rows": [], "seconds": [], "predictions": []}
        for raw in batch["spec"]:
            spec = json.loads(str(raw))
            t0 = time.perf_counter()
            names = pq.ParquetFile(storage.fetch(spec["file"])).schema_arrow.names
            table = read_part(spec, [c for c in _WORKER_COLUMNS if c in names])
            table = table.take([o - spec["start"] for o in spec["offsets"]])
            items = table.to_pylist()
            got = [str(r["sample_id"]) for r in items]
            if got != spec["ids"]:
                raise RuntimeError(f"part {spec['part']} ({spec['file']}): rows changed since planning")
            preds = self.generator.generate(items, label=f" part {spec['part']:05d}")
            out["part"].append(int(spec["part"]))
            out["rows"].append(len(items))
            out["seconds"].append(time.perf_counter() - t0)
            out["predictions"].append(json.dumps(preds))
        return out


# ------------------------------------------------------------------ run ----
def run_benchmark(cfg, model_dir: str | Path, bench_dir: str | Path | None, out_dir: str | Path | None,
                  split: str = "benchmark", tasks: Sequence[str] | str | None = None,
                  limit: int | None = None) -> dict:
    """Generate answers for the benchmark rows on a Ray Data actor pool and score them.

    `cfg` is the `irgpt.config.Config` (uses `eval.*`, `train.max_length`,
    `train.trust_remote_code`, `deepspeed.precision`, `ray`). `bench_dir`
    None = `eval.bench_dir`, else `data.dir`; `out_dir` None =
    `<model_dir>/eval`. Writes predictions.jsonl, metrics.json, table.md and
    returns the metrics report.
    """
    import ray

    from irgpt.eval.readers import Sample
    from irgpt.eval.score import score_all
    from irgpt.ray_utils import ensure_ray

    ev = cfg.eval
    model_dir = Path(model_dir).resolve()
    if not (model_dir / "config.json").is_file():
        raise CommandError(f"{model_dir}: not a model directory (no config.json)")
    bench_dir = cfg.input_data(bench_dir or ev.bench_dir, "--bench").resolve()
    out_dir = Path(out_dir) if out_dir is not None else model_dir / DEFAULT_OUT
    if ev.batch_size < 1 or ev.max_new_tokens < 1 or ev.concurrency < 1 or ev.num_gpus < 0:
        raise CommandError("eval.batch_size, eval.max_new_tokens and eval.concurrency must be >= 1, "
                           "eval.num_gpus >= 0")
    task_list = parse_tasks(tasks)
    rows = benchmark_rows(bench_dir, split, task_list, limit)
    parts = plan_eval_parts(rows, PART_BATCHES * ev.batch_size)
    concurrency = max(1, min(ev.concurrency, len(parts)))
    log0(f"[eval] {len(rows)} {split} rows of {bench_dir} in {len(parts)} parts; model {model_dir}; "
         f"{concurrency} actor(s), batch {ev.batch_size}, max_new_tokens {ev.max_new_tokens}")

    ensure_ray(cfg.ray)
    generator_kwargs = {
        "batch_size": ev.batch_size, "max_new_tokens": ev.max_new_tokens, "max_length": cfg.train.max_length,
        "trust_remote_code": cfg.train.trust_remote_code, "precision": cfg.deepspeed.precision,
        "use_gpu": ev.num_gpus > 0,
    }
    t0 = time.perf_counter()
    ds = ray.data.from_items([{"part": p["part"], "spec": json.dumps(p)} for p in parts],
                             override_num_blocks=len(parts))
    ds = ds.map_batches(_PartWorker, fn_constructor_kwargs={"model_dir": str(model_dir),
                                                            "generator_kwargs": generator_kwargs},
                        batch_size=1, compute=ray.data.ActorPoolStrategy(size=concurrency), num_cpus=1, num_gpus=ev.num_gpus or None)
    answers: dict[str, str] = {}
    errors: list[dict] = []
    done = 0
    gen_seconds = 0.0
    with Progress(len(rows), "eval", "row") as bar:
        for summary in ds.iter_rows():
            for pred in json.loads(summary["predictions"]):
                answers[pred["id"]] = pred["answer"]
                if pred["error"]:
                    errors.append({"id": pred["id"], "error": pred["error"]})
            done += int(summary["rows"])
            gen_seconds += float(summary["seconds"])
            elapsed = time.perf_counter() - t0
            bar.update(int(summary["rows"]), f"[eval] part {int(summary['part']):05d} done: {summary['rows']} rows, "
                       f"{summary['rows'] / max(summary['seconds'], 1e-9):.2f} rows/s "
                       f"({done}/{len(rows)} rows, {done / max(elapsed, 1e-9):.2f} rows/s overall)")
    seconds = time.perf_counter() - t0
    missing = [r.id for r in rows if r.id not in answers]
    if missing:  # every part reports all its rows; a gap is a bug, never silently scored
        raise RuntimeError(f"{len(missing)} rows came back without a prediction, e.g. {missing[:_EXAMPLES]}")

    samples = [Sample(id=r.id, answer=r.answer, question=r.question, task=r.task) for r in rows]
    report = score_all(samples, answers)
    errors.sort(key=lambda e: e["id"])
    report.update({
        "model": str(model_dir),
        "bench": str(bench_dir),
        "split": split,
        "tasks_requested": task_list,
        "limit": limit,
        "n": len(rows),
        "seconds": seconds,
        "samples_per_s": len(rows) / seconds if seconds > 0 else None,
        "generation": {
            "greedy": True,
            "max_new_tokens": ev.max_new_tokens,
            "batch_size": ev.batch_size,
            "concurrency": concurrency,
            "num_gpus": ev.num_gpus,
            "parts": len(parts),
            "actor_seconds": gen_seconds,
            "errors": len(errors),
            "error_examples": errors[:_EXAMPLES],
        },
    })
    write_outputs(out_dir, rows, answers, report)
    if len(errors) > ev.max_error_rate * len(rows):
        first = errors[0]
        raise CommandError(f"{len(errors)} of {len(rows)} generations failed (more than eval.max_error_rate="
                           f"{ev.max_error_rate}), e.g. {first['id']}: {first['error']}; the results in {out_dir} "
                           "score those rows as unparseable and are not a valid evaluation")
    log0(f"[eval] {len(rows)} rows in {seconds:.1f}s ({len(rows) / max(seconds, 1e-9):.2f} rows/s); "
         f"psum {md_cell(report['psum'])}, nsum {md_cell(report['nsum'])} "
         f"(median {md_cell(report.get('nsum_median'))}); {len(errors)} generation errors; wrote {out_dir}")
    return report
