"""The VLM stages as a `TrainingJob` (`irgpt.train.skeleton`): Ray Train + DeepSpeed.

Every rank: load the same base model, apply the stage's freezing policy,
`deepspeed.initialize` it (DeepSpeed reuses the gloo/NCCL process group Ray
Train created), read its share of the curriculum through the tier-aware
iterator, and per optimizer step run GAS micro-batches with the Eq. 6 loss.
Checkpoints hold every rank's DeepSpeed state plus the iterator state and the
RNG states, so a restart (Ray Train's FailureConfig after a dead worker, or
`irgpt train --resume`) continues with exactly the batches and losses an
uninterrupted run would have had.

Loop config (a plain dict, as Ray passes it): built by `irgpt.train.trainer.run_stage`.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from irgpt import storage
from irgpt.config import Config
from irgpt.train.dist import all_reduce, all_reduce_tensor, without_stdout_lines
from irgpt.train.loss import (
    answer_token_counts,
    backward_scale,
    count_contributing,
    eq6_loss,
    global_count,
    per_sample_ce,
)
from irgpt.train.skeleton import TrainingJob


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


def _mean_val_loss(engine, collator, samples: list[dict], micro: int) -> float:
    """Plain (unweighted) mean answer CE over this rank's share of the val set, all-reduced."""
    from irgpt.models.collator import model_inputs

    total = torch.zeros(2, dtype=torch.float64)
    # Under ZeRO-3 a forward gathers parameters collectively: every rank must run
    # as many forwards, and the shares (rows[rank::world]) can differ by a batch.
    n_batches = int(all_reduce([-(-len(samples) // micro)], "max")[0])
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
    all_reduce_tensor(total)
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
    from irgpt.data.schema import answer_text
    from irgpt.models.collator import model_inputs

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
    all_reduce_tensor(losses)
    best = (losses - losses.mean(dim=0, keepdim=True)).argmin(dim=1).tolist()
    return sum(texts[j] == texts[i] for i, j in enumerate(best)) / k


def _dtype(engine):
    return torch.bfloat16 if engine.bfloat16_enabled() else None


def _save_final(model, loaded, out_dir: Path, zero_stage: int, rank: int) -> None:
    """Stage 1: full weights; stage 2: adapter + merged export. Gathers ZeRO-3 shards."""
    import deepspeed

    from irgpt.models.vlm import save_vlm

    params = list(model.parameters()) if zero_stage == 3 else []
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None, enabled=zero_stage == 3):
        if rank == 0:
            save_vlm(model, loaded.tokenizer, out_dir, loaded.spec, merge_lora=True)


class VlmJob(TrainingJob):
    """One VLM stage on one rank (module doc)."""

    def setup(self, rank: int, world: int) -> None:
        import deepspeed

        from irgpt.models.collator import VLMCollator
        from irgpt.models.freeze import apply_stage
        from irgpt.models.vlm import load_vlm
        from irgpt.train.data import make_iterator, val_rows
        from irgpt.train.ds_config import build_ds_config
        from irgpt.train.metrics import MetricsLog

        config = self.config
        cfg = self.cfg = Config.from_dict(config["cfg"])
        stage = self.stage = int(config["stage"])
        stage_cfg = self.stage_cfg = cfg.train.stage1 if stage == 1 else cfg.train.stage2
        self.rank, self.world = rank, world
        _seed_everything(cfg.train.seed + 1000 * stage)

        loaded = self.loaded = load_vlm(config["init_model"], trust_remote_code=cfg.train.trust_remote_code)
        model = apply_stage(loaded.model, stage, cfg.train.lora, train_llm=stage_cfg.train_llm)
        collator = self.collator = VLMCollator(loaded.tokenizer, loaded.spec, cfg.train.max_length,
                                               use_weights=(stage == 1 and cfg.curriculum.weights))
        self.iterator = make_iterator(config["iterator"], rank, world, stage_cfg.micro_batch_size,
                                      config["grad_accum"])
        self.steps_per_epoch = self.iterator.steps_per_epoch // config["grad_accum"]
        self.total_steps = config["total_steps"]
        ds_config = build_ds_config(cfg.train, stage_cfg, cfg.deepspeed, world, self.total_steps, cfg.train.use_gpu)
        # DeepSpeed prints "... deepspeed_shm_comm_op built successfully" twice per worker and stage.
        with without_stdout_lines("deepspeed_shm_comm_op built successfully"):
            self.engine, _, _, _ = deepspeed.initialize(
                model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=ds_config
            )
        self.gas = self.engine.gradient_accumulation_steps()
        # A worker on a node without the driver's work mirror of an object-storage run writes
        # into a temp directory and uploads it to the store on close (the driver pulls it).
        self.final_dir = Path(config["out_dir"])
        self.out_dir, self.store = storage.node_output(self.final_dir)
        self.log = MetricsLog(self.out_dir, stage, rank)
        self.done, self.batches, self.initial_val, self.initial_r1 = 0, None, None, None

        val = self.val = config["val"]
        self.held_out = val_rows(val["data_dir"], stage, val["limit"])
        self.val_samples = self.held_out[rank::world]
        self.pairs = self.held_out[: val.get("retrieval", 0)]
        self.unigram = None
        if rank == 0:
            from irgpt.train.baseline import unigram_loss
            from irgpt.train.data import read_stage_rows

            train_convs = read_stage_rows(val["data_dir"], stage, "train", ["sample_id", "conversations"]).column("conversations")
            self.unigram = unigram_loss(collator, train_convs.to_pylist(), [r["conversations"] for r in self.held_out])
            self.log.line(f"stage {stage}: {len(self.held_out)} held-out rows{' (clean captions)' if stage == 1 else ''}; "
                          f"unigram baseline loss {self.unigram:.4f}")
        self.t_last, self.samples_seen, self.tokens_seen = time.perf_counter(), 0, 0

    def validate(self, at_step: int, retrieval: bool) -> dict:
        micro = self.stage_cfg.micro_batch_size
        record = {"global_step": at_step,
                  "val_loss": _mean_val_loss(self.engine, self.collator, self.val_samples, micro)}
        if retrieval and len(self.pairs) > 1:
            record["retrieval_r1"] = _retrieval_r1(self.engine, self.collator, self.pairs, micro, self.rank,
                                                   self.world)
        self.log.write(record)
        return record

    def start_fresh(self) -> None:
        self.log.truncate_after(-1)  # also a restart that failed before its first checkpoint
        first = self.validate(0, retrieval=True)
        self.initial_val, self.initial_r1 = first["val_loss"], first.get("retrieval_r1")

    def load(self, directory: Path, rank: int, state: dict) -> None:
        self.engine.load_checkpoint(str(directory), tag="state")  # after the skeleton checked the run's name
        self.iterator.load_state_dict(state["iterator"])
        _set_rng_state(state["rng"])
        self.done, self.initial_val = state["global_step"], state["initial_val_loss"]
        self.initial_r1 = state.get("initial_retrieval_r1")
        self.log.truncate_after(self.done)
        self.log.line(f"stage {self.stage}: resumed from a checkpoint at optimizer step {self.done}")

    def step(self, step: int) -> dict:
        from irgpt.models.collator import model_inputs

        if self.batches is None:
            self.batches = iter(self.iterator)
        micro = [b for b in (next(self.batches, None) for _ in range(self.gas)) if b is not None]
        if len(micro) < self.gas:  # the plan gives every rank total_steps x GAS batches
            raise RuntimeError(f"stage {self.stage}: the tier iterator ran out at step {step} of {self.total_steps}")
        engine, cfg = self.engine, self.cfg
        epoch, tier, step_in_tier, _ = self.iterator.position
        encoded = [self.collator(_samples(b)) for b in micro]
        n_local = sum(count_contributing(answer_token_counts(b["labels"]), b["pad_mask"]) for b in encoded)
        n_global = global_count(n_local, self.world, engine.device)
        step_loss = 0.0
        for b in encoded:
            b = {k: v.to(engine.device) if hasattr(v, "to") else v for k, v in b.items()}
            out = engine(**model_inputs(b, _dtype(engine)))
            loss, stats = eq6_loss(out.logits, b["labels"], b["weights"], b["pad_mask"], n_global)
            engine.backward(loss * backward_scale(self.world, self.gas))
            engine.step()
            step_loss += float(loss.detach())
            self.tokens_seen += stats["answer_tokens"]
            self.samples_seen += stats["n_contributing"]
        self.done = done = step + 1
        step_loss = all_reduce([step_loss])[0]  # = Eq. 6 loss of the global batch
        record = {"stage": self.stage, "global_step": done, "epoch": epoch, "tier": tier,
                  "step_in_tier": step_in_tier, "loss": step_loss, "lr": float(engine.get_lr()[0]),
                  "time": time.time(), "cpu_s": time.process_time(), "threads": torch.get_num_threads()}
        self.log.step(record)
        if done % cfg.train.log_every == 0 or done == self.total_steps:
            dt = time.perf_counter() - self.t_last
            self.log.write({**record, "samples_per_s": self.world * self.samples_seen / dt,
                            "tokens_per_s": self.world * self.tokens_seen / dt, **self.collator.counters()})
            self.t_last, self.samples_seen, self.tokens_seen = time.perf_counter(), 0, 0
        if self.val["every"] and done % self.val["every"] == 0 and done < self.total_steps:
            self.validate(done, retrieval=False)
        return {"loss": step_loss, "global_step": done}

    def checkpoint_due(self, done: int) -> bool:
        return done % self.cfg.train.checkpoint_every == 0

    def save(self, directory: Path, rank: int, final: bool) -> dict:
        """Every rank: its DeepSpeed shard, and the iterator and RNG states."""
        self.engine.save_checkpoint(str(directory), tag="state")
        return {"iterator": self.iterator.state_dict(), "rng": _rng_state(),
                "initial_val_loss": self.initial_val, "initial_retrieval_r1": self.initial_r1}

    def finish(self) -> dict:
        last = self.validate(self.done, retrieval=True)
        retrieval = {}
        if "retrieval_r1" in last:
            retrieval = {"initial_retrieval_r1": self.initial_r1, "final_retrieval_r1": last["retrieval_r1"],
                         "retrieval_candidates": len(self.pairs)}
        _save_final(self.engine.module, self.loaded, self.out_dir / "model", self.cfg.deepspeed.zero_stage, self.rank)
        model_dir = str(self.final_dir / "model")
        return {"global_step": self.done, "initial_val_loss": self.initial_val, "final_val_loss": last["val_loss"],
                "val_rows": len(self.held_out), "unigram_val_loss": self.unigram, **retrieval,
                "model": model_dir, "steps_per_epoch": self.steps_per_epoch, **self.collator.counters()}

    def close(self) -> None:
        self.iterator.close()
        self.log.close()
        if self.store:
            storage.publish(self.out_dir, self.store, prune=False)
            shutil.rmtree(self.out_dir, ignore_errors=True)
