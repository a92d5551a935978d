"""The typed config tree: one dataclass per section, a docstring line per field.

Defaults are the embedded demo's (tiny models, synthetic data, local Ray on 2
CPUs); real-scale runs override them in `configs/*.yaml`. Decisions taken
where the paper is silent are marked "Decision (docs/method.md)".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Band = Literal["vis", "vis_gray", "nir", "swir", "mwir", "lwir", "unknown"]


# ----------------------------------------------------------------- data ----
@dataclass
class SynthConfig:
    """`irgpt data synth`: procedural infrared scenes with known ground truth."""

    num_samples: int = 400
    """Number of scenes; each scene yields rows for several bands and tasks."""
    seed: int = 0
    image_size: int = 64
    """Square image side in pixels."""
    misaligned_fraction: float = 0.2
    """Fraction of infrared caption rows whose caption describes another scene
    (flagged only in `gt_misaligned`)."""
    benchmark_fraction: float = 0.2
    """Fraction of scenes held out as the `benchmark` split."""
    val_fraction: float = 0.1
    """Fraction of scenes held out as the `val` split (validation loss, Tune)."""
    paired_vis_fraction: float = 0.5
    """Fraction of infrared rows that get a paired visible image (`paired_vis_id`)."""
    black_hot_fraction: float = 0.2
    """Fraction of thermal (MWIR/LWIR) images rendered black-hot."""
    bands: list[str] = field(default_factory=lambda: ["vis", "vis_gray", "nir", "swir", "mwir", "lwir"])
    """Bands rendered for every scene."""
    num_workers: int = 2
    """Parallel processes; the output does not depend on it."""
    shard_scenes: int = 100
    """Scenes per Parquet shard (and per parallel task)."""

    def __post_init__(self):
        if self.num_samples < 1:
            raise ValueError("num_samples must be >= 1")
        if self.image_size < 16:
            raise ValueError("image_size must be >= 16")
        for name in ("misaligned_fraction", "benchmark_fraction", "val_fraction", "paired_vis_fraction", "black_hot_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")


@dataclass
class ImportConfig:
    """`irgpt data import`: reading LLaVA / InternVL conversation files."""

    max_pixels: int = 64_000_000
    """Images with more pixels are rejected (decompression-bomb guard)."""
    max_side: int = 16384
    """Images with a side longer than this are rejected."""
    max_file_bytes: int = 256 * 1024 * 1024
    """Image files larger than this (by `stat`, before any byte is read) are rejected."""
    stretch_low_percentile: float = 0.5
    """16-bit radiometric images: this percentile maps to 0 ..."""
    stretch_high_percentile: float = 99.5
    """... and this one to 255 (linear stretch, clipped)."""
    embed_images: bool = True
    """Store encoded image bytes in the Parquet rows (else only `image_path`)."""


@dataclass
class DataConfig:
    """Where the samples live and how they are made."""

    dir: str | None = None
    """Dataset directory (Parquet shards + manifest.json); null = RUN_DIR/data
    (run.root/run.name/data), where the pipeline's `synth` stage writes."""
    synth: SynthConfig = field(default_factory=SynthConfig)
    importer: ImportConfig = field(default_factory=ImportConfig)


# -------------------------------------------------------------- scoring ----
@dataclass
class ActorPoolConfig:
    """How a scorer runs on Ray Data's actor pool."""

    batch_size: int = 64
    concurrency: int = 2
    """Number of actors (each loads the model once)."""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    part_rows: int = 512
    """Rows per committed output part (the unit of resumption)."""


@dataclass
class FeTrainConfig:
    """`irgpt fe-train`: MAE pre-training on infrared + visible grayscale."""

    epochs: int = 18
    """18 x ~1,400 images (400 scenes): ~100 s on 2 CPU cores; 6 epochs left the tiny
    MAE's pooled features dominated by image brightness (Lesson 1 Spearman 0.39 vs 0.65)."""
    lr: float = 1.5e-3
    batch_size: int = 64
    mask_ratio: float = 0.75
    """Share of tokens removed: ViTMAE, and InfMAE with `masking: random`."""
    masking: Literal["skip4", "random"] = "skip4"
    """InfMAE only: `skip4` (the release: sort tokens by intensity, keep every 4th) or
    `random` (MAE's uniform masking at `mask_ratio`). ViTMAE always masks at random."""
    num_workers: int = 1
    """Ray Train workers."""
    use_gpu: bool = False
    seed: int = 0
    max_failures: int = 2
    """Worker-group restarts from the last checkpoint (one per epoch) after a dead worker."""


