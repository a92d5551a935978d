"""One typed config tree (`Config`), loaded from YAML with `--set` overrides.

    cfg = load_config("configs/demo.yaml", ["curriculum.m=6"])
    cfg.curriculum.m            # 6
    Config.from_dict(cfg.to_dict()) == cfg
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from irgpt.config.loader import ConfigError, config_hash, from_dict, load, parse_override, to_dict
from irgpt.config.sections import (
    ActorPoolConfig,
    ClipWarmupConfig,
    CurriculumConfig,
    DataConfig,
    FeTrainConfig,
    ImportConfig,
    Lesson1Config,
    Lesson2Config,
    PacingConfig,
    ScoringConfig,
    SynthConfig,
    WeightsConfig,
)
from irgpt.config.train_sections import (
    DeepSpeedConfig,
    EvalConfig,
    ExperimentConfig,
    LoraConfig,
    RayConfig,
    RunConfig,
    StageConfig,
    TinyLMConfig,
    TrainConfig,
    TuneConfig,
)

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
"""A URI with a scheme (s3://, gs://, hdfs://, file://...)."""


@dataclass
class Config:
    """The whole tree; every YAML under configs/ loads into it."""

    data: DataConfig = field(default_factory=DataConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str | None = None) -> Config:
        return from_dict(cls, data, source)

    def hash(self) -> str:
        return config_hash(self)

    @property
    def run_dir(self) -> Path:
        """RUN_DIR = run.root/run.name (a local or shared path; an object-storage run.root is
        `irgpt pipeline`'s, which works in a local mirror of it)."""
        from irgpt import storage
        from irgpt.errors import CommandError

        if storage.is_uri(self.run.root):
            raise CommandError(f"run.root={self.run.root}: an object-storage run root is kept by `irgpt pipeline`; "
                               "this command needs a local or shared directory (set run.root, or pass --out)")
        return Path(self.run.root) / self.run.name

    @property
    def data_dir(self) -> Path:
        """`data.dir`, or RUN_DIR/data when it is null. An object-storage `data.dir` is
        fetched into this node's cache (`irgpt.storage.fetch`) and that copy returned."""
        from irgpt import storage

        return storage.fetch(self.data.dir) if self.data.dir else self.run_dir / "data"

    @property
    def data_location(self) -> str:
        """Where the dataset is, without fetching it: `data.dir`, or RUN_DIR/data (a path or URI)."""
        from irgpt import storage

        return self.data.dir or storage.join(self.run.root, self.run.name, "data")

    def input_data(self, given: str | Path | None, flag: str = "--data") -> Path:
        """The dataset a command reads: `given` (its `flag`), else `data_dir`.

        Raises `CommandError` naming the flag and the config keys to set when there is
        no dataset there (no manifest.json), instead of failing later on a missing file.
        """
        from irgpt import storage
        from irgpt.errors import CommandError

        path = storage.fetch(given) if given else self.data_dir
        if (path / "manifest.json").is_file():
            return path
        source = (f"{flag} {given}" if given else f"data.dir={self.data.dir}" if self.data.dir else
                  f"the pipeline's dataset RUN_DIR/data (run.root={self.run.root}, run.name={self.run.name}; "
                  "data.dir is null)")
        raise CommandError(f"no dataset at {path} (from {source}): pass {flag} DIR, or set data.dir "
                           "(a directory made by `irgpt data synth` or `irgpt data import`)")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults) and apply `a.b.c=value` overrides."""
    return load(Config, path, overrides)


__all__ = [
    "ActorPoolConfig", "ClipWarmupConfig", "Config", "ConfigError", "CurriculumConfig",
    "DataConfig", "DeepSpeedConfig", "EvalConfig", "ExperimentConfig", "FeTrainConfig", "ImportConfig",
    "Lesson1Config", "Lesson2Config", "LoraConfig", "PacingConfig", "RayConfig", "RunConfig",
    "ScoringConfig", "StageConfig", "SynthConfig", "TinyLMConfig", "TrainConfig", "TuneConfig", "WeightsConfig",
    "config_hash", "load_config", "parse_override",
]
