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
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from irgpt.errors import CommandError
from irgpt.eval.tasks import LABELS, NSUM_TASKS, PSUM_TASKS, TASKS, normalise_task
from irgpt.models.tokenizer import ANSWER_TAGS  # kept when decoding, even if marked special
from irgpt.progress import Progress
from irgpt.ray_utils import log0

PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
TABLE_FILE = "table.md"
DEFAULT_OUT = "eval"
"""Default output folder, inside the model directory."""
PART_BATCHES = 4
"""Generation batches per part (the unit an actor reads and reports)."""
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")
"""Chat-template turn ends that also stop generation when the tokenizer has them as special tokens."""
_META_COLUMNS = ["sample_id", "task", "split", "conversations"]
_WORKER_COLUMNS = ["sample_id", "image", "image_path", "task", "conversations"]
_ERROR_CHARS = 300
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
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
            task = normalise_task(name)
        except ValueError as exc:
            raise CommandError(f"--tasks: {exc}") from None
        if task not in out:
            out.append(task)
    return out


def select_rows(bench_dir: str | Path, split: str = "benchmark", tasks: Sequence[str] | None = None,
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
    wanted = set(TASKS if tasks is None else tasks)
    unknown = wanted - set(TASKS)
    if unknown:
        raise CommandError(f"unknown benchmark task(s) {sorted(unknown)}; expected {', '.join(TASKS)}")
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


# ----------------------------------------------------------- generation ----
def decode_answer(tokenizer, token_ids: Iterable[int], stop_ids: Iterable[int], drop_ids: Iterable[int]) -> str:
    """Generated ids -> answer text: cut at the first stop id, drop `drop_ids`, keep the rest.

    Decodes with `skip_special_tokens=False`, so special tokens the caller
    wants kept (the answer tags) survive; `drop_ids` names those to remove
    (pad, bos, eos, image, chat markers).
    """
    stop, drop = set(stop_ids), set(drop_ids)
    kept = []
    for t in token_ids:
        t = int(t)
        if t in stop:
            break
        if t not in drop:
            kept.append(t)
    if not kept:
        return ""
    return tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False).strip()


def _token_id(tokenizer, token: str) -> int | None:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or (tid == tokenizer.unk_token_id and token != tokenizer.unk_token):
        return None
    return int(tid)


def _ids(value) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return [int(v) for v in value if v is not None]
    return [int(value)]


def stop_and_drop_ids(tokenizer, generation_eos=None, pad_id: int | None = None) -> tuple[list[int], list[int]]:
    """(ids that end an answer, ids removed from it) for `decode_answer`.

    Stop: the model's generation-config eos (an id or a list), the
    tokenizer's eos, and the chat turn ends of `END_OF_TURN_TOKENS` the
    tokenizer has as special tokens. Drop: every special token (pad, bos,
    eos, image, chat markers; the named ones and every added token marked
    special) and `pad_id`, except the answer tags
    (`ANSWER_TAGS`), which stay even where the tokenizer marks them special.
    """
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    added_special = {int(i): getattr(tok, "content", str(tok))
                     for i, tok in added.items() if getattr(tok, "special", False)}
    special = set(tokenizer.all_special_tokens) | set(added_special.values())
    stops = _ids(generation_eos) + _ids(tokenizer.eos_token_id)
    for token in END_OF_TURN_TOKENS:
        tid = _token_id(tokenizer, token) if token in special else None
        if tid is not None:
            stops.append(tid)
    keep = {t for t in (_token_id(tokenizer, tag) for tag in ANSWER_TAGS) if t is not None}
    drop = set(_ids(tokenizer.all_special_ids)) | set(_ids(pad_id)) | set(added_special)
    return sorted(set(stops)), sorted(drop - keep)


def _error(exc: BaseException) -> str:
    """A short, reproducible message (object addresses such as PIL's `<BytesIO at 0x...>` removed)."""
    return _ADDRESS.sub("", f"{type(exc).__name__}: {exc}")[:_ERROR_CHARS]


