"""`irgpt report RUN_DIR` and the pure helpers behind the report."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from report_fake_run import METRICS, make_run

from irgpt.errors import CommandError
from irgpt.report import benchmark as B
from irgpt.report import html as H
from irgpt.report.cli import register
from irgpt.report.plots import ordered


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="irgpt")
    register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_report_default_out(tmp_path, capsys):
    run = make_run(tmp_path / "run", parts=("run", "data", "eval"))
    args = _parser().parse_args(["report", str(run)])
    assert args.out is None
    assert args.func(args) == 0
    assert (run / "report" / "report.html").is_file()
    assert "report.html" in capsys.readouterr().out


def test_cli_report_out_option(tmp_path):
    run = make_run(tmp_path / "run", parts=("data",))
    args = _parser().parse_args(["report", str(run), "--out", str(tmp_path / "o")])
    assert args.func(args) == 0 and (tmp_path / "o" / "report.html").is_file()


def test_missing_run_dir_is_a_user_error(tmp_path):
    args = _parser().parse_args(["report", str(tmp_path / "nope")])
    with pytest.raises(CommandError, match="nope"):
        args.func(args)


def test_registrar_is_cheap_to_import():
    code = ("import sys, irgpt.report.cli, irgpt.report; "
            "bad = [m for m in ('matplotlib', 'pandas', 'pyarrow') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_benchmark_rows_follow_the_paper_columns():
    assert B.COLUMNS == ("scene", "recognition", "grounding", "relationship", "reid", "security", "psum",
                         "location", "aerial_counting", "pedestrian_counting", "nsum")
    (label, score), (_, parsed), (_, n), (paper, ref) = B.rows(METRICS)
    assert score[0] == 61.5 and score[6] == 301.25 and score[10] == 57.5
    assert parsed[0] == pytest.approx(98.0) and parsed[6] is None and n[1] == 40
    assert ref == list(B.PAPER_ROW) and ref[6] == 485.79 and ref[10] == 4.39
    assert "8B" in paper and B.coverage_notes(METRICS) == []


def test_benchmark_partial_tasks_are_flagged():
    metrics = {"psum": 61.5, "nsum": None, "tasks": {"scene": {"score": 61.5, "parse_rate": 1.0, "n": 3}}}
    cells = dict(zip(B.COLUMNS, B.rows(metrics)[0][1]))
    assert cells["scene"] == 61.5 and cells["recognition"] is None and cells["nsum"] is None
    notes = B.coverage_notes(metrics)
    assert any("psum sums 1 of 6" in n for n in notes) and any("nsum sums 0 of 3" in n for n in notes)
    assert "| – |" in B.markdown(metrics)


def test_html_helpers_escape_and_format():
    t = H.table(["<a>"], [["<b>"], [1234.5], [None]])
    assert "&lt;a&gt;" in t and "&lt;b&gt;" in t and "1,234.5" in t and "–" in t and "<b>" not in t
    assert H.fmt(0.123456) == "0.1235" and H.fmt(True) == "true" and H.fmt(485.79) == "485.79"
    assert ordered(["lwir", "zzz", "nir", "vis"]) == ["vis", "nir", "lwir", "zzz"]
