"""The driver side of training: `irgpt train --stage 1|2|all`.

- The base model is made once on the driver (`RUN/train/base`): for `tiny`, a
  tokenizer trained on the data's train conversations plus a seeded tiny
  LLaVA whose LLM is text warm-started (`train.tiny_lm`); otherwise
  `train.model` is a local checkpoint. Every rank loads the same directory,
  so all ranks start from identical weights.
- A budget (`max_steps`, `data_fraction`) becomes the fraction of every tier
  the stage keeps (irgpt.curriculum.budget); the schedule is never cut.
- Each stage is one run of the training skeleton (`irgpt.train.skeleton.fit`:
  a `TorchTrainer` with `ScalingConfig(num_workers, use_gpu)`,
  `RunConfig(storage_path, name, CheckpointConfig(num_to_keep),
  FailureConfig(max_failures))`) driving `irgpt.train.vlm_job.VlmJob`.
- Stage 2 starts from stage 1's final model. `RUN/train/summary.json` holds,
  per stage, `initial_val_loss`, `final_val_loss`, `unigram_val_loss`, stage
  1's retrieval R@1, `steps`, `samples_per_s`, the budget and the rows seen
  per tier, the checkpoint path and the model path.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from irgpt import storage
from irgpt.config import Config, config_hash
from irgpt.data import contracts
from irgpt.data.io import atomic_write_json
from irgpt.errors import CommandError
from irgpt.ray_utils import ensure_ray, log0
from irgpt.train.skeleton import fit, latest_checkpoint


def stage_fraction(sizes: list[int], stage_cfg, mode: str, rows_per_opt_step: int, what: str) -> float:
    """The stage's budget as the fraction of every tier it keeps (irgpt.curriculum.budget)."""
    from irgpt.curriculum.budget import fraction_for_steps

    fraction = stage_cfg.data_fraction
    if stage_cfg.max_steps:
        fraction = min(fraction, fraction_for_steps(sizes, stage_cfg.max_steps, stage_cfg.epochs,
                                                    rows_per_opt_step, mode, what))
    return fraction


BASE_KEY_FILE = "irgpt_base.json"


def prepare_base_model(cfg: Config, data_dir: Path, out: Path) -> Path | str:
    """The stage-1 starting point every rank loads (see module doc). A `train.model` in
    object storage is checked here from this node's copy and returned as its URI: every
    worker fetches it into its own node's cache (`storage.fetch` in `load_vlm`)."""
    if cfg.train.model != "tiny":
        from irgpt.models.vlm import check_vlm_dir

        path = storage.fetch(cfg.train.model)
        if not path.is_dir():
            raise CommandError(f"train.model: model directory not found: {path}")
        try:  # an unsupported family or tokenizer fails here, before any worker starts
            found = check_vlm_dir(path, cfg.train.trust_remote_code, cfg.train.max_length)
        except CommandError as exc:
            raise CommandError(f"train.model: {exc}") from exc
        log0(f"[train] {path}: {found['architecture']} (family {found['family']}), {found['num_image_tokens']} "
             f"image tokens at {found['image_size']} px, prompt format {found['prompt_format']}")
        return cfg.train.model if storage.is_uri(cfg.train.model) else path
    # What the tiny base depends on; a base built from other settings is rebuilt, never reused.
    dataset = contracts.read(contracts.DatasetManifest, data_dir)
    key = config_hash({"seed": cfg.train.seed, "tiny_lm": cfg.to_dict()["train"]["tiny_lm"],
                       "max_length": cfg.train.max_length, "data": dataset.raw.get("config")})
    if (out / "config.json").is_file() and (out / BASE_KEY_FILE).is_file() \
            and json.loads((out / BASE_KEY_FILE).read_text()).get("key") == key:
        return out
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    from irgpt.models.tokenizer import corpus_texts, train_tokenizer
    from irgpt.models.vlm import TINY_IMAGE_SIZE, build_tiny_vlm, save_vlm
    from irgpt.train.data import read_stage_rows

    rows = [read_stage_rows(data_dir, stage, "train", ["sample_id", "conversations"]) for stage in (1, 2)]
    conversations = [c for t in rows for c in t.column("conversations").to_pylist()]
    if not conversations:
        raise CommandError(f"{data_dir}: no training conversations to build the tokenizer from")
    tokenizer = train_tokenizer(corpus_texts(conversations))
    image_size = dataset.image_size
    if image_size is None:  # imported data: images of many sizes, resized by the model's processor
        image_size = TINY_IMAGE_SIZE
        log0(f"[train] {data_dir} has no single image size (imported data): the tiny VLM takes "
             f"{image_size} px images")
    model, spec = build_tiny_vlm(tokenizer, image_size=image_size, seed=cfg.train.seed)
    log0(f"[train] tiny VLM built: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
         f"vocabulary {len(tokenizer)}, image {image_size}px")
    lm = cfg.train.tiny_lm
    if lm.steps:
        from irgpt.train.lm_warmstart import warm_start

        done = warm_start(model, tokenizer, conversations, steps=lm.steps, lr=lm.lr, batch_size=lm.batch_size,
                          seed=cfg.train.seed, max_length=cfg.train.max_length)
        log0(f"[train] tiny LLM text warm-start (train.tiny_lm): {done['steps']} steps on {done['sequences']} "
             f"training conversations, images removed; LM loss {done['first_loss']:.3f} -> "
             f"{done['last_loss']:.3f} in {done['seconds']} s")
    save_vlm(model, tokenizer, out, spec)
    atomic_write_json(out / BASE_KEY_FILE, {"key": key})
    return out


