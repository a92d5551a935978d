"""Metric functions for the benchmark (docs/method.md, "The benchmark" table).

Inputs are already-parsed values; ``None`` stands for an unparseable
prediction, which is always scored as wrong, never dropped:

- accuracy (scene, recognition, relationship, reid, security): % correct;
  an unparseable answer is incorrect.
- grounding: per sample, the % of ground-truth boxes matched one-to-one to
  predicted boxes with IoU >= 0.5 (maximum number of matches, ties broken by
  total IoU, via the Hungarian algorithm), averaged over samples. An
  unparseable answer matches nothing (0 %).
- location: mean point error in the 0-1000 frame. Points are matched
  one-to-one minimising total cost (Hungarian), where a matched pair costs
  min(Euclidean distance, P) and every unmatched ground-truth or predicted
  point costs P = LOCATION_PENALTY = 1000 * sqrt(2) ~ 1414.21, the frame
  diagonal, i.e. the largest distance two in-frame points can have.
  Per sample: (sum of matched costs + P * (unmatched GT + unmatched
  predicted)) / max(#GT, #pred), so it lies in [0, P]; 0 when both are
  empty. An unparseable answer scores P (every GT point unmatched).
- counting: MAE (plus MSE, RMSE) of the count; an unparseable count is read
  as 0, so its error is the ground-truth count.

The scipy import is deferred so importing this module stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IOU_THRESHOLD = 0.5
LOCATION_PENALTY = 1000.0 * math.sqrt(2.0)

Box = Sequence[float]  # (x1, y1, x2, y2)
Point = Sequence[float]  # (x, y)


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def accuracy_pct(correct: Sequence[bool]) -> float | None:
    """Percentage of True entries; None for no samples."""
    if not correct:
        return None
    return 100.0 * sum(1 for c in correct if c) / len(correct)


def iou_matrix(gt: Sequence[Box], pred: Sequence[Box]) -> np.ndarray:
    """IoU of every (gt, pred) pair, shape (len(gt), len(pred)) (`torchvision.ops.box_iou`).

    A box with x2 <= x1 or y2 <= y1 has zero area and overlaps nothing (IoU 0,
    where torchvision would give NaN or count an inverted box's area).
    """
    import torch
    from torchvision.ops import box_iou as tv_box_iou

    g = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    iou = tv_box_iou(torch.from_numpy(g), torch.from_numpy(p)).numpy()
    valid_g = (g[:, 2] > g[:, 0]) & (g[:, 3] > g[:, 1])
    valid_p = (p[:, 2] > p[:, 0]) & (p[:, 3] > p[:, 1])
    return np.where(valid_g[:, None] & valid_p[None, :], np.nan_to_num(iou, nan=0.0), 0.0)


def box_iou(a: Box, b: Box) -> float:
    """IoU of two (x1, y1, x2, y2) boxes."""
    return float(iou_matrix([a], [b])[0, 0])


@dataclass(frozen=True)
class BoxMatch:
    """One grounding sample after one-to-one matching."""

    n_gt: int
    n_pred: int
    ious: tuple[float, ...]  # IoU of each matched pair (all >= threshold)

    @property
    def matched(self) -> int:
        return len(self.ious)


def match_boxes(
    gt: Sequence[Box], pred: Sequence[Box] | None, iou_threshold: float = IOU_THRESHOLD
) -> BoxMatch:
    """Maximum one-to-one matching of GT to predicted boxes at IoU >= threshold.

    Hungarian on weights M + IoU for eligible pairs (0 otherwise) with
    M = min(#gt, #pred) + 1: any matching with one more pair outweighs every
    smaller one, so the count is maximal and, among maximal ones, total IoU.
    """
    pred = [] if pred is None else pred
    if not gt or not pred:
        return BoxMatch(len(gt), len(pred), ())
    iou = iou_matrix(gt, pred)
    eligible = iou >= iou_threshold
    if not eligible.any():
        return BoxMatch(len(gt), len(pred), ())
    from scipy.optimize import linear_sum_assignment

    weight = np.where(eligible, min(iou.shape) + 1.0 + iou, 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    keep = eligible[rows, cols]
    return BoxMatch(len(gt), len(pred), tuple(float(v) for v in iou[rows[keep], cols[keep]]))


def grounding_metrics(
    gts: Sequence[Sequence[Box]],
    preds: Sequence[Sequence[Box] | None],
    iou_threshold: float = IOU_THRESHOLD,
) -> dict:
    """Per-sample % of GT boxes matched, averaged (``score``), plus secondaries.

    ``mean_iou``: mean IoU of all matched pairs; ``precision_pct``: matched /
    predicted boxes over all samples; ``recall_pct``: matched / GT boxes over
    all samples (the micro average of ``score``). Every GT list must be
    non-empty (a sample without GT boxes has no defined score).
    """
    if len(gts) != len(preds):
        raise ValueError("gts and preds differ in length")
    fractions, ious, n_gt, n_pred = [], [], 0, 0
    for gt, pred in zip(gts, preds):
        if not gt:
            raise ValueError("a grounding sample needs at least one ground-truth box")
        m = match_boxes(gt, pred, iou_threshold)
        fractions.append(m.matched / m.n_gt)
        ious.extend(m.ious)
        n_gt += m.n_gt
        n_pred += m.n_pred
    score = _mean(fractions)
    return {
        "score": None if score is None else 100.0 * score,
        "mean_iou": _mean(ious),
        "precision_pct": 100.0 * len(ious) / n_pred if n_pred else None,
        "recall_pct": 100.0 * len(ious) / n_gt if n_gt else None,
        "matched_boxes": len(ious),
        "gt_boxes": n_gt,
        "pred_boxes": n_pred,
    }


@dataclass(frozen=True)
class PointMatch:
    """One location sample after one-to-one matching."""

    error: float  # per-sample error, in [0, penalty]
    distances: tuple[float, ...]  # Euclidean distance of each matched pair (uncapped)
    unmatched_gt: int
    unmatched_pred: int


def match_points(
    gt: Sequence[Point], pred: Sequence[Point] | None, penalty: float = LOCATION_PENALTY
) -> PointMatch:
    """Per-sample location error under the one-to-one matching of the module doc.

    Adding a pair changes the cost by min(d, P) - 2P < 0, so the optimum pairs
    min(#gt, #pred) points; the Hungarian algorithm on min(d, P) picks which.
    ``pred=None`` (unparseable) scores ``penalty``.
    """
    n_gt = len(gt)
    if pred is None:
        return PointMatch(penalty, (), n_gt, 0)
    n_pred = len(pred)
    if n_gt == 0 and n_pred == 0:
        return PointMatch(0.0, (), 0, 0)
    if n_gt == 0 or n_pred == 0:
        return PointMatch(penalty, (), n_gt, n_pred)
    from scipy.optimize import linear_sum_assignment

    g = np.asarray(gt, dtype=np.float64).reshape(-1, 2)
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    dist = np.sqrt(((g[:, None, :] - p[None, :, :]) ** 2).sum(axis=2))
    cost = np.minimum(dist, penalty)
    rows, cols = linear_sum_assignment(cost)
    matched = len(rows)
    total = math.fsum(cost[rows, cols].tolist()) + penalty * (n_gt + n_pred - 2 * matched)
    return PointMatch(
        total / max(n_gt, n_pred),
        tuple(float(d) for d in dist[rows, cols]),
        n_gt - matched,
        n_pred - matched,
    )


def location_metrics(
    gts: Sequence[Sequence[Point]],
    preds: Sequence[Sequence[Point] | None],
    penalty: float = LOCATION_PENALTY,
) -> dict:
    """Mean per-sample point error (``score``), plus matched/unmatched counts.

    ``mean_matched_distance`` is the mean uncapped distance of matched pairs
    (no penalties), closest to the IR-TD authors' matched-only average.
    """
    if len(gts) != len(preds):
        raise ValueError("gts and preds differ in length")
    errors, distances, unmatched_gt, unmatched_pred = [], [], 0, 0
    for gt, pred in zip(gts, preds):
        m = match_points(gt, pred, penalty)
        errors.append(m.error)
        distances.extend(m.distances)
        unmatched_gt += m.unmatched_gt
        unmatched_pred += m.unmatched_pred
    return {
        "score": _mean(errors),
        "median_error": float(np.median(errors)) if errors else None,
        "penalty": penalty,
        "matched_points": len(distances),
        "unmatched_gt_points": unmatched_gt,
        "unmatched_pred_points": unmatched_pred,
        "mean_matched_distance": _mean(distances),
    }


FAR_OFF = 10
"""A count is "far off" when its error exceeds FAR_OFF times the true count (at least 1)."""


def counting_metrics(gts: Sequence[int], preds: Sequence[int | None]) -> dict:
    """MAE (``score``), MSE and RMSE; an unparseable count (None) is read as 0.

    Robust companions (one absurd count can make the MAE meaningless):
    ``median_error`` (the median absolute error) and ``far_off_share`` (the
    share of answers whose error exceeds FAR_OFF x max(true count, 1)).
    """
    if len(gts) != len(preds):
        raise ValueError("gts and preds differ in length")
    errors = [abs((0 if p is None else p) - g) for g, p in zip(gts, preds)]
    if not errors:
        return {"score": None, "mse": None, "rmse": None, "median_error": None, "far_off_share": None}
    mse = sum(e * e for e in errors) / len(errors)  # exact integer sums
    far = sum(1 for e, g in zip(errors, gts) if e > FAR_OFF * max(g, 1))
    return {"score": sum(errors) / len(errors), "mse": mse, "rmse": math.sqrt(mse),
            "median_error": float(np.median(errors)), "far_off_share": far / len(errors)}