class BenchmarkGenerator:
    """A loaded VLM that answers benchmark prompts greedily, in left-padded batches.

    Built once per actor; usable in-process too (tests, Tune trials).
    `generate(items)` takes dicts with `sample_id`, `task`, `conversations`
    and `image` (bytes) or `image_path`, and returns one
    `{"id", "answer", "error"}` per item, in input order.
    """

    def __init__(self, model_dir: str, *, batch_size: int = 16, max_new_tokens: int = 48,
                 max_length: int = 256, trust_remote_code: bool = False, precision: str = "auto",
                 use_gpu: bool = False, log_prefix: str = "[eval]"):
        import torch

        from irgpt.models.vlm import load_vlm
        from irgpt.train.collator import VLMCollator

        if batch_size < 1 or max_new_tokens < 1:
            raise CommandError("eval.batch_size and eval.max_new_tokens must be >= 1")
        if use_gpu and not torch.cuda.is_available():
            raise CommandError("eval.num_gpus > 0 but this worker sees no CUDA device")
        self.device = torch.device("cuda" if use_gpu else "cpu")
        dtype = None
        if precision == "bf16" or (precision == "auto" and use_gpu):
            dtype = torch.bfloat16
        loaded = load_vlm(model_dir, trust_remote_code=trust_remote_code, dtype=dtype)
        self.model = loaded.model.to(self.device).eval()
        self.tokenizer = loaded.tokenizer
        self.spec = loaded.spec
        self.dtype = next(self.model.parameters()).dtype
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.log_prefix = log_prefix
        self.collator = VLMCollator(self.tokenizer, self.spec, max(max_length, self.spec.num_image_tokens + 2),
                                    use_weights=False)
        self.pad_id = self.collator.pad_token_id
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        self.stop_ids, self.drop_ids = stop_and_drop_ids(self.tokenizer, gen_eos, self.pad_id)

    # ------------------------------------------------------------ inputs --
    def _image(self, item: dict):
        data = item.get("image")
        if data is None:
            path = item.get("image_path")
            if not path:
                raise CommandError("no image bytes and no image_path")
            data = Path(path).read_bytes()
        return self.spec.image_tensor(data)

    def _prepare(self, item: dict) -> tuple[list[int], object]:
        conversations = [dict(t) for t in (item.get("conversations") or [])]
        enc = self.collator.encode({"sample_id": item.get("sample_id"), "conversations": conversations},
                                   with_answers=False)
        return enc.input_ids, self._image(item)

    def _batch(self, prepared: list[tuple[list[int], object]]) -> tuple[dict, int]:
        import torch

        from irgpt.train.collator import model_inputs

        length = max(len(ids) for ids, _ in prepared)
        input_ids = torch.full((len(prepared), length), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prepared), length), dtype=torch.long)
        for i, (ids, _) in enumerate(prepared):  # LEFT padding: every prompt ends at `length`
            input_ids[i, length - len(ids):] = torch.tensor(ids, dtype=torch.long)
            attention[i, length - len(ids):] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention,
                 "pixel_values": torch.stack([img for _, img in prepared])}
        inputs = model_inputs(batch, dtype=self.dtype)
        inputs.pop("image_flags", None)  # a forward() input; generate() does not take it
        return {k: v.to(self.device) for k, v in inputs.items()}, length

    def _generate(self, prepared: list[tuple[list[int], object]]) -> list[str]:
        import torch

        inputs, length = self._batch(prepared)
        with torch.inference_mode():
            out = self.model.generate(**inputs, do_sample=False, num_beams=1,
                                      max_new_tokens=self.max_new_tokens,
                                      pad_token_id=self.pad_id, eos_token_id=self.stop_ids or None)
        out = out.sequences if hasattr(out, "sequences") else out
        out = out.cpu()
        prompt = inputs["input_ids"].cpu()
        # LLaVA-style generate returns prompt + new tokens; embedding-based ones
        # (remote-code InternVL) return the new tokens only.
        with_prompt = out.shape[1] >= length and torch.equal(out[:, :length], prompt)
        new = out[:, length:] if with_prompt else out
        return [decode_answer(self.tokenizer, row.tolist(), self.stop_ids, self.drop_ids) for row in new]

    # ------------------------------------------------------------ public --
    def generate(self, items: Sequence[dict], label: str = "") -> list[dict]:
        """Answers for `items` (input order); failures give `answer: ""` and an `error`."""
        results: list[dict | None] = [None] * len(items)
        ready: list[tuple[int, list[int], object]] = []
        for i, item in enumerate(items):
            sid = str(item.get("sample_id"))
            try:
                ids, image = self._prepare(item)
            except Exception as exc:  # bad image bytes, bad conversation: keep the row, unanswered
                results[i] = {"id": sid, "answer": "", "error": _error(exc)}
                continue
            ready.append((i, ids, image))
        order = {t: k for k, t in enumerate(TASKS)}
        # Similar prompts together: less padding, and answers of one format end together.
        ready.sort(key=lambda r: (order.get(items[r[0]].get("task"), len(order)), len(r[1]),
                                  str(items[r[0]].get("sample_id"))))
        groups = [ready[k:k + self.batch_size] for k in range(0, len(ready), self.batch_size)]
        for g, group in enumerate(groups):
            t0 = time.perf_counter()
            answers = self._generate_group(group)
            for (i, _, _), (answer, error) in zip(group, answers):
                results[i] = {"id": str(items[i].get("sample_id")), "answer": answer, "error": error}
            dt = time.perf_counter() - t0
            log0(f"{self.log_prefix}{label} batch {g + 1}/{len(groups)}: {len(group)} rows in {dt:.1f}s "
                 f"({len(group) / max(dt, 1e-9):.2f} rows/s)")
        return results  # type: ignore[return-value]

    def _generate_group(self, group) -> list[tuple[str, str]]:
        try:
            return [(a, "") for a in self._generate([(ids, img) for _, ids, img in group])]
        except Exception as exc:
            if len(group) == 1:
                return [("", _error(exc))]
            log0(f"{self.log_prefix} batch of {len(group)} failed ({_error(exc)}); retrying row by row")
            return [self._generate_group([one])[0] for one in group]


