"""Per-task scoring, task inference and psum / nsum (irgpt.eval.score, irgpt.eval.tasks)."""

import pytest

from irgpt.errors import CommandError
from irgpt.eval.metrics import LOCATION_PENALTY as P
from irgpt.eval.readers import Sample
from irgpt.eval.score import format_table, score_all, score_records, summarise
from irgpt.eval.tasks import infer_benchmark_task, parse_task_label

SCENE_Q = "Which scene is shown?\n(A) desert (B) forest (C) city (D) sea"
SEC_Q = "Which targets are NOT in the image?\n(A) scooter (B) motor (C) person (D) hydrant"


def _samples(answers, question="", task=None, source="t.json"):
    return [Sample(str(i), a, question, task, (), source) for i, a in enumerate(answers)]


def test_multiple_choice_case_spacing_and_option_text():
    samples = _samples(["(B) forest"] * 5 + ["(C) city"], SCENE_Q)
    preds = {
        "0": "(b)   Forest",  # case and spacing
        "1": "The answer is ( B ) forest.",
        "2": "forest",  # no letter: option text from the question
        "3": "(A) forest",  # the letter decides: wrong
        "4": "I cannot tell",  # unparseable: wrong
        "5": "b",  # parsed, wrong
    }
    r = score_records("scene", samples, preds)
    # Correct: 0, 1, 2 -> 3 / 6 = 50 %; parsed: all but 4 -> 5 / 6.
    assert r["score"] == 50.0 and r["correct"] == 3
    assert (r["n"], r["n_parsed"], r["parse_rate"]) == (6, 5, pytest.approx(5 / 6))


def test_option_text_from_the_ground_truth_when_no_question():
    # Pairs layout without questions: the GT's own "(B) forest" names B.
    r = score_records("recognition", _samples(["(B) forest"]), {"0": "Forest."})
    assert r["score"] == 100.0


def test_security_exact_set():
    samples = _samples(["(A) scooter (B) motor (D) hydrant"] * 4, SEC_Q)
    preds = {
        "0": "(a) Scooter (B)motor  (d) HYDRANT",  # same set
        "1": "A, B and D",  # bare letters
        "2": "(A) scooter (B) motor",  # missing D: wrong
        "3": "(A) scooter (B) motor (C) person (D) hydrant",  # extra C: wrong
    }
    r = score_records("security", samples, preds)
    assert r["score"] == 50.0  # 2 of 4
    assert r["metric"] == "exact_set_accuracy_pct"


def test_relationship_and_reid():
    rel = score_records(
        "relationship",
        _samples(["yes", "no", "no", "yes"]),
        {"0": "Yes.", "1": "no", "2": "yes", "3": "maybe"},
    )
    assert rel["score"] == 50.0 and rel["n_parsed"] == 3
    reid = score_records("reid", _samples(["8", "3"]), {"0": "8", "1": "The match is image 5."})
    assert reid["score"] == 50.0


def test_missing_prediction_counts_as_wrong():
    r = score_records("relationship", _samples(["yes", "yes"]), {"0": "yes"})
    assert r["score"] == 50.0
    assert (r["n"], r["n_parsed"], r["missing_predictions"], r["missing_prediction_ids"]) == (
        2,
        1,
        1,
        ["1"],
    )


def test_unparseable_ground_truth_is_left_out_and_reported():
    r = score_records("relationship", _samples(["yes", "perhaps"]), {"0": "yes", "1": "yes"})
    assert (r["score"], r["n"], r["gt_unparseable"], r["gt_unparseable_ids"]) == (
        100.0,
        1,
        1,
        ["1"],
    )
    # A grounding GT without boxes has no defined score either.
    g = score_records("grounding", _samples(["<box>[]</box>"]), {"0": "<box>[]</box>"})
    assert (g["n"], g["gt_unparseable"], g["score"]) == (0, 1, None)


