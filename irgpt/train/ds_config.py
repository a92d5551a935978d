"""The DeepSpeed config dict of one training stage, and the batch arithmetic it rests on.

Mapping (config -> DeepSpeed key):
    stage.global_batch_size            -> train_batch_size
    stage.micro_batch_size             -> train_micro_batch_size_per_gpu
    global / (micro * world_size)      -> gradient_accumulation_steps (must divide exactly)
    deepspeed.zero_stage               -> zero_optimization.stage (0 = plain data parallel)
    stage.lr, stage.weight_decay       -> optimizer AdamW params (betas 0.9/0.999, eps 1e-8: the paper gives none)
    deepspeed.torch_adam               -> optimizer.params.torch_adam (torch AdamW; no fused_adam JIT build)
    stage.warmup_ratio, total_steps    -> scheduler WarmupCosineLR (linear warm-up from 0, cosine to 0)
    deepspeed.gradient_clipping        -> gradient_clipping
    deepspeed.precision                -> bf16.enabled (auto: bf16 on GPU, fp32 on CPU)

On CPU DeepSpeed picks its CPU accelerator by itself when no GPU is visible
(`DS_ACCELERATOR=cpu` forces it); docs/training.md has the single-process setting.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from irgpt.config import DeepSpeedConfig, StageConfig, TrainConfig
from irgpt.errors import CommandError

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def data_parallel_world_size(train_cfg: TrainConfig) -> int:
    """World size = train.num_workers: Ray Train runs one process (one rank) per
    worker, and each rank drives one device; `gpus_per_worker` > 1 does not add
    data-parallel ranks (the dry run warns about it)."""
    if train_cfg.num_workers < 1:
        raise CommandError(f"train.num_workers must be >= 1, got {train_cfg.num_workers}")
    return train_cfg.num_workers


# ---- Batch arithmetic, defined once ----------------
# One optimizer step sees `global_batch_size` samples: each of the W ranks
# runs GAS micro-batches of `micro_batch_size`, so
#     global = micro * W * GAS.
# GAS must be a whole number, else the step would not see the paper's batch
# of 32 (docs/method.md); there is no silent rounding.
@dataclass(frozen=True)
class BatchArithmetic:
    global_batch_size: int
    micro_batch_size: int
    world_size: int
    grad_accum_steps: int

    def to_dict(self) -> dict:
        return asdict(self)


def batch_arithmetic(global_batch_size: int, micro_batch_size: int, world_size: int) -> BatchArithmetic:
    """Gradient accumulation = global / (micro * world); CommandError unless it divides exactly."""
    for name, value in (("global_batch_size", global_batch_size), ("micro_batch_size", micro_batch_size),
                        ("world_size", world_size)):
        if value < 1:
            raise CommandError(f"{name} must be >= 1, got {value}")
    per_step = micro_batch_size * world_size
    if global_batch_size % per_step:
        valid = [m for m in range(1, global_batch_size + 1) if global_batch_size % (m * world_size) == 0]
        raise CommandError(
            f"global_batch_size={global_batch_size} is not a multiple of micro_batch_size={micro_batch_size} "
            f"x world_size={world_size} (= {per_step}); gradient accumulation must be a whole number. "
            + (f"micro_batch_size values that fit: {valid}" if valid else
               f"no micro_batch_size fits: global_batch_size must be a multiple of world_size={world_size}"))
    return BatchArithmetic(global_batch_size, micro_batch_size, world_size, global_batch_size // per_step)


def steps_per_epoch(num_samples: int, global_batch_size: int) -> int:
    """Optimizer steps per epoch; the last, partial global batch is filled with pad samples."""
    return max(1, math.ceil(num_samples / global_batch_size))


def total_optimizer_steps(num_samples: int, stage_cfg: StageConfig) -> int:
    """epochs x steps_per_epoch, capped by `max_steps` when set."""
    total = stage_cfg.epochs * steps_per_epoch(num_samples, stage_cfg.global_batch_size)
    return min(total, stage_cfg.max_steps) if stage_cfg.max_steps else total


def resolve_precision(ds_cfg: DeepSpeedConfig, use_gpu: bool) -> str:
    """`bf16` or `fp32` (auto: bf16 on GPU, fp32 on CPU)."""
    if ds_cfg.precision == "auto":
        return "bf16" if use_gpu else "fp32"
    return ds_cfg.precision


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """round(ratio x total), at least 1 (DeepSpeed's WarmupCosineLR requires > 0 and uses >= 2)."""
    return max(1, round(warmup_ratio * total_steps))


def _zero_section(stage: int, use_gpu: bool) -> dict:
    zero: dict = {"stage": stage}
    if stage >= 1:
        zero["overlap_comm"] = use_gpu  # overlap needs a separate comm stream: GPU only
    if stage == 2:
        zero["contiguous_gradients"] = True
    if stage == 3:
        zero["contiguous_gradients"] = True
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # full weights for save_vlm
    return zero


def build_ds_config(train_cfg: TrainConfig, stage_cfg: StageConfig, ds_cfg: DeepSpeedConfig, world_size: int,
                    total_steps: int, use_gpu: bool) -> dict:
    """The DeepSpeed config dict for `deepspeed.initialize(config=...)` (mapping in the module doc)."""
    if ds_cfg.zero_stage not in (0, 1, 2, 3):
        raise CommandError(f"deepspeed.zero_stage must be 0, 1, 2 or 3, got {ds_cfg.zero_stage}")
    if total_steps < 1:
        raise CommandError(f"total optimizer steps must be >= 1, got {total_steps}")
    if not 0.0 <= stage_cfg.warmup_ratio < 1.0:
        raise CommandError(f"warmup_ratio must be in [0, 1), got {stage_cfg.warmup_ratio}")
    arith = batch_arithmetic(stage_cfg.global_batch_size, stage_cfg.micro_batch_size, world_size)
    precision = resolve_precision(ds_cfg, use_gpu)
    return {
        "train_batch_size": arith.global_batch_size,
        "train_micro_batch_size_per_gpu": arith.micro_batch_size,
        "gradient_accumulation_steps": arith.grad_accum_steps,
        "gradient_clipping": ds_cfg.gradient_clipping,
        "zero_optimization": _zero_section(ds_cfg.zero_stage, use_gpu),
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": False},
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": stage_cfg.lr,
                "betas": list(ADAM_BETAS),
                "eps": ADAM_EPS,
                "weight_decay": stage_cfg.weight_decay,
                **({"torch_adam": True} if ds_cfg.torch_adam else {}),
            },
        },
        "scheduler": {
            "type": "WarmupCosineLR",
            "params": {
                "total_num_steps": total_steps,
                "warmup_num_steps": warmup_steps(total_steps, stage_cfg.warmup_ratio),
                "warmup_min_ratio": 0.0,
                "warmup_type": "linear",
                "cos_min_ratio": 0.0,
            },
        },
        # The training loop logs (every train.log_every steps); keep DeepSpeed quiet.
        "steps_per_print": max(10**6, train_cfg.log_every),
        "wall_clock_breakdown": False,
    }