TIERING_KEYS = ("lam", "use_l1", "use_l2", "anti_l1", "anti_l2", "weights")
"""Curriculum keys (besides `m`) the tiers are made with; training refuses to differ from them."""


def iterator_kwargs(cfg: Config, stage: int, data_dir: Path, tiers_dir: Path | None) -> dict:
    """The spec `irgpt.train.data.make_iterator` builds the stage's TierIterator from."""
    stage_cfg = cfg.train.stage1 if stage == 1 else cfg.train.stage2
    common = {"curriculum": cfg.to_dict()["curriculum"], "epochs": stage_cfg.epochs}
    if stage == 1:
        if tiers_dir is None:
            raise CommandError("stage 1 reads the curriculum tiers: pass --tiers DIR (from `irgpt tier`)")
        tiers = contracts.read(contracts.TiersManifest, tiers_dir)
        if tiers.num_tiers != cfg.curriculum.m:
            raise CommandError(f"curriculum.m={cfg.curriculum.m} but {tiers_dir} holds {tiers.num_tiers} tiers; "
                               f"re-tier with `irgpt tier --set curriculum.m={cfg.curriculum.m}` or train with "
                               f"--set curriculum.m={tiers.num_tiers}")
        wanted = cfg.to_dict()["curriculum"]
        differ = [k for k in TIERING_KEYS if k in tiers.curriculum and tiers.curriculum[k] != wanted[k]]
        if differ:
            now = " ".join(f"curriculum.{k}={wanted[k]}" for k in differ)
            made = " ".join(f"curriculum.{k}={tiers.curriculum[k]}" for k in differ)
            raise CommandError(f"this config has {now} but {tiers_dir} was tiered with {made}; re-tier with "
                               f"`irgpt tier --set ...` or train with --set {made.replace(' ', ' --set ')}")
        return {"source": str(tiers_dir), "kind": "tiers", **common}
    return {"source": str(data_dir), "kind": "stage2", **common}


TRAINING_SECTIONS = ("train", "deepspeed", "curriculum")
"""The config sections a training run's state depends on (the pipeline's train stage key too)."""


def training_hash(cfg: Config) -> str:
    """8 hex digits naming the config a training run's checkpoints belong to."""
    whole = cfg.to_dict()
    return config_hash({s: whole[s] for s in TRAINING_SECTIONS})[:8]


