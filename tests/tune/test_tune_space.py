"""Search spaces: every file in tune_spaces/ loads; bad files fail naming the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from irgpt.config import Config, ConfigError
from irgpt.tune.space import apply_overrides, load_space

SPACES = sorted((Path(__file__).resolve().parents[2] / "tune_spaces").glob("*.yaml"))


def test_the_three_spaces_exist():
    assert {p.name for p in SPACES} >= {"default.yaml", "tiers.yaml", "smoke.yaml"}


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_every_space_loads_and_begins_with_its_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# irgpt tune ") and f"--space tune_spaces/{path.name}" in first
    space = load_space(path)
    assert space.keys
    domains = space.param_space()
    assert set(domains) == set(space.keys)


def test_default_space_covers_the_documented_keys():
    space = load_space(next(p for p in SPACES if p.name == "default.yaml"))
    assert set(space.keys) == {
        "curriculum.m", "curriculum.lam", "curriculum.schedule", "train.stage1.lr",
        "scoring.lesson2.weights.temperature", "scoring.lesson2.weights.normalize", "scoring.lesson2.weights.clip"}
    p = space.params
    assert (p["curriculum.m"].type, p["curriculum.m"].low, p["curriculum.m"].high) == ("randint", 2, 8)
    assert p["train.stage1.lr"].type == "loguniform" and p["train.stage1.lr"].low == pytest.approx(1e-4)
    assert space.encoded == {"scoring.lesson2.weights.clip"}


def test_domains_are_ray_tune_objects():
    from ray.tune.search.sample import Categorical, Float, Integer

    space = load_space(next(p for p in SPACES if p.name == "default.yaml"))
    d = space.param_space()
    assert isinstance(d["curriculum.m"], Integer) and isinstance(d["curriculum.lam"], Float)
    assert isinstance(d["scoring.lesson2.weights.clip"], Categorical)
    assert d["scoring.lesson2.weights.clip"].categories == ["null", "[0.2, 1.8]"]
    smoke = load_space(next(p for p in SPACES if p.name == "smoke.yaml"))
    assert smoke.param_space() == {"curriculum.m": {"grid_search": [2, 3]}} and smoke.grid_size() == 2


def test_sampled_values_apply_to_the_config():
    import numpy as np

    space = load_space(next(p for p in SPACES if p.name == "default.yaml"))
    cfg = apply_overrides(Config(), {"curriculum.m": np.int64(5), "curriculum.lam": np.float64(0.25),
                                     "scoring.lesson2.weights.clip": "[0.2, 1.8]",
                                     "scoring.lesson2.weights.normalize": True}, space.encoded)
    assert cfg.curriculum.m == 5 and type(cfg.curriculum.m) is int and cfg.curriculum.lam == 0.25
    assert cfg.scoring.lesson2.weights.clip == [0.2, 1.8] and cfg.scoring.lesson2.weights.normalize is True
    assert apply_overrides(Config(), {"scoring.lesson2.weights.clip": "null"}, space.encoded).scoring.lesson2.weights.clip is None


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text("# irgpt tune --space space.yaml\n" + text)
    return path


@pytest.mark.parametrize("text, words", [
    ("curriculum.m: {type: normal, low: 1, high: 2}\n", ["unknown type 'normal'", "curriculum.m"]),
    ("curriculum.mm: {type: randint, low: 2, high: 8}\n", ["curriculum.mm", "did you mean 'curriculum.m'"]),
    ("curriculum: {type: choice, values: [1]}\n", ["curriculum", "section"]),
    ("curriculum.schedule: {type: choice, values: [ascending, sideways]}\n", ["curriculum.schedule", "'sideways'"]),
    ("curriculum.m: {type: randint, low: 0, high: 3}\n", ["curriculum.m", "value 0"]),
    ("curriculum.lam: {type: uniform, low: 0.5, high: 1.5}\n", ["curriculum.lam", "value 1.5"]),
    ("curriculum.lam: {type: uniform, low: 0.5}\n", ["curriculum.lam", "missing ['high']"]),
    ("curriculum.lam: {type: uniform, low: 0.5, high: 0.2}\n", ["low must be < high"]),
    ("train.stage1.lr: {type: loguniform, low: 0, high: 1}\n", ["loguniform needs low > 0"]),
    ("curriculum.m: {type: grid, values: []}\n", ["non-empty list"]),
    ("curriculum.m: 4\n", ["expected a mapping"]),
    ("scoring.lesson2.weights.clip: {type: choice, values: [null, [1.8, 0.2]]}\n", ["weights.clip", "low <= high"]),
])
def test_bad_spaces_name_the_file_and_key(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_space(path)
    message = str(err.value)
    assert str(path) in message
    for w in words:
        assert w in message


def test_numbers_written_without_a_dot_are_accepted(tmp_path):
    space = load_space(_write(tmp_path, "train.stage1.lr: {type: loguniform, low: 1e-4, high: 1e-2}\n"))
    assert space.params["train.stage1.lr"].low == pytest.approx(1e-4)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ConfigError, match="search space not found"):
        load_space(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_space(_write(tmp_path, ""))
