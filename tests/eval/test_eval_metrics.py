"""Metric functions (irgpt.eval.metrics) against hand-worked examples."""

import math

import pytest

from irgpt.eval.metrics import (
    LOCATION_PENALTY,
    accuracy_pct,
    box_iou,
    counting_metrics,
    grounding_metrics,
    location_metrics,
    match_boxes,
    match_points,
)

P = LOCATION_PENALTY


def test_penalty_is_the_frame_diagonal():
    assert P == pytest.approx(1414.2135623730951)


def test_accuracy():
    assert accuracy_pct([True, False, True, True]) == 75.0
    assert accuracy_pct([False]) == 0.0
    assert accuracy_pct([]) is None


def test_box_iou():
    # Overlap [5, 10] x [0, 10] = 50; union 100 + 100 - 50 = 150.
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_iou((0, 0, 0, 10), (0, 0, 0, 10)) == 0.0  # zero area
    assert box_iou((10, 10, 0, 0), (0, 0, 10, 10)) == 0.0  # inverted corners


def test_grounding_threshold_boundary_and_near_miss():
    gt = [(0, 0, 10, 10)]
    # (0,0,10,20): inter 100, union 200 -> IoU exactly 0.5: a match (>=).
    assert match_boxes(gt, [(0, 0, 10, 20)]).matched == 1
    # (0,0,10,20.2): inter 100, union 202 -> IoU 0.495: a near miss.
    near = match_boxes(gt, [(0, 0, 10, 20.2)])
    assert near.matched == 0 and near.n_pred == 1


def test_grounding_missing_and_extra_boxes():
    gt = [(0, 0, 10, 10), (20, 20, 30, 30)]
    # One of two GT boxes found: 50 % for this sample.
    missing = grounding_metrics([gt], [[(0, 0, 10, 10)]])
    assert missing["score"] == 50.0
    assert missing["precision_pct"] == 100.0 and missing["recall_pct"] == 50.0
    # Both found plus an extra box: 100 %, precision 2/3.
    extra = grounding_metrics([gt], [[(0, 0, 10, 10), (20, 20, 30, 30), (50, 50, 60, 60)]])
    assert extra["score"] == 100.0
    assert extra["precision_pct"] == pytest.approx(200 / 3)
    assert extra["mean_iou"] == 1.0


def test_grounding_is_one_to_one():
    # One prediction overlapping two GT boxes (IoU 1 and 100/110) matches one.
    m = match_boxes([(0, 0, 10, 10), (0, 0, 10, 11)], [(0, 0, 10, 10)])
    assert m.matched == 1 and m.ious == (1.0,)


def test_grounding_maximises_matches_where_greedy_would_not():
    # Height-10 boxes, so IoU is the 1-D interval IoU:
    #   A=[0,10]  P=[1,10]: 9/10 = 0.9     A, Q=[-2,8]: 8/12 = 0.667
    #   B=[2,12]  P: 8/11 = 0.727          B, Q: 6/14 = 0.429 (< 0.5)
    # Greedy (A takes its best, P) leaves B with Q only: 1 match. The
    # maximum matching is A-Q, B-P: 2 matches, mean IoU (2/3 + 8/11) / 2.
    gt = [(0, 0, 10, 10), (2, 0, 12, 10)]
    pred = [(1, 0, 10, 10), (-2, 0, 8, 10)]
    result = grounding_metrics([gt], [pred])
    assert result["score"] == 100.0
    assert result["mean_iou"] == pytest.approx((2 / 3 + 8 / 11) / 2)


def test_grounding_averages_samples_and_counts_unparseable_as_zero():
    # Sample scores: 100 %, 50 %, 0 % (unparseable), 0 % (empty answer).
    gts = [[(0, 0, 10, 10)], [(0, 0, 10, 10), (20, 20, 30, 30)], [(0, 0, 10, 10)], [(0, 0, 10, 10)]]
    preds = [[(0, 0, 10, 10)], [(20, 20, 30, 30)], None, []]
    result = grounding_metrics(gts, preds)
    assert result["score"] == pytest.approx(150 / 4)  # (100 + 50 + 0 + 0) / 4
    assert (result["matched_boxes"], result["gt_boxes"], result["pred_boxes"]) == (2, 5, 2)
    assert result["precision_pct"] == 100.0
    assert result["recall_pct"] == 40.0  # 2 of 5 GT boxes


