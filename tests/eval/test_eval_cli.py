"""`irgpt eval score` end to end through irgpt.eval.cli.register."""

import argparse
import json
import time

import pytest

from irgpt.errors import CommandError
from irgpt.eval import cli
from irgpt.eval.metrics import LOCATION_PENALTY as P

SCENE_Q = "Which scene is shown?\n(A) desert (B) forest (C) city (D) sea"
REC_Q = "What is the object in the picture?\n(A) person (B) duck (C) horse (D) crocodile"
SEC_Q = "Which targets are NOT in the image?\n(A) scooter (B) motor (C) person (D) hydrant"

# (id, task, question, ground truth, prediction or None when missing)
ITEMS = [
    ("s1", "scene", SCENE_Q, "(B) forest", "the answer is (b)  Forest."),  # right
    ("s2", "scene", SCENE_Q, "(C) city", "Forest"),  # option text -> B: wrong
    ("r1", "recognition", REC_Q, "(C) horse", "( C ) Horse"),  # right
    (
        "g1",
        "grounding",
        "Where is the car?",
        "<box>[[0, 0, 10, 10], [20, 20, 30, 30]]</box>",
        "<box>[[0, 0, 10, 10]]</box>",
    ),
    ("rel1", "relationship", "Is there a car on the left?", "yes", "Yes."),  # right
    ("rel2", "relationship", "Is there a car on the right?", "no", "yes"),  # wrong
    ("id1", "reid", "Which cell matches?", "8", "8"),  # right
    (
        "sec1",
        "security",
        SEC_Q,
        "(A) scooter (B) motor (D) hydrant",
        "(a) Scooter (B) motor (d) hydrant",
    ),
    (
        "loc1",
        "location",
        "Locate all cars.",
        "<ref>car</ref> at <pos>[(0, 0), (100, 0)]</pos>",
        "<ref>car</ref> at <pos>[(0, 0), (100, 30)]</pos>",
    ),  # distances 0, 30 -> 15
    ("ac1", "aerial_counting", "How many cars?", "<num>21</num>", "<num>20</num>"),  # error 1
    ("ac2", "aerial_counting", "How many cars?", "<num>5</num>", None),  # missing -> error 5
    (
        "pc1",
        "pedestrian_counting",
        "How many people?",
        "<num>77</num>",
        "about 70 people",
    ),  # error 7
]


def _annotation(rid, task, question, answer):
    return {
        "id": rid,
        "task": task,
        "image": [f"/mnt/ir/{rid}.jpg"],
        "conversations": [
            {"from": "human", "value": f"<image>\n{question}"},
            {"from": "gpt", "value": answer},
        ],
    }


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="irgpt")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def files(tmp_path):
    ann = tmp_path / "benchmark.json"
    ann.write_text(json.dumps([_annotation(*item[:4]) for item in ITEMS], indent=2))
    pred = tmp_path / "pred.jsonl"
    lines = [{"id": rid, "answer": p} for rid, *_, p in ITEMS if p is not None]
    lines.append({"id": "zz", "answer": "not in the benchmark"})
    pred.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return ann, pred, tmp_path / "out" / "results.json"


