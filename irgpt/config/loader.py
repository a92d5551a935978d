"""Strict conversion between plain dicts / YAML files and the typed config tree.

Every key is checked against the dataclass fields: an unknown key or a value
of the wrong type fails with a message that names the dotted key, the file it
came from, and the closest valid key (difflib). Dicts round-trip:
`from_dict(to_dict(cfg)) == cfg`, which is what Ray and Tune pass around.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from irgpt.errors import CommandError

T = TypeVar("T")


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading `1e-3` (an exponent without a dot) as a float.

    YAML 1.1, which PyYAML implements, reads it as text; YAML 1.2 and every
    user writing `lr: 1e-3` mean a number.
    """


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789.")
)


def _mapping_without_duplicates(loader: _YamlLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """A mapping whose keys must be unique: PyYAML keeps the last of two equal keys silently."""
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark,
                f"duplicate key {key!r} (first at line {seen[key] + 1}); a repeated key would silently replace "
                "the first value", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_yaml(text: str) -> Any:
    """YAML text -> Python values: the one YAML reader of configs, overrides and search spaces."""
    return yaml.load(text, Loader=_YamlLoader)  # a SafeLoader subclass: no arbitrary objects


class ConfigError(CommandError):
    """A config key or value that does not fit the typed tree."""


def _where(source: str | None) -> str:
    return f" (in {source})" if source else ""


def _convert(value: Any, hint: Any, key: str, source: str | None) -> Any:
    """Check `value` against the type `hint`; return the typed value."""
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}{_where(source)}: " + "; ".join(errors))
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint_txt = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{key}{_where(source)}: {value!r} is not one of {list(choices)}{hint_txt}"
            )
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}{_where(source)}: expected a list, got {type(value).__name__} {value!r}")
        (item_hint, *_rest) = get_args(hint) or (Any,)
        return [_convert(v, item_hint, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}{_where(source)}: expected a mapping, got {type(value).__name__}")
        _k, v_hint = get_args(hint) or (str, Any)
        return {str(k): _convert(v, v_hint, f"{key}.{k}", source) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}{_where(source)}: expected a section (mapping), got {value!r}")
        return _build(hint, value, key, source)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}{_where(source)}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}{_where(source)}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}{_where(source)}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}{_where(source)}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {hint!r} for {key}")


def _build(cls: type[T], data: dict, prefix: str, source: str | None) -> T:
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for raw_key, value in data.items():
        key = str(raw_key)
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
            suggestion = f"{prefix}.{close[0]}" if prefix and close else (close[0] if close else None)
            hint = f"; did you mean {suggestion!r}?" if suggestion else f"; valid keys: {names}"
            raise ConfigError(f"unknown config key {dotted!r}{_where(source)}{hint}")
        kwargs[key] = _convert(value, hints[key], dotted, source)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ validation
        field_name = str(exc).split(":", 1)[0]
        if field_name in names:  # "lr: must be > 0" -> "train.stage1.lr: must be > 0"
            dotted = f"{prefix}.{field_name}" if prefix else field_name
            raise ConfigError(f"{dotted}{_where(source)}:{str(exc).split(':', 1)[1]}") from exc
        raise ConfigError(f"{prefix or 'config'}{_where(source)}: {exc}") from exc


def from_dict(cls: type[T], data: dict | None, source: str | None = None) -> T:
    """Build the dataclass `cls` from a nested dict, strictly."""
    return _build(cls, data or {}, "", source)


def to_dict(cfg: Any) -> dict:
    """The config as a plain nested dict (JSON/YAML-serialisable)."""
    return dataclasses.asdict(cfg)


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge: values in `override` win; sections merge."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(item: str) -> dict:
    """`a.b.c=value` -> {"a": {"b": {"c": value}}}; the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. curriculum.m=4")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: empty key part in {key!r}")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML: {exc}") from exc
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the config as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def load(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Load `cls` from an optional YAML file plus `--set` overrides.

    Errors name the file for keys from the file and `--set` for overrides.
    """
    data: dict = {}
    if path is not None:
        data = read_yaml(path)
        from_dict(cls, data, source=str(path))  # report file errors against the file
    for item in overrides or []:
        override = parse_override(item)
        try:
            from_dict(cls, merge(data, override), source=f"--set {item}")
        except ConfigError:
            raise
        data = merge(data, override)
    return from_dict(cls, data, source=str(path) if path else None)


def config_hash(cfg: Any) -> str:
    """A short, stable hash of a config (or any JSON-able value)."""
    payload = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
