"""`irgpt pipeline --dry-run`: check every stage of a config before any work.

Nothing is trained, scored or written, and no weights are read: model
directories are checked from their config, tokenizer and tensor headers.
Each check is one row (stage, what, status, detail); status `error` makes the
command exit 2 with every problem listed, `warning` is printed and allowed
(an input a stage before will make, a random-init model).

Per stage:
- run: the run directory can be created (its nearest existing parent is writable);
- synth / data: the synthetic data's size, or the dataset `data.dir` names (its manifest);
- fe_train, score_l1: the extractor (`tiny`, an InfMAE file, an fe-train
  directory, a ViTMAE directory) and its kind, its architecture read from the
  checkpoint's tensor shapes; `visible_data` when set;
- clip_warmup, score_l2: the CLIP model (open_clip architecture and
  checkpoint file, or a Hugging Face CLIP directory and its tokenizer);
- train_stage1, train_stage2: the VLM directory (family, image tokens in the
  tokenizer, chat template, module layout) and `irgpt train --dry-run`
  (batch arithmetic, DeepSpeed config, memory per GPU, the LoRA regex);
- eval: the benchmark dataset.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from irgpt.config import Config
from irgpt.errors import CommandError


class Checks:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, stage: str, what: str, status: str, detail: str) -> None:
        self.rows.append({"stage": stage, "what": what, "status": status, "detail": detail})

    def run(self, stage: str, what: str, fn) -> None:
        """`fn()` -> detail (ok) or (status, detail); a CommandError it raises is an error."""
        try:
            out = fn()
        except CommandError as exc:
            self.add(stage, what, "error", str(exc))
            return
        status, detail = out if isinstance(out, tuple) else ("ok", out)
        self.add(stage, what, status, detail)


def _run_root(cfg: Config) -> str:
    """The run directory: a writable local place, or a reachable bucket."""
    from irgpt import storage

    if not storage.is_uri(cfg.run.root):
        return _writable_parent(cfg.run_dir)
    run = storage.join(cfg.run.root, cfg.run.name)
    fs, path = storage.resolve(run)
    bucket = path.split("/", 1)[0]
    try:
        found = fs.get_file_info(bucket).type
        resuming = storage.is_file(storage.join(run, "run.json"))
    except OSError as exc:
        raise CommandError(f"run.root {cfg.run.root}: cannot reach the store: {exc}") from None
    if found.name == "NotFound":
        raise CommandError(f"run.root {cfg.run.root}: no bucket {bucket!r} (create it first)")
    return f"{run} (object storage; {'run.json there: the run resumes' if resuming else 'a new run'})"


def _writable_parent(path: Path) -> str:
    probe = path.resolve()
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise CommandError(f"{path}: cannot be created ({probe} is not writable)")
    return f"{path} ({'exists' if path.exists() else f'will be created under {probe}'})"


def _dataset(path: str | Path) -> str:
    from irgpt.data import contracts

    m = contracts.read(contracts.DatasetManifest, path)
    return f"{path}: {m.raw.get('num_rows')} rows"


def _extractor(cfg: Config) -> str:
    from irgpt.models.mae import describe_extractor

    l1 = cfg.scoring.lesson1
    found = describe_extractor(l1.extractor, l1.extractor_kind)
    detail = ", ".join(f"{k} {v}" for k, v in found.items())
    if l1.extractor == "tiny":
        return "warning", f"{detail}: random init (fe_train trains it on this data only)"
    return detail


def _clip(cfg: Config) -> str:
    from irgpt import storage
    from irgpt.models.clip import check_clip_source
    from irgpt.models.hf_clip import describe_hf_clip, is_hf_clip_dir

    l2 = cfg.scoring.lesson2
    # In object storage: a CLIP directory's configs only; a checkpoint file's size only.
    model = str(storage.fetch(l2.model, without=storage.WEIGHT_SUFFIXES)) if storage.is_uri(l2.model) else l2.model
    if storage.is_uri(l2.pretrained):
        if not storage.is_file(l2.pretrained):
            raise CommandError(f"scoring.lesson2.pretrained: checkpoint file not found: {l2.pretrained}")
        check_clip_source(model, None)
        return f"open_clip {l2.model}, weights {l2.pretrained} ({storage.size(l2.pretrained) / 2**20:.0f} MiB)"
    path = check_clip_source(model, l2.pretrained)
    if is_hf_clip_dir(model):
        return describe_hf_clip(model, sorted(storage.list_files(l2.model)) if storage.is_uri(l2.model) else None)
    if path is None:
        return "warning", f"open_clip {l2.model} with scoring.lesson2.pretrained null: random init"
    return f"open_clip {l2.model}, weights {path} ({Path(path).stat().st_size / 2**20:.0f} MiB)"


def _vlm(cfg: Config) -> str:
    from irgpt.models.vlm import check_vlm_dir

    if cfg.train.model == "tiny":
        return "warning", "tiny: a random-init LLaVA built from configs (its LLM text warm-started)"
    from irgpt import storage

    # In object storage: its configs, tokenizer and templates only, not the weights.
    found = check_vlm_dir(storage.fetch(cfg.train.model, without=storage.WEIGHT_SUFFIXES),
                          cfg.train.trust_remote_code, cfg.train.max_length)
    return (f"{found['architecture']} (family {found['family']}): {found['num_image_tokens']} image tokens at "
            f"{found['image_size']} px as {' '.join(found['image_tokens'])}; prompt {found['prompt_format']}"
            f"{' (list content)' if found['list_content'] else ''}, eos {found['eos_token']}")


def _train(cfg: Config, checks: Checks) -> None:
    """Batch arithmetic of both stages, then (when it and the model hold) `irgpt train --dry-run`."""
    from irgpt.train.dry_run import dry_run
    from irgpt.train.ds_config import batch_arithmetic, data_parallel_world_size

    world = data_parallel_world_size(cfg.train)
    ok = not any(r["status"] == "error" for r in checks.rows if r["what"] == "train.model")
    for key, st in (("stage1", cfg.train.stage1), ("stage2", cfg.train.stage2)):
        try:
            batch_arithmetic(st.global_batch_size, st.micro_batch_size, world)
        except CommandError as exc:
            checks.add(f"train_{key}", "batch", "error", f"train.{key}: {exc}")
            ok = False
    if not ok:
        return
    try:
        result = dry_run(cfg, file=False)
    except CommandError as exc:
        for line in str(exc).splitlines()[1:] or [str(exc)]:
            checks.add("train", "dry run", "error", line.strip().lstrip("- "))
        return
    for key, st in result["stages"].items():
        b, mem = st["batch"], st["memory"]
        checks.add(f"train_{key}", "batch and memory", "ok",
                   f"global {b['global_batch_size']} = micro {b['micro_batch_size']} x accumulation "
                   f"{b['grad_accum_steps']} x {b['world_size']} rank(s); {st['trainable_params']:,} of "
                   f"{st['params']:,} parameters train; {mem['total_gib']:.2f} GiB per GPU "
                   f"(weights + grads + optimizer, ZeRO-{result['world']['zero_stage']}, {result['world']['precision']})")
    for warning in result["warnings"]:
        checks.add("train", "dry run", "warning", warning)


def check_pipeline(cfg: Config) -> dict:
    """Every check of the module doc for `cfg`; `ok` is False when any is an error."""
    from irgpt.pipeline import wanted_stages

    checks = Checks()
    try:
        wanted = wanted_stages(cfg)
    except CommandError as exc:
        checks.add("run", "run.stages", "error", str(exc))
        wanted = []
    checks.run("run", "run directory", lambda: _run_root(cfg))
    if "synth" in wanted:
        s = cfg.data.synth
        checks.add("synth", "data", "ok", f"{s.num_samples} synthetic scenes (seed {s.seed}) into {cfg.data_location}")
    else:
        checks.run("data", "data.dir", lambda: _dataset(cfg.data_location))
    if {"fe_train", "score_l1"} & set(wanted):
        checks.run("score_l1", "scoring.lesson1.extractor", lambda: _extractor(cfg))
        if cfg.scoring.lesson1.visible_data:
            checks.run("score_l1", "scoring.lesson1.visible_data", lambda: _dataset(cfg.scoring.lesson1.visible_data))
    if {"clip_warmup", "score_l2"} & set(wanted):
        checks.run("score_l2", "scoring.lesson2.model", lambda: _clip(cfg))
    if {"train_stage1", "train_stage2"} & set(wanted):
        checks.run("train", "train.model", lambda: _vlm(cfg))
        _train(cfg, checks)
    if "eval" in wanted and cfg.eval.bench_dir:
        checks.run("eval", "eval.bench_dir", lambda: _dataset(cfg.eval.bench_dir))
    errors = [r for r in checks.rows if r["status"] == "error"]
    return {"ok": not errors, "stages": wanted, "checks": checks.rows}


def print_checks(result: dict, file=None) -> None:
    file = file or sys.stdout
    width = max((len(r["stage"]) for r in result["checks"]), default=5)
    for r in result["checks"]:
        print(f"{r['stage']:<{width}}  {r['status']:<7}  {r['what']}: {r['detail']}", file=file)
    n_err = sum(r["status"] == "error" for r in result["checks"])
    n_warn = sum(r["status"] == "warning" for r in result["checks"])
    print(f"dry run: {len(result['checks'])} checks, {n_err} error(s), {n_warn} warning(s); nothing was run",
          file=file)