class _PartWorker:
    """One per actor: loads the model once, then reads and answers whole parts."""

    def __init__(self, model_dir: str, generator_kwargs: dict):
        self.generator = BenchmarkGenerator(model_dir, **generator_kwargs)

    def __call__(self, batch: dict) -> dict:
        import pyarrow.parquet as pq

        from irgpt.scoring.pipeline import read_part

        out = {"part": [], "rows": [], "seconds": [], "predictions": []}
        for raw in batch["spec"]:
            spec = json.loads(str(raw))
            t0 = time.perf_counter()
            names = pq.ParquetFile(spec["file"]).schema_arrow.names
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


# ---------------------------------------------------------------- output ----
def _md_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown_table(report: dict) -> str:
    """The paper's columns (Scene ... psum, Loc. ... nsum) as a Markdown table: score, n, parsed %."""
    tasks = report["tasks"]
    columns = [*PSUM_TASKS, "psum", *NSUM_TASKS, "nsum"]
    lines = ["| | " + " | ".join(LABELS.get(c, c) for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name, key in (("score", "score"), ("n", "n"), ("parsed %", "parse_rate")):
        cells = []
        for c in columns:
            if c in ("psum", "nsum"):
                cells.append(_md_cell(report[c]) if key == "score" else "")
            elif c not in tasks or tasks[c][key] is None:
                cells.append("-")
            elif key == "n":
                cells.append(str(tasks[c]["n"]))
            else:
                cells.append(_md_cell(tasks[c][key] * (100.0 if key == "parse_rate" else 1.0)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _table_md(report: dict) -> str:
    from irgpt.eval.score import format_table

    notes = format_table(report).split("\n\n", 1)
    gen = report["generation"]
    head = [
        f"# Benchmark: {report['model']}",
        "",
        f"Data `{report['bench']}`, split `{report['split']}`, {report['n']} rows; greedy, "
        f"max_new_tokens={gen['max_new_tokens']}, batch_size={gen['batch_size']}; "
        f"{report['seconds']:.1f} s ({report['samples_per_s']:.2f} rows/s); "
        f"{gen['errors']} generation errors (empty answers, scored as unparseable).",
        "",
        markdown_table(report),
        "",
        "psum = Scene + Rec. + Gro. + Rel. + ReID + Sec. (higher is better); "
        "nsum = Loc. + A.C. + P.C. (lower is better).",
    ]
    if len(notes) > 1:
        head += [""] + [f"- {line}" for line in notes[1].splitlines() if line.strip()]
    return "\n".join(head) + "\n"


def _write_outputs(out_dir: Path, rows: Sequence[BenchRow], answers: dict[str, str], report: dict) -> None:
    from irgpt.data.io import atomic_write_bytes
    from irgpt.eval.cli import write_json

    lines = [json.dumps({"id": r.id, "task": r.task, "answer": answers.get(r.id, ""), "label": r.answer,
                         "question": r.question}, ensure_ascii=False) for r in rows]
    try:
        atomic_write_bytes(out_dir / PREDICTIONS_FILE, ("\n".join(lines) + "\n").encode("utf-8"))
        write_json(out_dir / METRICS_FILE, report)
        atomic_write_bytes(out_dir / TABLE_FILE, _table_md(report).encode("utf-8"))
    except OSError as exc:
        raise CommandError(f"{out_dir}: cannot write the results ({exc.strerror}); choose another --out") from None


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
    bench_dir = Path(bench_dir or ev.bench_dir or cfg.data_dir).resolve()
    out_dir = Path(out_dir) if out_dir is not None else model_dir / DEFAULT_OUT
    if ev.batch_size < 1 or ev.max_new_tokens < 1 or ev.concurrency < 1 or ev.num_gpus < 0:
        raise CommandError("eval.batch_size, eval.max_new_tokens and eval.concurrency must be >= 1, "
                           "eval.num_gpus >= 0")
    task_list = parse_tasks(tasks)
    rows = select_rows(bench_dir, split, task_list, limit)
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
    _write_outputs(out_dir, rows, answers, report)
    if len(errors) > ev.max_error_rate * len(rows):
        first = errors[0]
        raise CommandError(f"{len(errors)} of {len(rows)} generations failed (more than eval.max_error_rate="
                           f"{ev.max_error_rate}), e.g. {first['id']}: {first['error']}; the results in {out_dir} "
                           "score those rows as unparseable and are not a valid evaluation")
    log0(f"[eval] {len(rows)} rows in {seconds:.1f}s ({len(rows) / max(seconds, 1e-9):.2f} rows/s); "
         f"psum {_md_cell(report['psum'])}, nsum {_md_cell(report['nsum'])} "
         f"(median {_md_cell(report.get('nsum_median'))}); {len(errors)} generation errors; wrote {out_dir}")
    return report