def stage_inputs(data_dir: Path, tiers_dir: Path | None, init_model: Path) -> str:
    """What a stage reads, as a string for its run name: the data and tier manifests'
    hashes and the starting model's files (names, sizes, modification times)."""
    from irgpt.data.io import manifest_hash

    remote = str(init_model) if storage.is_uri(str(init_model)) else storage.remote_of(init_model)
    if remote:  # in object storage (shared before the workers start): its objects' ETags, on any machine
        init = storage.version_key(remote, times=False)
    else:
        init = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(Path(init_model).iterdir())
                if p.is_file()]
    return json.dumps([manifest_hash(data_dir), manifest_hash(tiers_dir) if tiers_dir else None, init])


def ray_run_name(cfg: Config, run_dir: Path, stage: int, inputs: str = "") -> str:
    """The Ray Train run's name: the run directory (its name and a hash of its absolute
    path), the stage, a hash of its inputs (`stage_inputs`) and `training_hash`, so runs
    sharing a `train.storage_path` never see each other's checkpoints, and a rerun on
    other data or another starting model never restores the earlier run's."""
    where = hashlib.sha256(storage.readable(run_dir.resolve()).encode()).hexdigest()[:6]  # the same on any machine
    reads = hashlib.sha256(inputs.encode()).hexdigest()[:6]
    return f"{run_dir.name}-{where}-stage{stage}-{reads}-{training_hash(cfg)}"


def resume_checkpoint(cfg: Config, where: str, run_dir: Path, stage: int, inputs: str = "") -> Path | str | None:
    """The checkpoint `--resume` continues from: this run's own, under this config.

    A checkpoint of the same run directory written under another config is refused,
    naming both config hashes (a resume must not mix two configs' state)."""
    name = ray_run_name(cfg, run_dir, stage, inputs)
    mine = latest_checkpoint(storage.join(where, name))
    if mine is not None:
        return mine
    prefix = name.rsplit("-", 1)[0] + "-"
    runs = ({rel.split("/", 1)[0] for rel in storage.list_files(where)} if storage.is_uri(where)
            else {d.name for d in Path(where).glob("*") if d.is_dir()})
    others = sorted(r.rsplit("-", 1)[-1] for r in runs
                    if r.startswith(prefix) and latest_checkpoint(storage.join(where, r)) is not None)
    if others:
        raise CommandError(f"--resume {run_dir}: stage {stage} was checkpointed under config {', '.join(others)}, "
                           f"this config is {training_hash(cfg)}: pass the --config and --set the run started "
                           "with, or start a new run")
    return None