def test_score_all_tasks_end_to_end(files, capsys):
    ann, pred, out = files
    assert (
        run_cli(
            [
                "eval",
                "score",
                "--predictions",
                str(pred),
                "--annotations",
                str(ann),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    scores = {t: r["score"] for t, r in report["tasks"].items()}
    assert scores == {
        "scene": 50.0,
        "recognition": 100.0,
        "grounding": 50.0,
        "relationship": 50.0,
        "reid": 100.0,
        "security": 100.0,
        "location": 15.0,
        "aerial_counting": 3.0,  # (1 + 5) / 2
        "pedestrian_counting": 7.0,
    }
    assert report["psum"] == 450.0  # 50 + 100 + 50 + 50 + 100 + 100
    assert report["nsum"] == 25.0  # 15 + 3 + 7
    assert report["psum_tasks"] == [
        "scene",
        "recognition",
        "grounding",
        "relationship",
        "reid",
        "security",
    ]
    assert report["nsum_tasks"] == ["location", "aerial_counting", "pedestrian_counting"]
    ac = report["tasks"]["aerial_counting"]
    assert (ac["n"], ac["parse_rate"], ac["missing_prediction_ids"]) == (2, 0.5, ["ac2"])
    assert (ac["mse"], ac["rmse"]) == (13.0, pytest.approx(13**0.5))  # (1 + 25) / 2
    assert report["tasks"]["grounding"]["precision_pct"] == 100.0
    assert report["tasks"]["grounding"]["mean_iou"] == 1.0
    loc = report["tasks"]["location"]
    assert (loc["matched_points"], loc["unmatched_gt_points"], loc["unmatched_pred_points"]) == (
        2,
        0,
        0,
    )
    assert report["tasks"]["scene"]["task_source"] == "record 'task' field"
    assert report["unknown_prediction_ids"] == 1
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0].split() == [
        "Scene",
        "Rec.",
        "Gro.",
        "Rel.",
        "ReID",
        "Sec.",
        "psum",
        "Loc.",
        "A.C.",
        "P.C.",
        "nsum",
    ]
    assert lines[1].split()[1:] == [
        "50.00",
        "100.00",
        "50.00",
        "50.00",
        "100.00",
        "100.00",
        "450.00",
        "15.00",
        "3.00",
        "7.00",
        "25.00",
    ]
    assert "1 prediction ids not in the annotations" in printed


def test_task_option_selects_one_task(files):
    ann, pred, out = files
    run_cli(
        [
            "eval",
            "score",
            "--predictions",
            str(pred),
            "--annotations",
            str(ann),
            "--task",
            "Scene",
            "--out",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert list(report["tasks"]) == ["scene"]
    assert (report["psum"], report["nsum"], report["nsum_tasks"]) == (50.0, None, [])
    assert report["skipped_other_tasks"] == 10


def test_pairs_layout_needs_no_annotations(tmp_path):
    pairs = tmp_path / "pedestrian_counting_pairs.json"
    pairs.write_text(
        json.dumps(
            [
                {"answer": "<num>12</num>", "label": "<num>10</num>"},
                {"answer": "no idea", "label": "<num>4</num>"},
            ]
        )
    )
    out = tmp_path / "r.json"
    run_cli(["eval", "score", "--predictions", str(pairs), "--out", str(out)])
    res = json.loads(out.read_text())["tasks"]["pedestrian_counting"]
    assert (res["score"], res["n"], res["parse_rate"]) == (3.0, 2, 0.5)  # (2 + 4) / 2
    assert "'pedestrian' in file name pedestrian_counting_pairs.json" in res["task_source"]


def test_user_errors_are_command_errors(files, tmp_path):
    ann, pred, _ = files
    with pytest.raises(CommandError, match="no such file"):
        run_cli(
            [
                "eval",
                "score",
                "--predictions",
                str(tmp_path / "none.jsonl"),
                "--annotations",
                str(ann),
            ]
        )
    with pytest.raises(CommandError, match="--task: unknown task 'bogus'"):
        run_cli(
            [
                "eval",
                "score",
                "--predictions",
                str(pred),
                "--annotations",
                str(ann),
                "--task",
                "bogus",
            ]
        )
    with pytest.raises(CommandError, match="has no 'label'"):
        run_cli(["eval", "score", "--predictions", str(pred)])


def test_eval_requires_a_subcommand():
    with pytest.raises(SystemExit):
        run_cli(["eval"])


def test_module_main_exit_codes(files, capsys):
    ann, pred, _ = files
    assert cli.main(["score", "--predictions", str(pred), "--annotations", str(ann)]) == 0
    assert cli.main(["score", "--predictions", str(pred), "--annotations", str(ann) + ".x"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_hostile_answers_file_scores_quickly(tmp_path):
    deep_box = "[" * 10_000 + "0, 0, 10, 10" + "]" * 10_000  # deep but within the 64 KiB prefix
    items = [
        (
            "c1",
            "aerial_counting",
            "<num>5</num>",
            "<num>" + "9" * 1_000_000 + "</num>",
        ),  # 1 MB number
        ("c2", "aerial_counting", "<num>3</num>", "9" * 1_000_000),
        ("g1", "grounding", "<box>[[0, 0, 10, 10]]</box>", "[" * 200_000),  # 200,000 open brackets
        ("g2", "grounding", "<box>[[0, 0, 10, 10]]</box>", "<box>" + deep_box + "</box>"),
        ("l1", "location", "<pos>[(1, 2)]</pos>", "[" * 100_000 + "(1, 2)" + "]" * 100_000),
        ("s1", "scene", "(B) forest", "(" * 200_000),
        ("r1", "relationship", "yes", "yes " * 250_000),
        ("k1", "security", "(A) x (B) y", "( " * 300_000),
    ]
    ann = tmp_path / "hostile_ann.jsonl"
    ann.write_text(
        "\n".join(json.dumps(_annotation(rid, task, "Q?", gt)) for rid, task, gt, _ in items)
    )
    pred = tmp_path / "hostile_pred.jsonl"
    pred.write_text("\n".join(json.dumps({"id": rid, "answer": p}) for rid, _, _, p in items))
    out = tmp_path / "r.json"
    start = time.perf_counter()
    run_cli(
        ["eval", "score", "--predictions", str(pred), "--annotations", str(ann), "--out", str(out)]
    )
    assert time.perf_counter() - start < 5.0  # generous for slow CI; well under 1 s here
    tasks = json.loads(out.read_text())["tasks"]
    # Over-long numbers are unparseable -> read as 0: errors 5 and 3, MAE 4.
    assert (tasks["aerial_counting"]["score"], tasks["aerial_counting"]["n_parsed"]) == (4.0, 0)
    # Open brackets: unparseable (0 %); deep nesting in the prefix: exact box (100 %).
    assert (tasks["grounding"]["score"], tasks["grounding"]["n_parsed"]) == (50.0, 1)
    # The point lies past the 64 KiB prefix: unparseable, error P.
    assert tasks["location"]["score"] == pytest.approx(P)
    assert (tasks["scene"]["score"], tasks["scene"]["n_parsed"]) == (0.0, 0)
    assert tasks["relationship"]["score"] == 100.0  # it does open with "yes"
    assert (tasks["security"]["score"], tasks["security"]["n_parsed"]) == (0.0, 0)