def test_grounding_needs_gt_boxes():
    with pytest.raises(ValueError):
        grounding_metrics([[]], [[(0, 0, 1, 1)]])


def test_location_matched_points():
    # Distances 0 and 30 -> (0 + 30) / 2 = 15.
    m = match_points([(0, 0), (100, 0)], [(0, 0), (100, 30)])
    assert m.error == pytest.approx(15.0)
    assert (m.unmatched_gt, m.unmatched_pred) == (0, 0)


def test_location_extra_point():
    # One match at 0, one extra prediction: (0 + P) / max(1, 2) = P / 2.
    m = match_points([(0, 0)], [(0, 0), (500, 500)])
    assert m.error == pytest.approx(P / 2)  # 707.1068
    assert (m.unmatched_gt, m.unmatched_pred) == (0, 1)


def test_location_missing_point():
    # (3,4) matches (0,0) at distance 5 (not (300,400) at 495); one GT point
    # is unmatched: (5 + P) / 2 = 709.6068.
    m = match_points([(0, 0), (300, 400)], [(3, 4)])
    assert m.error == pytest.approx((5 + P) / 2)
    assert m.distances == (5.0,)
    assert (m.unmatched_gt, m.unmatched_pred) == (1, 0)


def test_location_hungarian_beats_greedy():
    # GT (0,0), (10,0); predictions (4,0), (-20,0). Greedy nearest-first pairs
    # (0,0)-(4,0)=4 and (10,0)-(-20,0)=30: 34. Optimal (0,0)-(-20,0)=20 and
    # (10,0)-(4,0)=6: 26 -> error 26 / 2 = 13.
    assert match_points([(0, 0), (10, 0)], [(4, 0), (-20, 0)]).error == pytest.approx(13.0)


def test_location_edge_cases():
    assert match_points([(1, 1)], None).error == P  # unparseable
    assert match_points([(1, 1), (2, 2)], None).unmatched_gt == 2
    assert match_points([], []).error == 0.0  # nothing to find, nothing found
    assert match_points([], [(1, 1)]).error == P
    assert match_points([(1, 1)], []).error == P  # explicit "none" when there is one
    # A far-off point costs at most P per pair: d = 5000*sqrt(2) -> P.
    far = match_points([(0, 0)], [(5000, 5000)])
    assert far.error == P and far.distances == (pytest.approx(5000 * math.sqrt(2)),)


def test_location_metrics_averages_samples():
    # Sample errors: 15, P (unparseable), P/2 -> mean (15 + 1.5 P) / 3.
    gts = [[(0, 0), (100, 0)], [(5, 5)], [(0, 0)]]
    preds = [[(0, 0), (100, 30)], None, [(0, 0), (500, 500)]]
    result = location_metrics(gts, preds)
    assert result["score"] == pytest.approx((15 + 1.5 * P) / 3)
    assert result["matched_points"] == 3
    assert result["unmatched_gt_points"] == 1
    assert result["unmatched_pred_points"] == 1
    assert result["mean_matched_distance"] == pytest.approx(10.0)  # (0 + 30 + 0) / 3
    assert result["median_error"] == pytest.approx(P / 2)  # median of 15, P, P/2


def test_counting_with_an_unparseable_answer():
    # Errors: |12-10| = 2, unparseable read as 0 -> |0-4| = 4, |7-7| = 0.
    result = counting_metrics([10, 4, 7], [12, None, 7])
    assert result["score"] == 2.0  # (2 + 4 + 0) / 3
    assert result["mse"] == pytest.approx(20 / 3)  # (4 + 16 + 0) / 3
    assert result["rmse"] == pytest.approx(math.sqrt(20 / 3))  # 2.5820
    assert result["median_error"] == 2.0 and result["far_off_share"] == 0.0
    far = counting_metrics([0, 4, 7], [11, 45, 77])  # errors 11 > 10 x max(0, 1), 41 > 10 x 4, 70 = 10 x 7 (not more)
    assert far["far_off_share"] == pytest.approx(2 / 3)
    assert counting_metrics([], [])["score"] is None
