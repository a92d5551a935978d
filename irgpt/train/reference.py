"""A plain single-process PyTorch stage-1 loop: the parity and speed baseline.

No Ray, no DeepSpeed engine: the same pieces as `irgpt.train.vlm_job` on one
process, so its per-step losses must equal a 1-worker ZeRO-0 Ray Train run's
(tests/train/test_parity.py) and its step time is what the distributed loop
is measured against (benchmarks/bench_train.py).

What had to match the DeepSpeed run, piece by piece:
- weights: the same base model directory (`prepare_base_model`) loaded with
  `load_vlm`, then `apply_stage(model, 1)`; `torch.manual_seed` with the
  loop's seed (`train.seed + 1000 * stage`) before anything else.
- data: `make_iterator(spec, rank=0, world_size=1, micro, grad_accum)` with the
  spec and batch arithmetic `run_stage` computes, and the same `VLMCollator`
  (weights on when `curriculum.weights`).
- loss: Eq. 6 (`eq6_loss` with N = the step's contributing count). With one
  process a plain `loss.backward()` of every micro-batch sums the gradients to
  grad L of the step; DeepSpeed gets the same sum from `backward(loss * W*GAS)`
  divided by GAS (W = 1): exact in floating point when GAS is a power of two,
  a last-bit rounding otherwise.
- optimizer: `torch.optim.AdamW` with the lr/betas/eps/weight_decay of
  `build_ds_config`; with `deepspeed.torch_adam` DeepSpeed builds exactly this
  class (default `foreach`), so the update is the same code.
- clipping: `torch.nn.utils.clip_grad_norm_(max_norm=deepspeed.gradient_clipping)`;
  DeepSpeed's ZeRO-0 fp32 path calls its own `clip_grad_norm_` (same formula:
  coef = min(1, max / (||g||_2 + 1e-6)); the norm is summed in another order,
  a last-bit difference at most).
- schedule: DeepSpeed's own `WarmupCosineLR` instantiated on the torch
  optimizer with the `scheduler.params` of `build_ds_config`, stepped once
  after every optimizer step as the engine does. Note its warm-up is at least
  2 steps and starts at ratio 0 (the constructor sets lr = 0, the first step()
  gives iteration 0 -> ratio 0), so the first two optimizer steps run with
  lr = 0 (Adam's moments still update); the logged `lr` of a step is the
  rate *after* that step, i.e. the one the next step uses, as in the loop.
- order of operations per step: zero_grad (grads set to None), GAS forward /
  backward, clip, step, scheduler step.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from irgpt.config import Config


def run_reference(cfg: Config, data_dir: str | Path, tiers_dir: str | Path, base_model: str | Path, steps: int,
                  *, num_threads: int | None = None) -> dict:
    """Run `steps` stage-1 optimizer steps; returns {"losses", "lrs", "tiers", "step_seconds",
    "step_cpu_seconds"} (wall and process CPU time of each step).

    `steps` is the stage's budget, turned into the fraction of every tier the
    run keeps exactly as `run_stage` does with `train.stage1.max_steps = steps`
    (irgpt.curriculum.budget), so the run takes at most `steps` steps.
    `num_threads` sets torch's intra-op threads for the run (a Ray worker with
    one CPU runs one thread); the previous value is restored afterwards.
    """
    from deepspeed.runtime.lr_schedules import WarmupCosineLR

    from irgpt.models.collator import VLMCollator, model_inputs
    from irgpt.models.freeze import apply_stage
    from irgpt.models.vlm import load_vlm
    from irgpt.train.data import make_iterator
    from irgpt.train.ds_config import batch_arithmetic, build_ds_config
    from irgpt.train.loss import answer_token_counts, count_contributing, eq6_loss
    from irgpt.train.trainer import iterator_kwargs, stage_fraction
    from irgpt.train.vlm_job import _samples, _seed_everything

    stage, world = 1, 1
    stage_cfg = cfg.train.stage1
    arith = batch_arithmetic(stage_cfg.global_batch_size, stage_cfg.micro_batch_size, world)
    micro, gas = arith.micro_batch_size, arith.grad_accum_steps
    spec = iterator_kwargs(cfg, stage, Path(data_dir), Path(tiers_dir))

    previous_threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    iterator = None
    try:
        _seed_everything(cfg.train.seed + 1000 * stage)
        loaded = load_vlm(base_model, trust_remote_code=cfg.train.trust_remote_code)
        model = apply_stage(loaded.model, stage, cfg.train.lora, train_llm=stage_cfg.train_llm)
        model.train()
        collator = VLMCollator(loaded.tokenizer, loaded.spec, cfg.train.max_length,
                               use_weights=cfg.curriculum.weights)
        sizes = make_iterator(spec, 0, world, micro, gas).plan.full_sizes
        spec["fraction"] = stage_fraction(sizes, replace(stage_cfg, max_steps=steps), cfg.curriculum.mode,
                                          arith.global_batch_size, "steps")
        iterator = make_iterator(spec, 0, world, micro, gas)
        total = iterator.steps_per_epoch // gas * stage_cfg.epochs
        ds = build_ds_config(cfg.train, stage_cfg, cfg.deepspeed, world, total, use_gpu=False)
        opt = ds["optimizer"]["params"]
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=opt["lr"],
                                      betas=tuple(opt["betas"]), eps=opt["eps"], weight_decay=opt["weight_decay"])
        scheduler = WarmupCosineLR(optimizer, **ds["scheduler"]["params"])
        clip = ds["gradient_clipping"]

        losses, lrs, seconds, cpu_seconds, tiers = [], [], [], [], []
        batches = iter(iterator)
        for _ in range(total):
            t0, c0 = time.perf_counter(), time.process_time()
            micro_batches = [next(batches) for _ in range(gas)]
            tiers.append(int(iterator.position.tier))
            encoded = [collator(_samples(b)) for b in micro_batches]
            n_global = sum(count_contributing(answer_token_counts(b["labels"]), b["pad_mask"]) for b in encoded)
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for b in encoded:
                out = model(**model_inputs(b))
                loss, _ = eq6_loss(out.logits, b["labels"], b["weights"], b["pad_mask"], n_global)
                loss.backward()
                step_loss += float(loss.detach())
            if clip and clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=clip)
            optimizer.step()
            scheduler.step()
            losses.append(step_loss)
            lrs.append(float(optimizer.param_groups[0]["lr"]))
            seconds.append(time.perf_counter() - t0)
            cpu_seconds.append(time.process_time() - c0)
        return {"losses": losses, "lrs": lrs, "tiers": tiers, "step_seconds": seconds, "step_cpu_seconds": cpu_seconds}
    finally:
        if iterator is not None:
            iterator.close()
        torch.set_num_threads(previous_threads)


def reference_losses(cfg: Config, data_dir: str | Path, tiers_dir: str | Path, base_model: str | Path,
                     steps: int, *, num_threads: int | None = None) -> list[float]:
    """Per-step Eq. 6 losses of the plain loop (see `run_reference`)."""
    return run_reference(cfg, data_dir, tiers_dir, base_model, steps, num_threads=num_threads)["losses"]
