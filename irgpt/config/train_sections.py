"""Config sections for training, DeepSpeed, Tune, evaluation, Ray and the run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class LoraConfig:
    """peft LoRA for stage 2 (Decision, docs/method.md: r=16, alpha=32, dropout 0.05)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    """Regex on module names; the LLM only (the vision tower has q/v_proj too)."""

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"r: LoRA rank must be >= 1, got {self.r}")


@dataclass
class StageConfig:
    """One training stage (docs/method.md "Model and two training stages")."""

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
    """A step budget (trials, smoke runs): every tier keeps the same fraction of its
    rows so the whole schedule fits in about this many optimizer steps; the
    schedule's tail is never cut (docs/curriculum.md, "Budgets")."""
    train_llm: bool = False
    """Stage 1 only: train the LLM and its output head too. Off = the method (vision
    encoder + projector against a frozen LLM). For the tiny stand-in, whose 2-layer
    LLM cannot learn to read visual tokens while frozen (docs/experiments.md)."""
    data_fraction: float = 1.0
    """A row budget: every tier keeps this fraction of its rows (seeded, the same
    rows for every schedule). With max_steps too, the smaller budget wins."""

    def __post_init__(self):
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: must be a finite number > 0, got {self.lr}")
        if self.epochs < 1:
            raise ValueError(f"epochs: must be >= 1, got {self.epochs}")
        if self.micro_batch_size < 1 or self.global_batch_size < 1:
            raise ValueError(f"micro_batch_size: micro and global batch sizes must be >= 1, got "
                             f"{self.micro_batch_size} and {self.global_batch_size}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps: must be >= 1 (or null for no budget), got {self.max_steps}")
        if not 0.0 < self.data_fraction <= 1.0:
            raise ValueError(f"data_fraction: must be in (0, 1], got {self.data_fraction}")


def _stage2_default() -> StageConfig:
    """Stage 2 defaults for the built-in tiny model (the defaults are demo scale).

    The paper's 2e-5 x 5 epochs fine-tunes a pretrained 8B LLM and is what
    configs/internvl2-8b.yaml sets; the tiny random-init Llama's LoRA needs a
    larger step (measured: 300 scenes, val loss 7.06 -> 2.01 in 2 epochs at 3e-3).
    """
    return StageConfig(lr=3e-3, epochs=2)


@dataclass
class TinyLMConfig:
    """Text warm-start of the tiny model's LLM before stage 1 (irgpt/train/lm_warmstart.py):
    a causal LM on the train split's conversation text, images removed, so that the
    frozen LLM of stage 1 knows the language as a pretrained one would. Tiny model only."""

    steps: int = 300
    """AdamW steps (~13 s on 2 cores at the demo scale); 0 = a random-init LLM."""
    lr: float = 3e-3
    batch_size: int = 32

    def __post_init__(self):
        if self.steps < 0 or self.batch_size < 1 or not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"steps: tiny_lm needs steps >= 0, batch_size >= 1 and a finite lr > 0, got "
                             f"{self.steps}, {self.batch_size}, {self.lr}")


@dataclass
class DeepSpeedConfig:
    zero_stage: Literal[0, 1, 2, 3] = 2
    """Decision (docs/method.md): ZeRO stage 2 by default."""
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
    tiny_lm: TinyLMConfig = field(default_factory=TinyLMConfig)
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=_stage2_default)
    lora: LoraConfig = field(default_factory=LoraConfig)
    num_workers: int = 2
    use_gpu: bool = False
    gpus_per_worker: int = 0
    max_length: int = 256
    """Tokens per sample; longer samples are truncated and counted."""
    log_every: int = 5
    val_every: int = 10
    """Optimizer steps between validation passes (besides the first and the last);
    0 = only at the start and the end of a stage."""
    val_limit: int = 256
    """Held-out rows per validation pass (the first by sample_id). Stage 1 uses the
    clean held-out captions: `val` split, infrared, not flagged `gt_misaligned`."""
    val_retrieval: int = 32
    """Stage 1: image-to-caption retrieval R@1 among this many held-out pairs, at the
    start and the end (each image ranks every candidate caption by the model's
    loss: N x N forwards); 0 = off."""
    checkpoint_every: int = 20
    """Optimizer steps between checkpoints."""
    num_to_keep: int = 2
    max_failures: int = 2
    storage_path: str | None = None
    """Ray Train storage (local dir, NFS or s3://); default: RUN_DIR/ray."""
    seed: int = 0

    def __post_init__(self):
        if self.stage2.train_llm:
            raise ValueError("stage2: train_llm applies to stage 1 only (stage 2 trains LoRA adapters on the LLM)")
        for name in ("val_every", "val_retrieval"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("val_limit", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")


@dataclass
class TuneConfig:
    space: str = "tune_spaces/default.yaml"
    num_samples: int = 4
    max_concurrent_trials: int = 1
    objective: Literal["benchmark_robust", "benchmark", "val_loss"] = "benchmark_robust"
    """benchmark_robust = psum - nsum_median (the nsum tasks' median errors, which one
    absurd count cannot dominate) on the validation split; benchmark = psum - nsum
    (the authors' mean errors); val_loss = the last stage's validation loss."""
    scheduler: Literal["asha", "none"] = "asha"
    search: Literal["random", "optuna"] = "random"
    stage2: bool = False
    """Also run a short stage 2 in each trial."""


@dataclass
class ExperimentConfig:
    """`make experiment` (jobs/experiment.py): the paper's Tables 3 and 4 over seeds."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    rows: list[str] | None = None
    """Ablation rows (`irgpt ablate --list`); null = all of Tables 3 and 4."""
    steps: int | None = None
    """Stage-1 budget per row (every tier shrunk alike); null = the config's epochs."""
    stage2_rows: list[str] = field(default_factory=lambda: ["none", "full"])
    """Rows whose stage-1 model also gets stage 2 and the benchmark (the rest: stage 1 only)."""
    stage2_seeds: list[int] = field(default_factory=lambda: [0])
    eval_limit: int | None = None
    """Benchmark rows per stage-2 evaluation (the first by id); null = all."""
    out: str = "docs/experiments.md"
    """Where the tables are written (the run's own copy: RUN_DIR/experiment/experiments.md)."""

    def __post_init__(self):
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")


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
    max_error_rate: float = 0.02
    """Generation errors (OOM, dtype, device: scored as empty answers) above this share
    of the rows make `irgpt eval run` fail after writing its outputs, and a Tune trial
    end as an error: a broken model must not get a valid, poor score."""

    def __post_init__(self):
        if not 0.0 <= self.max_error_rate <= 1.0:
            raise ValueError(f"max_error_rate: must be in [0, 1], got {self.max_error_rate}")


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
            "synth", "fe_train", "score_l1", "clip_warmup", "score_l2", "tier",
            "train_stage1", "train_stage2", "eval", "report",
        ]
    )
    """Pipeline stages to run, in order."""
