"""Config sections for training, DeepSpeed, Tune, evaluation, Ray and the run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class LoraConfig:
    """peft LoRA for stage 2 (Decision, METHOD.md: r=16, alpha=32, dropout 0.05)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    """Regex on module names; the LLM only (the vision tower has q/v_proj too)."""


@dataclass
class StageConfig:
    """One training stage (METHOD.md "Model and two training stages")."""

    lr: float = 1e-3
    epochs: int = 1
    micro_batch_size: int = 8
    """Per-worker batch per forward pass."""
    global_batch_size: int = 32
    """Samples per optimizer step across all workers (paper: 32);
    gradient accumulation = global / (micro * workers)."""
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_steps: int | None = None
    """Stop early after this many optimizer steps (smoke runs)."""


def _stage2_default() -> StageConfig:
    """Stage 2 defaults for the built-in tiny model (the defaults are demo scale).

    The paper's 2e-5 x 5 epochs fine-tunes a pretrained 8B LLM and is what
    configs/internvl2-8b.yaml sets; the tiny random-init Llama's LoRA needs a
    larger step (measured: 300 scenes, val loss 7.06 -> 2.01 in 2 epochs at 3e-3).
    """
    return StageConfig(lr=3e-3, epochs=2)


@dataclass
class DeepSpeedConfig:
    zero_stage: Literal[0, 1, 2, 3] = 2
    """Decision (METHOD.md): ZeRO stage 2 by default."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto = bf16 on GPU, fp32 on CPU."""
    gradient_clipping: float = 1.0
    torch_adam: bool = True
    """Use torch AdamW inside DeepSpeed (skips the fused_adam JIT build on CPU)."""


@dataclass
class TrainConfig:
    model: str = "tiny"
    """`tiny` (random-init LLaVA-style VLM built from configs) or a local HF path."""
    trust_remote_code: bool = False
    """Only for checkpoints that need it; off by default."""
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=_stage2_default)
    lora: LoraConfig = field(default_factory=LoraConfig)
    num_workers: int = 2
    use_gpu: bool = False
    gpus_per_worker: int = 0
    max_length: int = 256
    """Tokens per sample; longer samples are truncated and counted."""
    log_every: int = 5
    checkpoint_every: int = 20
    """Optimizer steps between checkpoints."""
    num_to_keep: int = 2
    max_failures: int = 2
    storage_path: str | None = None
    """Ray Train storage (local dir, NFS or s3://); default: RUN_DIR/ray."""
    seed: int = 0


@dataclass
class TuneConfig:
    space: str = "tune_spaces/default.yaml"
    num_samples: int = 4
    max_concurrent_trials: int = 1
    objective: Literal["benchmark", "val_loss"] = "benchmark"
    """benchmark = psum - nsum on the validation split; or validation loss."""
    scheduler: Literal["asha", "none"] = "asha"
    search: Literal["random", "optuna"] = "random"
    stage2: bool = False
    """Also run a short stage 2 in each trial."""


@dataclass
class EvalConfig:
    bench_dir: str | None = None
    """Benchmark dataset; default: the benchmark split of data.dir."""
    batch_size: int = 16
    max_new_tokens: int = 48
    concurrency: int = 1
    num_gpus: float = 0.0
    limit: int | None = None
    """Evaluate only the first N benchmark rows by id (smoke runs); null = all."""


@dataclass
class RayConfig:
    address: str | None = None
    """Cluster address; null = `ray.init()` in process (local Ray)."""
    num_cpus: int | None = 2
    """CPUs for a local Ray; ignored when joining a cluster."""
    object_store_memory_mb: int | None = None


@dataclass
class RunConfig:
    name: str = "demo"
    root: str = "runs"
    """Run directory = root/name."""
    seed: int = 0
    stages: list[str] = field(
        default_factory=lambda: [
            "synth", "fe_train", "score_l1", "score_l2", "tier",
            "train_stage1", "train_stage2", "eval", "report",
        ]
    )
    """Pipeline stages to run, in order."""
