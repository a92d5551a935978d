"""The code layout the README describes ("How the code is laid out"), enforced.

Each package may import only the packages below it; command-line modules
(`cli.py`, `*_cli.py`) wire commands and may import any package below the
pipeline. No module grows past 450 lines, and nothing refers to a file
outside the repository.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "irgpt"
BASE = {"errors", "storage", "config", "cli_util", "progress", "ray_utils", "irgpt"}
ALLOWED = {
    "errors": set(), "storage": {"errors"}, "config": {"errors", "storage"}, "cli_util": {"errors"}, "progress": set(), "ray_utils": {"config"},
    "data": {"config", "errors", "storage", "progress", "irgpt"},
    "models": BASE | {"data"},
    "scoring": BASE | {"data", "models"},
    "curriculum": BASE | {"data", "scoring"},
    "train": BASE | {"data", "models", "curriculum"},
    "eval": BASE | {"data", "models"},
    "report": BASE | {"data", "eval"},
    "pipeline": BASE | {"data", "models", "scoring", "curriculum", "train", "eval", "report"},
    "pipeline_check": BASE | {"data", "models", "train", "pipeline"},
    "tune": BASE | {"data", "models", "scoring", "curriculum", "train", "eval", "report", "pipeline"},
}
CLI_ALLOWED = BASE | {"data", "models", "scoring", "curriculum", "train", "eval", "report", "pipeline",
                      "pipeline_check", "tune"}
MAX_LINES = 450


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).parts
        yield path, (rel[0] if len(rel) > 1 else rel[0][:-3])


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "irgpt":
                out.add(parts[1] if len(parts) > 1 else "irgpt")
        if isinstance(node, ast.ImportFrom) and node.module == "irgpt":  # `from irgpt import storage`
            modules = {a.name for a in node.names if (PACKAGE / f"{a.name}.py").is_file() or (PACKAGE / a.name).is_dir()}
            out |= modules
            if modules == {a.name for a in node.names}:
                out.discard("irgpt")
    return out


def test_every_package_imports_only_what_lies_below_it():
    wrong = []
    for path, package in _modules():
        if package in ("cli", "__main__", "__init__"):
            continue
        is_cli = path.name == "cli.py" or path.name.endswith("_cli.py")
        allowed = CLI_ALLOWED if is_cli else ALLOWED[package]
        wrong += [f"{path.relative_to(REPO)} imports irgpt.{t}" for t in _imports(path) - allowed - {package}]
    assert not wrong, "\n".join(wrong)


def test_no_module_is_over_the_size_limit():
    long = [f"{p.relative_to(REPO)}: {n}" for p, _ in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, long


# Spelled in pieces, so this file does not match itself (a repository-wide grep finds nothing either).
OUTSIDE = {"parent-folder": "../" + "shared", "method": "METHOD" + ".md", "stack": "STACK_" + "NOTES",
           "style": "STYLE" + ".md"}


@pytest.mark.parametrize("needle", list(OUTSIDE.values()), ids=list(OUTSIDE))
def test_the_repository_refers_to_no_file_outside_it(needle):
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode != 0:  # not a git checkout (an sdist): the package and docs still must not
        files = [*PACKAGE.rglob("*.py"), *(REPO / "docs").rglob("*.md"), REPO / "README.md"]
    else:
        files = [REPO / f for f in tracked.stdout.split() if (REPO / f).is_file()]
    hits = []
    for f in files:
        if f.suffix in (".py", ".md", ".yaml", ".yml", ".toml", ".txt", "") and f.stat().st_size < 2_000_000:
            try:
                if needle in f.read_text(encoding="utf-8"):
                    hits.append(str(f.relative_to(REPO)))
            except UnicodeDecodeError:
                continue
    assert not hits, hits
