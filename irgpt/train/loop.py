"""The one Ray Train + DeepSpeed loop, for both stages (`train_loop_per_worker`).

Every rank: load the same base model, apply the stage's freezing policy,
`deepspeed.initialize` it (DeepSpeed reuses the gloo/NCCL process group Ray
Train created), read its share of the curriculum through the tier-aware
iterator, and per optimizer step run GAS micro-batches with the Eq. 6 loss.
Checkpoints hold every rank's DeepSpeed state plus the iterator state and the
RNG states, so a restart (Ray Train's FailureConfig after a dead worker, or
`irgpt train --resume`) continues with exactly the batches and losses an
uninterrupted run would have had.

Loop config (a plain dict, as Ray passes it): see `irgpt.train.trainer.loop_config`.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from irgpt.config import Config
from irgpt.train.loss import (
    answer_token_counts,
    backward_scale,
    count_contributing,
    eq6_loss,
    global_count,
    per_sample_ce,
)

CLIENT_STATE = "irgpt_state.json"


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state().tolist(), "python": list(random.getstate()[1]),
            "python_version": random.getstate()[0], "python_gauss": random.getstate()[2]}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))


def _samples(batch: dict) -> list[dict]:
    """The iterator's columnar batch -> the collator's list of sample dicts."""
    n = len(batch["sample_id"])
    out = []
    for i in range(n):
        out.append({
            "sample_id": batch["sample_id"][i],
            "image": batch["image"][i],
            "conversations": batch["conversations"][i],
            "weight": float(batch["weight"][i]),
            "tier": int(batch["tier"][i]),
            "pad": bool(batch["pad"][i]),
        })
    return out


def _mean_val_loss(engine, collator, samples: list[dict], micro: int, world_size: int) -> float:
    """Plain (unweighted) mean answer CE over this rank's share of the val set, all-reduced."""
    import torch.distributed as dist

    from irgpt.train.collator import model_inputs

    total = torch.zeros(2, dtype=torch.float64)
    n_batches = -(-len(samples) // micro)
    if world_size > 1 and dist.is_initialized():
        # Under ZeRO-3 a forward gathers parameters collectively: every rank must run
        # as many forwards, and the shares (rows[rank::world]) can differ by a batch.
        most = torch.tensor([n_batches], dtype=torch.long)
        dist.all_reduce(most, op=dist.ReduceOp.MAX)
        n_batches = int(most.item())
    engine.eval()
    with torch.no_grad():
        for i in range(n_batches):
            chunk = samples[i * micro : (i + 1) * micro]
            if not chunk and not samples:
                break  # no row to run a filler forward on (fewer val rows than ranks)
            batch = collator([{**s, "weight": 1.0} for s in chunk] or [{**samples[0], "pad": True}])
            batch = {k: v.to(engine.device) if hasattr(v, "to") else v for k, v in batch.items()}
            out = engine(**model_inputs(batch, _dtype(engine)))
            if not chunk:
                continue  # a filler forward: not counted
            ce, n_tok = per_sample_ce(out.logits, batch["labels"])
            keep = n_tok > 0
            total += torch.tensor([float(ce[keep].sum()), float(keep.sum())], dtype=torch.float64)
    engine.train()
    if world_size > 1 and dist.is_initialized():
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return float(total[0] / total[1]) if total[1] > 0 else float("nan")


def _retrieval_r1(engine, collator, pairs: list[dict], micro: int, rank: int, world_size: int) -> float:
    """Image-to-caption R@1 among `pairs` (the same list on every rank).

    L[i, j] = the model's mean answer-token CE of caption j given image i, for
    all K x K pairs (images split over ranks, i = rank, rank + world, ...;
    every rank runs as many forwards, as ZeRO-3 needs). Image i retrieves the
    caption j minimising L[i, j] - mean_i' L[i', j]: each caption's loss
    relative to its average over the K images, so a caption the language model
    finds easy whatever the image (a short or common one) cannot win for every
    image. A hit is a retrieved caption whose text equals image i's own
    (synthetic templates can repeat). Chance is about 1 / K.
    """
    import torch.distributed as dist

    from irgpt.data.schema import answer_text
    from irgpt.train.collator import model_inputs

    k = len(pairs)
    texts = [answer_text(p["conversations"]) for p in pairs]
    losses = torch.zeros((k, k), dtype=torch.float64)
    engine.eval()
    with torch.no_grad():
        for t in range(-(-k // world_size)):
            i = rank + t * world_size
            image = pairs[min(i, k - 1)]["image"]
            row = []
            for lo in range(0, k, micro):
                batch = collator([{"sample_id": f"r{i}-{j}", "image": image, "conversations": pairs[j]["conversations"],
                                   "weight": 1.0, "tier": 0, "pad": False} for j in range(lo, min(k, lo + micro))])
                batch = {n: v.to(engine.device) if hasattr(v, "to") else v for n, v in batch.items()}
                ce, _ = per_sample_ce(engine(**model_inputs(batch, _dtype(engine))).logits, batch["labels"])
                row.append(ce.double().cpu())
            if i < k:  # else a filler image: its forwards keep ZeRO-3's collectives in step
                losses[i] = torch.cat(row)
    engine.train()
    if world_size > 1 and dist.is_initialized():
        dist.all_reduce(losses, op=dist.ReduceOp.SUM)
    best = (losses - losses.mean(dim=0, keepdim=True)).argmin(dim=1).tolist()
    return sum(texts[j] == texts[i] for i, j in enumerate(best)) / k


def _dtype(engine):
    return torch.bfloat16 if engine.bfloat16_enabled() else None


def _save_final(engine, model, loaded, out_dir: Path, stage: int, zero_stage: int, rank: int) -> str:
    """Stage 1: full weights; stage 2: adapter + merged export. Gathers ZeRO-3 shards."""
    import deepspeed

    from irgpt.models.vlm import save_vlm

    params = list(model.parameters()) if zero_stage == 3 else []
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None, enabled=zero_stage == 3):
        if rank == 0:
            save_vlm(model, loaded.tokenizer, out_dir, loaded.spec, merge_lora=True)
    return str(out_dir)


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point for one stage (see module doc)."""
    import deepspeed
    import ray.train

    from irgpt.models.freeze import apply_stage
    from irgpt.models.vlm import load_vlm
    from irgpt.train.collator import VLMCollator, model_inputs
    from irgpt.train.data import make_iterator, val_rows
    from irgpt.train.ds_config import build_ds_config
    from irgpt.train.metrics import MetricsLog

    cfg = Config.from_dict(config["cfg"])
    stage = int(config["stage"])
    stage_cfg = cfg.train.stage1 if stage == 1 else cfg.train.stage2
    ctx = ray.train.get_context()
    rank, world_size = ctx.get_world_rank(), ctx.get_world_size()
    _seed_everything(cfg.train.seed + 1000 * stage)

    loaded = load_vlm(config["init_model"], trust_remote_code=cfg.train.trust_remote_code)
    model = apply_stage(loaded.model, stage, cfg.train.lora, train_llm=stage_cfg.train_llm)
    collator = VLMCollator(loaded.tokenizer, loaded.spec, cfg.train.max_length,
                           use_weights=(stage == 1 and cfg.curriculum.weights))
    iterator = make_iterator(config["iterator"], rank, world_size, stage_cfg.micro_batch_size, config["grad_accum"])
    steps_per_epoch = iterator.steps_per_epoch // config["grad_accum"]
    total_steps = config["total_steps"]
    ds_config = build_ds_config(cfg.train, stage_cfg, cfg.deepspeed, world_size, total_steps, cfg.train.use_gpu)
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=ds_config
    )
    gas = engine.gradient_accumulation_steps()
    out_dir = Path(config["out_dir"])
    log = MetricsLog(out_dir, stage, rank)

    step = 0
    checkpoint = ray.train.get_checkpoint()  # set after a worker failure restart
    if checkpoint is None and config.get("resume_checkpoint"):  # `irgpt train --resume`
        checkpoint = ray.train.Checkpoint.from_directory(config["resume_checkpoint"])
    initial_val = None
    if checkpoint:
        with checkpoint.as_directory() as ckpt_dir:
            # Our JSON first: DeepSpeed's load unpickles, so it only reads a checkpoint of this run.
            state = json.loads(Path(ckpt_dir, f"{CLIENT_STATE}.rank{rank}").read_text())
            if state.get("run") != config["run_name"]:
                raise RuntimeError(f"{ckpt_dir}: checkpoint of run {state.get('run')!r}, "
                                   f"not of this run {config['run_name']!r}: refusing to load it")
            engine.load_checkpoint(ckpt_dir, tag="state")
        iterator.load_state_dict(state["iterator"])
        _set_rng_state(state["rng"])
        step, initial_val = state["global_step"], state["initial_val_loss"]
        log.truncate_after(step)
        log.line(f"stage {stage}: resumed from a checkpoint at optimizer step {step}")
    else:  # a fresh start, also a restart that failed before its first checkpoint: drop an earlier attempt's lines
        log.truncate_after(-1)

    val = config["val"]
    held_out = val_rows(val["data_dir"], stage, val["limit"])
    val_samples = held_out[rank::world_size]
    pairs = held_out[: val.get("retrieval", 0)]
    unigram = None
    if rank == 0:
        from irgpt.train.baseline import unigram_loss
        from irgpt.train.data import read_stage_rows

        train_convs = read_stage_rows(val["data_dir"], stage, "train", ["sample_id", "conversations"]).column("conversations")
        unigram = unigram_loss(collator, train_convs.to_pylist(), [r["conversations"] for r in held_out])
        log.line(f"stage {stage}: {len(held_out)} held-out rows{' (clean captions)' if stage == 1 else ''}; "
                 f"unigram baseline loss {unigram:.4f}")

    def validate(at_step: int, retrieval: bool) -> dict:
        record = {"global_step": at_step,
                  "val_loss": _mean_val_loss(engine, collator, val_samples, stage_cfg.micro_batch_size, world_size)}
        if retrieval and len(pairs) > 1:
            record["retrieval_r1"] = _retrieval_r1(engine, collator, pairs, stage_cfg.micro_batch_size, rank,
                                                   world_size)
        log.write(record)
        return record

    if initial_val is None:
        first = validate(0, retrieval=True)
        initial_val, initial_r1 = first["val_loss"], first.get("retrieval_r1")
    else:
        initial_r1 = state.get("initial_retrieval_r1")

    fail_at = config.get("fail_at_step")
    fail_marker = Path(config["fail_marker"]) if config.get("fail_marker") else None
    armed = bool(fail_at and fail_marker and not fail_marker.exists())  # decided once, alike on every rank
    batches = iter(iterator)
    t_last, samples_seen, tokens_seen = time.perf_counter(), 0, 0
    while step < total_steps:
        micro = []
        for _ in range(gas):
            try:
                micro.append(next(batches))
            except StopIteration:
                break
        if len(micro) < gas:
            break  # the plan ran out (every rank has the same number of batches)
        epoch, tier, step_in_tier, _ = iterator.position
        encoded = [collator(_samples(b)) for b in micro]
        n_local = sum(count_contributing(answer_token_counts(b["labels"]), b["pad_mask"]) for b in encoded)
        n_global = global_count(n_local, world_size, engine.device)
        step_loss = 0.0
        for b in encoded:
            b = {k: v.to(engine.device) if hasattr(v, "to") else v for k, v in b.items()}
            out = engine(**model_inputs(b, _dtype(engine)))
            loss, stats = eq6_loss(out.logits, b["labels"], b["weights"], b["pad_mask"], n_global)
            engine.backward(loss * backward_scale(world_size, gas))
            engine.step()
            step_loss += float(loss.detach())
            tokens_seen += stats["answer_tokens"]
            samples_seen += stats["n_contributing"]
        step += 1
        step_loss = _all_reduce_sum(step_loss, world_size)  # = Eq. 6 loss of the global batch
        record = {"stage": stage, "global_step": step, "epoch": epoch, "tier": tier, "step_in_tier": step_in_tier,
                  "loss": step_loss, "lr": float(engine.get_lr()[0])}
        log.step(record)
        if step % cfg.train.log_every == 0 or step == total_steps:
            dt = time.perf_counter() - t_last
            log.write({**record, "samples_per_s": world_size * samples_seen / dt,
                       "tokens_per_s": world_size * tokens_seen / dt, **collator.counters()})
            t_last, samples_seen, tokens_seen = time.perf_counter(), 0, 0
        if armed and step == fail_at:
            _wait_reports_taken()  # else the last checkpoint may die unregistered in this worker's result queue
            if rank == world_size - 1:
                fail_marker.write_text(f"killed rank {rank} after step {step}\n")
                os._exit(1)  # test hook: a worker process dies mid-epoch
        if val["every"] and step % val["every"] == 0 and step < total_steps:
            validate(step, retrieval=False)
        if step % cfg.train.checkpoint_every == 0 and step < total_steps:
            _checkpoint(engine, iterator, step, initial_val, rank, {"loss": step_loss, "global_step": step},
                        initial_r1, config["run_name"])

    last = validate(step, retrieval=True)
    final_val = last["val_loss"]
    retrieval = {}
    if "retrieval_r1" in last:
        retrieval = {"initial_retrieval_r1": initial_r1, "final_retrieval_r1": last["retrieval_r1"],
                     "retrieval_candidates": len(pairs)}
    model_dir = _save_final(engine, engine.module, loaded, out_dir / "model", stage, cfg.deepspeed.zero_stage, rank)
    _checkpoint(engine, iterator, step, initial_val, rank,
                {"global_step": step, "initial_val_loss": initial_val, "final_val_loss": final_val,
                 "val_rows": len(held_out), "unigram_val_loss": unigram, **retrieval,
                 "model": model_dir, "steps_per_epoch": steps_per_epoch, **collator.counters()}, initial_r1,
                config["run_name"])
    iterator.close()
    log.close()


def _wait_reports_taken(timeout_s: float = 120.0) -> None:
    """Test hook helper: block until Ray Train's controller has taken this worker's reports.

    `ray.train.report` returns once the report sits in the worker's result
    queue; the controller takes it at its next poll (every ~2 s, slower on a
    loaded machine) and registers a checkpoint only when every rank's report
    is in. A worker that dies in between loses the checkpoint, and the restart
    would silently begin from an older one. Internal Ray Train V2 API (only
    the test hook uses it); on any other Ray it falls back to a wait.
    """
    deadline = time.monotonic() + timeout_s
    try:
        from ray.train.v2._internal.execution.context import get_train_context

        result_queue = get_train_context().get_result_queue()
    except Exception:  # noqa: BLE001 - not Train V2: a wait longer than a poll interval
        time.sleep(10.0)
        return
    while result_queue.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.05)


def _all_reduce_sum(value: float, world_size: int) -> float:
    import torch.distributed as dist

    if world_size == 1 or not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


def _checkpoint(engine, iterator, step: int, initial_val: float, rank: int, metrics: dict,
                initial_r1: float | None, run_name: str) -> None:
    """Every rank saves its DeepSpeed shard + client state (with the run's name, checked
    before a resume loads anything); Ray merges them into one checkpoint."""
    import ray.train
    from ray.train import Checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        engine.save_checkpoint(tmp, tag="state")
        state = {"run": run_name, "iterator": iterator.state_dict(), "rng": _rng_state(), "global_step": step,
                 "initial_val_loss": initial_val, "initial_retrieval_r1": initial_r1}
        Path(tmp, f"{CLIENT_STATE}.rank{rank}").write_text(json.dumps(state))
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))