@dataclass
class Lesson1Config:
    """Lesson 1 (docs/method.md): IR-VIS distance from MAE features (Eq. 1-3)."""

    extractor: str = "tiny"
    """`tiny` (random init), an InfMAE checkpoint file (`checkpoint-N.pth`), a directory
    `irgpt fe-train` wrote, or a local HF ViTMAE directory."""
    extractor_kind: Literal["auto", "vitmae", "infmae"] = "auto"
    """`auto` detects the kind from what `extractor` holds (`tiny` means a tiny ViTMAE);
    `infmae` with `tiny` builds a tiny InfMAE of the release's topology; a kind that
    contradicts the files is an error."""
    fe_train: FeTrainConfig = field(default_factory=FeTrainConfig)
    estimator: Literal["auto", "exact", "rff"] = "auto"
    """`exact` kernel trick O(n*m); `rff` random Fourier features O(n*D);
    `auto` picks rff when n*m > exact_max_pairs."""
    exact_max_pairs: int = 25_000_000
    rff_dim: int = 4096
    bandwidth_sample: int = 2000
    """Samples (seeded) for the median-heuristic bandwidth."""
    visible_data: str | None = None
    """Separate visible reference dataset; default: vis/vis_gray rows of the data."""
    seed: int = 0
    pool: ActorPoolConfig = field(default_factory=ActorPoolConfig)


@dataclass
class WeightsConfig:
    """Eq. 5 adaptive weights and documented variants."""

    temperature: float = 1.0
    """tau dividing both sigmoid arguments; 1 is Eq. 5 exactly."""
    normalize: bool = False
    """Rescale weights to mean 1 (off = paper)."""
    clip: list[float] | None = None
    """[low, high] bounds applied last; null = none (paper)."""

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError("weights.temperature must be > 0")
        if self.clip is not None and (len(self.clip) != 2 or self.clip[0] > self.clip[1]):
            raise ValueError(f"weights.clip must be [low, high] with low <= high, got {self.clip}")


@dataclass
class ClipWarmupConfig:
    """`irgpt clip-warmup`: short CLIP fine-tune on the IR image-text pairs."""

    epochs: int = 10
    """Decision: the paper gives no length; a tiny random-init CLIP needs
    ~200+ optimizer steps (docs/stack.md). Real CLIP: 1 epoch."""
    lr: float = 1e-3
    batch_size: int = 128
    weight_decay: float = 0.1
    num_workers: int = 1
    use_gpu: bool = False
    seed: int = 0
    max_failures: int = 2
    """Worker-group restarts from the last checkpoint (one per epoch) after a dead worker."""


@dataclass
class Lesson2Config:
    """Lesson 2 (docs/method.md): CLIP loss before / after warm-up (Eq. 4-5)."""

    model: str = "irgpt-tiny-clip"
    """open_clip architecture name (tiny config shipped in the package)."""
    pretrained: str | None = None
    """Local checkpoint file for real runs; null = random init."""
    context_length: int = 77
    pool_size: int = 255
    """K fixed seeded negatives per sample (Decision, docs/method.md)."""
    warmup: ClipWarmupConfig = field(default_factory=ClipWarmupConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    rank_by: Literal["loss_after", "loss_before", "alpha"] = "loss_after"
    seed: int = 0
    pool: ActorPoolConfig = field(default_factory=ActorPoolConfig)


@dataclass
class ScoringConfig:
    lesson1: Lesson1Config = field(default_factory=Lesson1Config)
    lesson2: Lesson2Config = field(default_factory=Lesson2Config)


# ----------------------------------------------------------- curriculum ----
@dataclass
class PacingConfig:
    """Optional pacing in DeepSpeed's curriculum terms."""

    function: Literal["none", "fixed_discrete", "fixed_linear", "fixed_root"] = "none"
    total_curriculum_step: int = 0
    root_degree: int = 2


@dataclass
class CurriculumConfig:
    """Composite ranking, M tiers, schedule (docs/method.md "Curriculum schedule")."""

    m: int = 4
    """Number of difficulty tiers (Decision: 4; Tune searches it)."""
    lam: float = 0.5
    """lambda in r = lambda * rank_l1 + (1 - lambda) * rank_l2."""
    use_l1: bool = True
    use_l2: bool = True
    anti_l1: bool = False
    anti_l2: bool = False
    weights: bool = True
    """Use the Eq. 5 `weight` column (off = all weights 1)."""
    schedule: Literal["ascending_stratified_random", "ascending", "descending", "random"] = (
        "ascending_stratified_random"
    )
    mode: Literal["sequential", "cumulative"] = "sequential"
    pacing: PacingConfig = field(default_factory=PacingConfig)
    seed: int = 0

    def __post_init__(self):
        if self.m < 1:
            raise ValueError("curriculum.m must be >= 1")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError("curriculum.lam must be in [0, 1]")
        if not (self.use_l1 or self.use_l2):
            raise ValueError("curriculum: at least one of use_l1 / use_l2 must be true")
