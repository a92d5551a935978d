"""The typed config tree: YAML loading, overrides, errors, dict round-trip."""

from pathlib import Path

import pytest
import yaml

from irgpt.config import Config, ConfigError, load_config, parse_override

REPO = Path(__file__).resolve().parents[2]
ALL_YAML = sorted(
    p
    for folder in ("configs", "tune_spaces", "cluster")
    for p in (REPO / folder).rglob("*.yaml")
)


def test_defaults_round_trip_through_dict():
    cfg = Config()
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert cfg.hash() == Config.from_dict(cfg.to_dict()).hash()


def test_demo_yaml_loads_and_round_trips():
    cfg = load_config(REPO / "configs" / "demo.yaml")
    assert cfg.curriculum.m == 4
    assert cfg.ray.num_cpus == 2
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("path", [p for p in ALL_YAML if "configs" in p.parts], ids=lambda p: p.name)
def test_every_run_config_loads(path):
    load_config(path)


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(REPO)))
def test_every_yaml_starts_with_its_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# "), f"{path} must begin with a comment giving its command"
    list(yaml.safe_load_all(path.read_text()))  # parses


def test_overrides_apply_with_yaml_types():
    cfg = load_config(REPO / "configs" / "demo.yaml", ["curriculum.m=6", "scoring.lesson2.weights.clip=[0.1, 1.9]",
                                                        "ray.address=null", "curriculum.lam=1"])
    assert cfg.curriculum.m == 6
    assert cfg.scoring.lesson2.weights.clip == [0.1, 1.9]
    assert cfg.ray.address is None
    assert cfg.curriculum.lam == 1.0 and isinstance(cfg.curriculum.lam, float)


def test_unknown_key_names_key_file_and_closest(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("# irgpt x\ncurriculum:\n  mm: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    msg = str(err.value)
    assert "curriculum.mm" in msg and str(bad) in msg and "'curriculum.m'" in msg


def test_unknown_section_suggests_closest(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("curiculum:\n  m: 4\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'curiculum'.*did you mean 'curriculum'"):
        load_config(bad)


def test_wrong_type_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("curriculum:\n  m: four\n")
    with pytest.raises(ConfigError, match=r"curriculum\.m \(in .*bad\.yaml\): expected an integer, got 'four'"):
        load_config(bad)
    bad.write_text("train:\n  use_gpu: 1\n")
    with pytest.raises(ConfigError, match=r"train\.use_gpu .*expected true/false"):
        load_config(bad)


def test_bad_override_is_reported_against_set():
    with pytest.raises(ConfigError, match=r"curriculum\.schedule \(in --set curriculum\.schedule=ascnding\).*did you mean 'ascending'"):
        load_config(None, ["curriculum.schedule=ascnding"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("curriculum.m")


def test_validation_in_post_init_is_reported():
    with pytest.raises(ConfigError, match="curriculum.m must be >= 1"):
        load_config(None, ["curriculum.m=0"])
    with pytest.raises(ConfigError, match="at least one of use_l1 / use_l2"):
        load_config(None, ["curriculum.use_l1=false", "curriculum.use_l2=false"])


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


def test_exponent_without_a_dot_is_a_number(tmp_path):
    """YAML 1.1 (PyYAML) reads `1e-3` as a string; float keys accept it, in files and --set."""
    f = tmp_path / "lr.yaml"
    f.write_text("train:\n  stage1:\n    lr: 1e-3\n")
    assert load_config(f).train.stage1.lr == 1e-3
    assert load_config(None, ["train.stage2.lr=3e-3"]).train.stage2.lr == 3e-3
    with pytest.raises(ConfigError, match=r"train\.stage2\.lr \(in --set train\.stage2\.lr=3e-3x\): expected a number"):
        load_config(None, ["train.stage2.lr=3e-3x"])


@pytest.mark.parametrize("override, key, words", [
    ("train.stage1.lr=-1", "train.stage1.lr", "finite number > 0"),
    ("train.stage2.lr=0", "train.stage2.lr", "finite number > 0"),
    ("train.stage1.epochs=0", "train.stage1.epochs", ">= 1"),
    ("train.stage1.max_steps=0", "train.stage1.max_steps", ">= 1"),
    ("train.stage1.data_fraction=1.5", "train.stage1.data_fraction", "(0, 1]"),
    ("train.lora.r=0", "train.lora.r", "LoRA rank must be >= 1"),
    ("train.val_every=-1", "train.val_every", ">= 0"),
    ("train.tiny_lm.steps=-1", "train.tiny_lm.steps", "steps >= 0"),
    ("train.stage2.train_llm=true", "train.stage2", "stage 1 only"),
])
def test_values_are_checked_at_load_time_and_name_their_key(override, key, words):
    from irgpt.config import ConfigError, load_config

    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert str(err.value).startswith(key) and words in str(err.value)


def test_duplicate_keys_and_undecodable_files_are_refused(tmp_path):
    from irgpt.config import ConfigError, load_config

    dup = tmp_path / "dup.yaml"
    dup.write_text("train:\n  stage1:\n    lr: 1.0e-3\n  stage1:\n    epochs: 2\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'stage1' \(first at line 2\)"):
        load_config(dup)
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"train:\n  model: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not UTF-8 text \(byte 16"):
        load_config(bad)


def test_object_storage_uris_are_accepted_where_they_work_and_named_where_not(capsys, s3_bucket):
    """data.dir, run.root and model keys take s3:// URIs; a command that needs a local run
    directory says so; a missing object is an error naming the URI (no traceback)."""
    from irgpt.cli import main
    from irgpt.errors import CommandError

    cfg = load_config(None, ["data.dir=s3://bucket/data", "train.model=gs://b/m", "run.root=s3://bucket/runs"])
    assert (cfg.data.dir, cfg.train.model, cfg.run.root) == ("s3://bucket/data", "gs://b/m", "s3://bucket/runs")
    with pytest.raises(CommandError, match=r"run.root=s3://bucket/runs: an object-storage run root is kept by "
                                           r"`irgpt pipeline`"):
        _ = cfg.run_dir
    assert main(["tier", "--data", f"{s3_bucket}/missing", "--scores", "x", "--out", "y"]) == 2
    err = capsys.readouterr().err
    assert f"irgpt tier: error: {s3_bucket}/missing: not found" in err and "Traceback" not in err