def test_grounding_near_miss_and_missing_box():
    samples = _samples(
        ["<box>[[0, 0, 10, 10], [20, 20, 30, 30]]</box>", "<box>[[0, 0, 10, 10]]</box>"]
    )
    preds = {
        # First GT box exact, second missing: 50 %.
        "0": "The target bounding box is <box>[[0, 0, 10, 10]]</box>.",
        # IoU 100/202 = 0.495, just under 0.5: 0 %.
        "1": "<box>[[0, 0, 10, 20.2]]</box>",
    }
    r = score_records("grounding", samples, preds, per_sample=True)
    assert r["score"] == 25.0  # (50 + 0) / 2
    assert r["precision_pct"] == 50.0  # 1 of 2 predicted boxes matched
    assert r["mean_iou"] == 1.0
    assert [s["value"] for s in r["samples"]] == [0.5, 0.0]


def test_location_and_counting_records():
    loc = score_records(
        "location",
        _samples(
            [
                "<ref>car</ref> at <pos>[(0, 0), (100, 0)]</pos>",
                "<ref>car</ref> at <pos>[(5, 5)]</pos>",
            ]
        ),
        {"0": "<ref>car</ref> at <pos>[(0, 0), (100, 30)]</pos>", "1": "no cars"},
    )
    # Errors 15 and P (unparseable) -> (15 + P) / 2.
    assert loc["score"] == pytest.approx((15 + P) / 2)
    assert (loc["unmatched_gt_points"], loc["unmatched_pred_points"], loc["matched_points"]) == (
        1,
        0,
        2,
    )
    cnt = score_records(
        "pedestrian_counting",
        _samples(["<num>10</num>", "<num>4</num>", "<num>7</num>"]),
        {"0": "<num>12</num>", "1": "lots of people", "2": "There are 7 people."},
        per_sample=True,
    )
    # Errors 2, 4 (unparseable read as 0), 0: MAE 2, MSE 20/3.
    assert (cnt["score"], cnt["mse"]) == (2.0, pytest.approx(20 / 3))
    assert [s["value"] for s in cnt["samples"]] == [2.0, 4.0, 0.0]
    assert cnt["higher_is_better"] is False


def test_empty_predictions():
    r = score_records("aerial_counting", _samples(["<num>3</num>", "<num>5</num>"]), {})
    assert (r["score"], r["parse_rate"], r["missing_predictions"]) == (4.0, 0.0, 2)
    g = score_records("grounding", _samples(["<box>[[0, 0, 1, 1]]</box>"]), {"0": ""})
    assert (g["score"], g["parse_rate"], g["precision_pct"]) == (0.0, 0.0, None)


@pytest.mark.parametrize(
    "answer, question, names, task",
    [
        ("<num>21</num>", "Calculate the number of cars in the picture.", [], "aerial_counting"),
        ("<num>77</num>", "How many people are in the crowd?", [], "pedestrian_counting"),
        ("<num>21</num>", "How many?", ["AerialCounting.json"], "aerial_counting"),
        (
            "<num>21</num>",
            "How many cars?",
            ["PedestrianCounting.json"],
            "pedestrian_counting",
        ),  # name first
        ("The target bounding box is <box>[[1, 2, 3, 4]]</box>.", "", [], "grounding"),
        ("<ref>car</ref> at <pos>[(1, 2)]</pos>", "", [], "location"),
        ("Yes.", "Is there a car on the right side of the first person?", [], "relationship"),
        ("8", "", [], "reid"),
        ("(A) scooter (B) motor (D) hydrant", "", [], "security"),
        ("(B) forest", SCENE_Q, [], "scene"),
        ("(B) forest", "What is this?", ["SceneClassification.json"], "scene"),
        ("(C) horse", "What is the object in the picture?", ["rec.json"], "recognition"),
    ],
)
def test_infer_task(answer, question, names, task):
    assert infer_benchmark_task(answer, question, names)[0] == task


def test_infer_task_unknown():
    assert infer_benchmark_task("<num>3</num>", "How many?", [])[0] is None
    assert infer_benchmark_task("a forest", "")[0] is None


def test_normalise_task():
    assert parse_task_label("A.C.") == "aerial_counting"
    assert parse_task_label(" Rec. ") == "recognition"
    assert parse_task_label("pedestrian-counting") == "pedestrian_counting"
    with pytest.raises(ValueError, match="unknown task"):
        parse_task_label("colour")


