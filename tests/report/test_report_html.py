"""The run report end to end on a fake run directory with the real layout (docs/report.md)."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image
from report_fake_run import METRICS, make_run

from irgpt.report import write_report
from irgpt.report.benchmark import HEADERS, PAPER_ROW

HEADINGS = ["Run overview", "Data", "Lesson 1: IR–VIS distance", "Lesson 2: IR–text alignment",
            "Curriculum tiers", "Training", "Benchmark", "Tune", "Provenance"]
PNGS = ["3_lesson1_d_by_band", "4_lesson2_loss_scatter", "4_lesson2_alpha_weight", "5_curriculum_composition",
        "6_training_loss", "8_tune_objective"]
NAME = 'demo <script>alert("x")</script> & co'


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("full") / "run", name=NAME)
    path = write_report(run)
    return run, path, path.read_text(encoding="utf-8")


def _section(page: str, anchor: str) -> str:
    m = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert m, anchor
    return m.group(1)


def test_full_run_is_one_self_contained_page(full):
    run, path, page = full
    assert path == run / "report" / "report.html" and path.is_file()
    assert 'src="http' not in page and "href=\"http" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    imgs = re.findall(r"<img\b[^>]*>", page)
    assert len(imgs) == len(PNGS)
    assert all('src="data:image/png;base64,' in tag for tag in imgs)
    assert "not run" not in page and 'class="note error"' not in page and "Problems found" not in page


def test_every_section_heading_in_order(full):
    _, _, page = full
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings == HEADINGS


def test_pngs_are_valid_and_about_100_dpi(full):
    run, _, _ = full
    for name in PNGS:
        p = run / "report" / f"{name}.png"
        assert p.is_file() and p.stat().st_size > 0, name
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 200
            assert round(im.info["dpi"][0]) == 100


def test_benchmark_table_columns_numbers_and_markdown(full):
    run, _, page = full
    bench = _section(page, "benchmark")
    first_table = bench[bench.index("<table"):bench.index("</table>")]
    ths = re.findall(r"<th[^>]*>(.*?)</th>", first_table)
    assert ths[1:] == list(HEADERS) == ["Scene", "Rec.", "Gro.", "Rel.", "ReID", "Sec.", "psum",
                                        "Loc.", "A.C.", "P.C.", "nsum"]
    for t in METRICS["tasks"].values():
        assert f">{t['score']:.2f}<" in bench
        assert f">{100 * t['parse_rate']:.2f}<" in bench
    assert ">301.25<" in bench and ">57.50<" in bench
    assert all(f">{v:.2f}<" in bench for v in PAPER_ROW)
    assert "8B scale" in bench and "not comparable" in bench
    md = (run / "report" / "benchmark.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| |"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == list(HEADERS)
    assert "| 61.50 | 72.25 | 12.50 | 55.00 | 25.00 | 75.00 | 301.25 | 41.25 | 9.75 | 6.50 | 57.50 |" in md
    assert "485.79" in md and "4.39" in md


def test_text_from_files_is_escaped(full):
    _, _, page = full
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co" in page  # markupsafe escaping
    assert NAME not in page


def test_sections_show_the_numbers_a_reader_needs(full):
    _, _, page = full
    l1 = _section(page, "lesson1")
    assert "0.910" in l1 and "exact" in l1  # Spearman, estimator
    assert l1.index(">nir<") < l1.index(">swir<") < l1.index(">mwir<") < l1.index(">lwir<") < l1.index(">unknown<")
    l2 = _section(page, "lesson2")
    assert "auroc_loss_after" in l2 and "mean_weight_misaligned" in l2
    train = _section(page, "training")
    assert "Tiers seen during training" in train and "-61.3%" in train
    tune = _section(page, "tune")
    assert 'class="best"' in tune and "best.yaml" in tune
    overview = _section(page, "run")
    for stage in ("synth", "score_l1", "train_stage1", "eval"):
        assert f"<td>{stage}</td>" in overview
    assert "<details>" in _section(page, "provenance")


def test_partial_run_says_not_run_and_names_the_file(tmp_path, capsys):
    run = make_run(tmp_path / "partial", parts=("data", "scores_l1"))
    page = write_report(run).read_text()
    assert re.findall(r"<h2>(.*?)</h2>", page) == HEADINGS
    for anchor, looked_for in [("lesson2", "RUN_DIR/scores_l2/manifest.json"),
                               ("curriculum", "RUN_DIR/tiers/manifest.json"),
                               ("training", "RUN_DIR/train/summary.json"),
                               ("benchmark", "RUN_DIR/eval/metrics.json"),
                               ("tune", "RUN_DIR/tune/trials.csv"),
                               ("provenance", "RUN_DIR/run.json")]:
        body = _section(page, anchor)
        assert "not run" in body and looked_for in body, anchor
    assert page.count("<img") == 1  # the Lesson 1 histograms
    assert not (run / "report" / "benchmark.md").exists()
    assert capsys.readouterr().err == ""  # absent stages are not problems


def test_corrupt_inputs_give_error_notes_and_warnings(tmp_path, capsys):
    run = make_run(tmp_path / "bad", parts=("run", "data", "scores_l2", "tiers", "train", "eval", "tune"))
    (run / "run.json").write_text("{not json")
    (run / "eval" / "metrics.json").write_text("[1, 2]")
    (run / "scores_l2" / "part-00000.parquet").write_bytes(b"garbage")
    with open(run / "train" / "stage1" / "metrics.jsonl", "a") as f:
        f.write('{"global_step": 5, "lo')
    (run / "tune" / "trials.csv").write_text("a,b\n1,2\n")
    (run / "tiers" / "manifest.json").write_text(json.dumps({"tiers": "oops"}))
    page = write_report(run).read_text()
    err = capsys.readouterr().err
    for where in ("RUN_DIR/run.json", "RUN_DIR/eval/metrics.json", "RUN_DIR/scores_l2/part-00000.parquet",
                  "RUN_DIR/train/stage1/metrics.jsonl", "RUN_DIR/tune/trials.csv"):
        assert where in err and where in page, where
    assert 'class="note error"' in _section(page, "benchmark")
    assert "Problems found" in page
    assert page.count("<img") == 2  # the readable parts still plot: training, composition from the shards


def test_missing_column_skips_the_plot_with_a_note(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    run = make_run(tmp_path / "cols", parts=("data", "scores_l1", "scores_l2"))
    for p in (run / "scores_l1").glob("part-*.parquet"):
        pq.write_table(pq.read_table(p).drop(["d_ir_vis"]), p)
    for p in (run / "scores_l2").glob("part-*.parquet"):
        t = pq.read_table(p)
        pq.write_table(pa.table({"alpha": t.column("alpha")}), p)
    page = write_report(run).read_text()
    assert "no column d_ir_vis" in _section(page, "lesson1")
    l2 = _section(page, "lesson2")
    assert "No loss_before / loss_after columns" in l2 and l2.count("<img") == 1


def test_rerender_drops_stale_outputs(tmp_path):
    run = make_run(tmp_path / "re", parts=("data", "eval"))
    out = tmp_path / "elsewhere"
    assert write_report(run, out) == out.resolve() / "report.html"
    (out / "3_lesson1_d_by_band.png").write_bytes(b"stale")
    assert (out / "benchmark.md").exists()
    (run / "eval" / "metrics.json").unlink()
    write_report(run, out)
    assert not (out / "benchmark.md").exists() and not (out / "3_lesson1_d_by_band.png").exists()
    assert (out / "report.html").is_file()
