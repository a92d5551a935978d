"""Search spaces (`tune_spaces/*.yaml`) -> Ray Tune domains, and trial overrides -> `Config`.

A space file is a flat mapping from dotted config keys to a parameter spec:

    # irgpt tune --config configs/demo.yaml --space tune_spaces/default.yaml
    curriculum.m:         {type: randint, low: 2, high: 8}      # high exclusive: 2..7
    curriculum.lam:       {type: uniform, low: 0.0, high: 1.0}
    train.stage1.lr:      {type: loguniform, low: 1.0e-4, high: 1.0e-2}
    curriculum.schedule:  {type: choice, values: [ascending, ascending_stratified_random]}
    scoring.lesson2.weights.clip: {type: choice, values: [null, [0.2, 1.8]]}
    curriculum.m:         {type: grid, values: [2, 3]}          # tune.grid_search

Types map one to one onto `tune.randint` (high exclusive, as in Ray Tune and
numpy), `tune.uniform`, `tune.loguniform`, `tune.choice` and
`tune.grid_search`. Every key and every value a spec can produce is checked
against the typed config tree when the file is loaded (the bounds of a range,
every value of a choice), so a typo fails before any trial starts, with the
file and key in the message.

A choice or grid with a list or mapping among its values (weight clip bounds)
is *encoded*: Tune sees the values as JSON text (Optuna's categorical
distributions take scalars only, and the text reads well in trials.csv), and
`apply_overrides` decodes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from irgpt.config import Config, ConfigError
from irgpt.config.loader import load_yaml, merge

TYPES = {
    "randint": ("low", "high"),
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "choice": ("values",),
    "grid": ("values",),
}
"""Spec type -> its required fields."""


@dataclass(frozen=True)
class Param:
    """One searched config key."""

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    values: tuple = ()
    encoded: bool = False
    """Values travel through Tune as JSON text (see module doc)."""

    def samples(self) -> list:
        """Values that exercise the spec's edges (validation)."""
        if self.type == "randint":
            return [self.low, self.high - 1]
        if self.type in ("uniform", "loguniform"):
            return [self.low, self.high]
        return list(self.values)

    def domain(self):
        from ray import tune

        if self.type == "randint":
            return tune.randint(self.low, self.high)
        if self.type == "uniform":
            return tune.uniform(self.low, self.high)
        if self.type == "loguniform":
            return tune.loguniform(self.low, self.high)
        values = [json.dumps(v) for v in self.values] if self.encoded else list(self.values)
        return tune.choice(values) if self.type == "choice" else tune.grid_search(values)


@dataclass(frozen=True)
class Space:
    """A loaded, validated search space."""

    path: str
    params: dict[str, Param] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return list(self.params)

    @property
    def encoded(self) -> frozenset[str]:
        return frozenset(k for k, p in self.params.items() if p.encoded)

    @property
    def has_grid(self) -> bool:
        return any(p.type == "grid" for p in self.params.values())

    def grid_size(self) -> int:
        n = 1
        for p in self.params.values():
            if p.type == "grid":
                n *= len(p.values)
        return n

    def param_space(self) -> dict:
        """The `Tuner(param_space=...)` dict: dotted key -> Tune domain."""
        return {k: p.domain() for k, p in self.params.items()}


def _number(value: Any, where: str, name: str, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
    if integer:
        if float(value) != int(value):
            raise ConfigError(f"{where}: {name} must be an integer for randint, got {value!r}")
        return int(value)
    return float(value)


def parse_param(key: str, spec: Any, source: str) -> Param:
    """One `key: {type: ..., ...}` entry -> `Param` (shape only; see `validate`)."""
    where = f"{source}: {key}"
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"{where}: expected a mapping like {{type: uniform, low: 0, high: 1}}, got {spec!r}")
    kind = spec["type"]
    if kind not in TYPES:
        raise ConfigError(f"{where}: unknown type {kind!r}; expected one of {sorted(TYPES)}")
    fields = TYPES[kind]
    extra = sorted(set(spec) - set(fields) - {"type"})
    missing = [f for f in fields if f not in spec]
    if extra or missing:
        raise ConfigError(f"{where}: type {kind} takes {list(fields)}; "
                          + (f"missing {missing}" if missing else f"unexpected {extra}"))
    if kind in ("choice", "grid"):
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: values must be a non-empty list, got {values!r}")
        encoded = any(isinstance(v, (list, dict)) for v in values)
        return Param(key, kind, values=tuple(values), encoded=encoded)
    integer = kind == "randint"
    low = _number(spec["low"], where, "low", integer)
    high = _number(spec["high"], where, "high", integer)
    if not low < high:
        raise ConfigError(f"{where}: low must be < high, got low={low} high={high}"
                          + (" (randint's high is exclusive)" if integer else ""))
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: loguniform needs low > 0, got {low}")
    return Param(key, kind, low=low, high=high)


def _plain(value: Any) -> Any:
    """numpy scalars (what Tune's samplers return) -> Python values the config accepts."""
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def nested(key: str, value: Any) -> dict:
    """`a.b.c`, v -> {"a": {"b": {"c": v}}}."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"{key!r}: not a dotted config key")
    out: dict = {}
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _is_section(defaults: dict, key: str) -> bool:
    node: Any = defaults
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return isinstance(node, dict)


def apply_overrides(cfg: Config, params: dict, encoded: frozenset[str] | set[str] = frozenset(),
                    source: str = "tune trial") -> Config:
    """The base config with a trial's sampled values applied (dotted keys)."""
    data = cfg.to_dict()
    for key, value in params.items():
        value = json.loads(value) if key in encoded and isinstance(value, str) else _plain(value)
        data = merge(data, nested(key, value))
    return Config.from_dict(data, source=source)


def validate(space: Space, base: Config | None = None) -> None:
    """Apply every edge value of every param to `base` (default: the defaults)."""
    base = base or Config()
    defaults = base.to_dict()
    for key, param in space.params.items():
        if _is_section(defaults, key):
            raise ConfigError(f"{space.path}: {key}: is a config section, not a value; search one of its keys")
        for value in param.samples():
            raw = json.dumps(value) if param.encoded else value
            try:
                apply_overrides(base, {key: raw}, space.encoded)
            except ConfigError as exc:
                raise ConfigError(f"{space.path}: {key}: value {value!r} does not fit the config: {exc}") from None


def load_space(path: str | Path, base: Config | None = None) -> Space:
    """Read and validate a space file (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search space not found: {path} (see tune_spaces/)")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a mapping of dotted config keys to specs, got {type(data).__name__}")
    params = {str(k): parse_param(str(k), v, str(path)) for k, v in data.items()}
    space = Space(str(path), params)
    validate(space, base)
    return space