def test_score_all_infers_one_task_per_file_and_reports_how():
    samples = _samples(["<num>21</num>", "<num>5</num>"], "How many?", source="AerialCounting.json")
    report = score_all(samples, {"0": "<num>20</num>", "1": "<num>5</num>", "x": "?"})
    res = report["tasks"]["aerial_counting"]
    assert res["score"] == 0.5  # (1 + 0) / 2
    assert "inferred from 2 ground-truth answers" in res["task_source"]
    assert "AerialCounting.json" in res["task_source"]
    assert (report["nsum"], report["nsum_tasks"], report["psum"]) == (
        0.5,
        ["aerial_counting"],
        None,
    )
    assert (report["unknown_prediction_ids"], report["unknown_prediction_id_examples"]) == (
        1,
        ["x"],
    )


def test_single_option_security_answers_stay_security():
    samples = _samples(["(A) scooter (B) motor", "(C) person"], SEC_Q)
    report = score_all(samples, {"0": "(A) scooter (B) motor", "1": "(C) person"})
    assert list(report["tasks"]) == ["security"]
    assert report["tasks"]["security"]["score"] == 100.0


def test_score_all_rejects_a_file_that_looks_like_two_tasks():
    with pytest.raises(
        CommandError, match=r"look like several tasks \(grounding: 1, relationship: 1\)"
    ):
        score_all(_samples(["yes", "<box>[[1, 2, 3, 4]]</box>"]), {})
    with pytest.raises(CommandError, match=r"cannot infer the task of record id '0'.*--task"):
        score_all(_samples(["<num>3</num>"], "How many?"), {})


def test_score_all_task_fields_and_task_option():
    samples = [
        Sample("a", "yes", task="relationship"),
        Sample("b", "8", task="reid"),
        Sample("c", "<num>4</num>", "How many?"),  # untagged: --task decides
    ]
    preds = {"a": "yes", "b": "7", "c": "<num>6</num>"}
    report = score_all(samples, preds, task="reid")
    # Only the reid record and the untagged one (as reid) are scored.
    assert list(report["tasks"]) == ["reid"]
    assert report["skipped_other_tasks"] == 1
    assert report["tasks"]["reid"]["n"] == 2
    assert report["tasks"]["reid"]["score"] == 0.0  # 7 != 8 and 6 != 4
    assert report["tasks"]["reid"]["task_source"] == "--task; record 'task' field"


def test_summarise():
    results = {
        "scene": {"score": 50.0},
        "reid": {"score": 100.0},
        "location": {"score": 15.0, "median_error": 12.0},
        "aerial_counting": {"score": 3.0, "median_error": 1.0, "far_off_share": 0.25, "n": 8},
        "grounding": {"score": None},  # no scorable samples: not present
    }
    assert summarise(results) == {
        "psum": 150.0,
        "psum_tasks": ["scene", "reid"],
        "nsum": 18.0,
        "nsum_tasks": ["location", "aerial_counting"],
        "nsum_median": 13.0,
        "far_off_share": 0.25,
    }


def test_one_absurd_count_dominates_nsum_but_not_its_robust_companions():
    """The issue's case: a 15-digit count makes nsum meaningless; nsum_median and the
    far-off share still rank the answers."""
    samples = [Sample(str(i), str(gt), task="pedestrian_counting") for i, gt in enumerate([3, 5, 2, 4, 6])]
    sane = {"0": "3", "1": "4", "2": "2", "3": "5", "4": "6"}
    absurd = {**sane, "4": "143476810144902"}
    a, b = score_all(samples, sane), score_all(samples, absurd)
    assert a["nsum"] == pytest.approx(0.4) and b["nsum"] > 1e13
    assert a["nsum_median"] == 0.0 and b["nsum_median"] == 1.0  # errors 0,1,0,1,0 vs 0,1,0,1,huge
    assert a["far_off_share"] == 0.0 and b["far_off_share"] == pytest.approx(0.2)
    assert "20.0% of counting answers more than 10x off" in format_table(b)


def test_format_table_columns_in_paper_order():
    report = score_all([Sample("0", "yes", task="relationship")], {"0": "yes"})
    table = format_table(report)
    header = table.splitlines()[0].split()
    assert header == [
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
    score_row = table.splitlines()[1].split()
    assert score_row == ["score", "-", "-", "-", "100.00", "-", "-", "100.00", "-", "-", "-", "-"]
