"""`irgpt tier` through its registrar (the way irgpt.cli.main wires it)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from irgpt.curriculum import cli
from irgpt.errors import CommandError


def parse(argv):
    parser = argparse.ArgumentParser(prog="irgpt")
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    return parser.parse_args(argv)


def test_tier_command_with_overrides(inputs, tmp_path, capsys):
    out = tmp_path / "tiers"
    args = parse(["tier", "--data", str(inputs["data"]), "--scores", str(inputs["l1"]), "--scores", str(inputs["l2"]),
                  "--out", str(out), "--set", "curriculum.m=3", "--set", "curriculum.anti_l2=true", "--engine", "local"])
    assert args.func(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_tiers"] == 3 and manifest["curriculum"]["anti_l2"] is True
    assert sorted(p.name for p in out.glob("tier=*")) == ["tier=0", "tier=1", "tier=2"]
    printed = capsys.readouterr().out
    assert "192 rows in 3 tiers" in printed
    assert "1 scored rows are outside the 'train' split and were not tiered" in printed  # the scored val row


def test_tier_command_user_errors(inputs, tmp_path):
    args = parse(["tier", "--data", str(inputs["data"]), "--scores", str(inputs["l1"]), "--out", str(tmp_path / "x")])
    with pytest.raises(CommandError, match="use_l2"):
        args.func(args)
    args = parse(["tier", "--data", str(inputs["data"]), "--scores", str(inputs["l1"]), "--out", str(tmp_path / "y"),
                  "--set", "curriculum.mm=3"])
    with pytest.raises(CommandError, match="did you mean"):
        args.func(args)


def test_registrar_is_cheap_to_import():
    code = "import sys, irgpt.curriculum.cli; print(sorted(m for m in ('ray', 'torch', 'pyarrow', 'numpy') if m in sys.modules))"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert got == "[]"