def run_stage(cfg: Config, stage: int, data_dir: Path, tiers_dir: Path | None, run_dir: Path,
              init_model: Path, *, fail_at_step: int | None = None, resume: bool = False,
              callbacks: list | None = None) -> dict:
    """One stage on Ray Train; returns its summary entry.

    `callbacks` go to the TorchTrainer's RunConfig (Tune passes
    `TuneReportCallback()` so each report reaches the trial: Train V2 pattern)."""
    from irgpt.curriculum.schedules import Plan
    from irgpt.train.data import make_iterator
    from irgpt.train.ds_config import batch_arithmetic

    stage_cfg = cfg.train.stage1 if stage == 1 else cfg.train.stage2
    world = cfg.train.num_workers
    arith = batch_arithmetic(stage_cfg.global_batch_size, stage_cfg.micro_batch_size, world)
    it_kwargs = iterator_kwargs(cfg, stage, data_dir, tiers_dir)
    full = make_iterator(it_kwargs, 0, world, arith.micro_batch_size, arith.grad_accum_steps).plan
    it_kwargs["fraction"] = stage_fraction(full.full_sizes, stage_cfg, cfg.curriculum.mode,
                                           arith.global_batch_size, f"train.stage{stage}.max_steps")
    # The workers' plan: the same sizes and curriculum under the budget (no second read of the data).
    plan = Plan(full.full_sizes, full.cfg, world, arith.micro_batch_size, arith.grad_accum_steps,
                it_kwargs["fraction"])
    # Every unit (tier) is padded to a multiple of world x micro x accumulation,
    # so an epoch is a whole number of optimizer steps on every rank.
    total = plan.steps_per_epoch // arith.grad_accum_steps * stage_cfg.epochs
    if total < 1:
        raise CommandError(f"stage {stage}: no training rows (check the {'tiers' if stage == 1 else 'data'} input)")
    # Fixed (non-paced) plans repeat their units every epoch: one count stands for all.
    rows_per_tier = ([plan.rows_per_tier(e) for e in range(stage_cfg.epochs)] if plan.paced
                     else [plan.rows_per_tier(0)] * stage_cfg.epochs)
    log0(f"[train] stage {stage}: rows per tier per epoch {rows_per_tier[0]} of {plan.full_sizes}"
         + (f" (budget: every tier cut to fraction {plan.fraction:.4g})" if plan.fraction < 1 else "")
         + f", {stage_cfg.epochs} epoch(s)")
    out_dir = run_dir / f"stage{stage}"
    where = cfg.train.storage_path or str(run_dir / "ray")  # Ray Train's storage_path
    where = storage.readable(where if storage.is_uri(where) else Path(where).resolve())
    storage.share(init_model)  # workers on nodes without this work mirror read it from the store
    inputs = stage_inputs(data_dir, tiers_dir if stage == 1 else None, init_model)
    run_name = ray_run_name(cfg, run_dir, stage, inputs)
    log0(f"[train] stage {stage}: {world} workers x micro {arith.micro_batch_size} x accumulation "
         f"{arith.grad_accum_steps} = global {arith.global_batch_size}; {total} optimizer steps; "
         f"ZeRO-{cfg.deepspeed.zero_stage}")
    loop_config = {
        "cfg": cfg.to_dict(),
        "stage": stage,
        "init_model": str(init_model),
        "iterator": it_kwargs,
        "grad_accum": arith.grad_accum_steps,
        "total_steps": total,
        "out_dir": str(out_dir),
        "val": {"data_dir": str(data_dir), "limit": cfg.train.val_limit, "every": cfg.train.val_every,
                "retrieval": cfg.train.val_retrieval if stage == 1 else 0},
        "resume_from": str(resume_checkpoint(cfg, where, run_dir, stage, inputs) or "") if resume else "",
        "fail_at_step": fail_at_step,
        "fail_marker": str(out_dir / "fail_marker") if fail_at_step else None,
    }
    resources = {"CPU": 1, "GPU": cfg.train.gpus_per_worker} if cfg.train.use_gpu else {"CPU": 1}
    t0 = time.perf_counter()
    result = fit({"job": "irgpt.train.vlm_job:VlmJob", **loop_config}, name=run_name, storage=where,
                 num_workers=world, use_gpu=cfg.train.use_gpu, resources_per_worker=resources,
                 num_to_keep=cfg.train.num_to_keep, max_failures=cfg.train.max_failures, callbacks=callbacks)
    seconds = time.perf_counter() - t0
    remote = storage.remote_of(out_dir)
    if remote and storage.exists(remote):  # what workers on other nodes uploaded (vlm_job.close)
        storage.pull(remote, out_dir, delete=False)
    metrics = result.metrics or {}
    if "final_val_loss" not in metrics:
        raise CommandError(f"stage {stage} finished without its final report (see the Ray Train logs above)")
    samples = metrics["global_step"] * arith.global_batch_size
    return {
        "initial_val_loss": metrics["initial_val_loss"],
        "final_val_loss": metrics["final_val_loss"],
        **{k: metrics[k] for k in ("initial_retrieval_r1", "final_retrieval_r1", "retrieval_candidates",
                                   "val_rows", "unigram_val_loss") if k in metrics},
        "budget_fraction": plan.fraction,
        "tier_sizes": plan.full_sizes,
        "rows_per_tier_per_epoch": rows_per_tier,
        "rows_seen_per_tier": [sum(col) for col in zip(*rows_per_tier)],
        "steps": metrics["global_step"],
        "planned_steps": total,
        "steps_per_epoch": metrics["steps_per_epoch"],
        "samples_per_s": samples / seconds,
        "seconds": round(seconds, 2),
        "checkpoint": result.checkpoint.path if result.checkpoint else None,
        "model": metrics["model"],
        "ray_nodes": metrics.get("ray_nodes"),
        "metrics": str(out_dir / "metrics.jsonl"),
        "truncated": metrics.get("num_truncated", 0),
        "batch": arith.to_dict(),
    }


ARGS_FILE = "train_args.json"


def resume(cfg: Config, run_dir: str | Path, stage: str = "all") -> dict:
    """Continue `run_dir`: finished stages are kept, the others resume from their
    latest checkpoint (or start, if they never checkpointed)."""
    run_dir = Path(run_dir)
    args_path = run_dir / ARGS_FILE
    if not args_path.is_file():
        raise CommandError(f"{run_dir}: not a training run directory (no {ARGS_FILE})")
    args = json.loads(args_path.read_text())
    return train(cfg, args["stage"], args["data_dir"], args["tiers_dir"], run_dir, resume=True)


def stage_model(out_dir: Path, summary: dict, stage: int) -> Path | None:
    """Stage `stage`'s trained model: the path `summary.json` records, or, for a run directory
    that moved (another machine's copy of it), the same place under `out_dir`."""
    recorded = summary.get(f"stage{stage}", {}).get("model")
    if not recorded:
        return None
    for path in (Path(recorded), Path(out_dir, f"stage{stage}", "model")):
        if path.is_dir():
            return path
    return None


def train(cfg: Config, stage: str, data_dir: str | Path, tiers_dir: str | Path | None, out_dir: str | Path,
          *, fail_at_step: int | None = None, resume: bool = False) -> dict:
    """Run stage 1, stage 2 or both; writes and returns `OUT/summary.json`."""
    # Absolute paths: Ray Train workers do not run in the driver's working directory.
    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir).resolve()
    tiers_dir = Path(tiers_dir).resolve() if tiers_dir else None
    contracts.read(contracts.DatasetManifest, data_dir)
    if stage in ("1", "all"):
        iterator_kwargs(cfg, 1, data_dir, tiers_dir)  # tier input and curriculum.m checked before any work
    summary_path = out_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if resume and summary.get("training_hash") not in (None, training_hash(cfg)):
        raise CommandError(f"--resume {out_dir}: the run was trained under config {summary['training_hash']}, "
                           f"this config is {training_hash(cfg)} (hashes of {', '.join(TRAINING_SECTIONS)}): "
                           "pass the --config and --set the run started with, or start a new run")
    ensure_ray(cfg.ray)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / ARGS_FILE, {"stage": stage, "data_dir": str(data_dir.resolve()),
                                             "tiers_dir": str(tiers_dir.resolve()) if tiers_dir else None})
    summary["config_hash"] = config_hash(cfg)
    summary["training_hash"] = training_hash(cfg)
    stages = {"1": [1], "2": [2], "all": [1, 2]}[stage]
    base = prepare_base_model(cfg, data_dir, out_dir / "base")
    for s in stages:
        done = summary.get(f"stage{s}")
        if resume and done and done.get("steps") == done.get("planned_steps"):
            log0(f"[train] stage {s} already finished ({done['steps']} steps): kept")
            continue
        if s == 1:
            init = base
        else:
            init = stage_model(out_dir, summary, 1)
            if init is None:
                raise CommandError(f"stage 2 starts from stage 1's model: run --stage 1 first (no model in {out_dir})")
        summary[f"stage{s}"] = run_stage(cfg, s, data_dir, tiers_dir, out_dir, init,
                                         fail_at_step=fail_at_step, resume=resume)
        atomic_write_json(summary_path, summary)
        st = summary[f"stage{s}"]
        log0(f"[train] stage {s} done: {st['steps']} steps, val loss {st['initial_val_loss']:.4f} -> "
             f"{st['final_val_loss']:.4f}, {st['samples_per_s']:.1f} samples/s, model {st['model']}")
    return summary
