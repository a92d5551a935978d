"""Eq. 4-5 (docs/method.md, Lesson 2): the change of CLIP loss and the adaptive weights.

Shared by the Lesson 2 scorer (which writes `alpha` and `weight`), by
`irgpt tier --reweight` and by Tune (which may vary `WeightsConfig` without
re-scoring). Everything here is a pure function of the `alpha` column and the
options, so the same alphas give the same bits on every engine:

    a = alpha(loss_before, loss_after)          # Eq. 4
    w = eq5_weights(a)                          # Eq. 5, medians over `a`
    w = eq5_weights(a_part, medians=meds)       # one part of a big dataset,
                                                # meds = distributed_medians(ds)

Edge cases (Eq. 4-5 leave them open; each is a documented choice):
- `l == 0`: Eq. 4 divides by zero. A contrastive loss is > 0 in practice, so
  this only happens for degenerate inputs: `l == l' == 0` gives alpha = 0 (no
  change), `l == 0 < l'` gives alpha = +inf (got worse from perfect), whose
  weight is the Eq. 5 limit 1 - sigmoid(inf) = 0. Negative or NaN losses raise.
- +inf alphas are left out of the positive median (they carry no scale).
- An empty branch has no median (None); it is never used.
- A median of 0 (only the non-positive branch can have one: at least half of
  its alphas are exactly 0): the sigmoid argument x / (tau * 0) is taken as its
  limit, 0 where x == 0 and +inf where x > 0. So alpha == 0 gets w = 1.5 (e.g.
  when every non-positive alpha is 0) and alpha < 0 gets w = 2; never NaN.
- Medians of an even count are (a + b) / 2 of the two middle values, computed
  the same way here and in `distributed_medians`, so both give identical bits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Medians = tuple[float | None, float | None]
"""(median of alpha over alpha > 0, median of -alpha over alpha <= 0)."""


def alpha(loss_before, loss_after):
    """Eq. 4: alpha = (l' - l) / l, elementwise; l = loss before warm-up, l' = after.

    Returns a float for scalar inputs, else a float64 array. See the module
    docstring for l == 0.
    """
    before = np.asarray(loss_before, dtype=np.float64)
    after = np.asarray(loss_after, dtype=np.float64)
    if before.shape != after.shape:
        raise ValueError(f"alpha: shapes differ: {before.shape} vs {after.shape}")
    for name, arr in (("loss_before", before), ("loss_after", after)):
        if np.isnan(arr).any() or (arr < 0).any() or np.isinf(arr).any():
            raise ValueError(f"alpha: {name} must be finite and >= 0")
    out = np.zeros(before.shape, dtype=np.float64)
    pos = before > 0
    np.divide(after - before, before, out=out, where=pos)
    out[~pos & (after > 0)] = np.inf  # l == 0 < l': the limit of Eq. 4
    return float(out) if out.ndim == 0 else out


def median_sorted(values: Sequence[float] | np.ndarray) -> float | None:
    """Median of already-sorted values; (a + b) / 2 for an even count; None if empty."""
    n = len(values)
    if n == 0:
        return None
    if n % 2:
        return float(values[n // 2])
    return (float(values[n // 2 - 1]) + float(values[n // 2])) / 2.0


def weight_medians(alpha_values) -> Medians:
    """The two Eq. 5 medians over a whole alpha column (see `Medians`); rows with a
    NaN or -inf alpha (broken scores, rejected by the tiering) are left out."""
    a = np.asarray(alpha_values, dtype=np.float64).reshape(-1)
    a = a[scorable(a)]
    pos = np.sort(a[(a > 0) & np.isfinite(a)])
    neg = np.sort(-a[a <= 0])
    return median_sorted(pos), median_sorted(neg)


def eq5_weights(
    alpha,
    temperature: float = 1.0,
    normalize: bool = False,
    clip: Sequence[float] | None = None,
    medians: Medians | None = None,
    *,
    mean: float | None = None,
) -> np.ndarray:
    """Eq. 5 weights for an alpha column (float64 array of the same length).

    alpha > 0:  w = 1 - sigmoid(alpha / (tau * Median{alpha_j > 0}))      in (0, 0.5)
    alpha <= 0: w = 1 + sigmoid(-alpha / (tau * Median{-alpha_k <= 0}))   in [1.5, 2]

    temperature: tau (1 = the paper). medians: precomputed `(med_pos,
    med_nonpos)` over the whole dataset (e.g. `distributed_medians`); default:
    computed from `alpha` itself. normalize: divide by the mean weight so the
    weights average 1 (the mean is `mean` if given, which a distributed caller
    computes over the whole dataset with `exact_sum`; else the exactly rounded
    mean of these weights). clip: [low, high], applied last.
    """
    if temperature <= 0:
        raise ValueError("eq5_weights: temperature must be > 0")
    a = _check_alpha(alpha)
    med_pos, med_nonpos = weight_medians(a) if medians is None else medians
    w = np.empty(a.shape, dtype=np.float64)
    pos = a > 0
    # alpha > 0: 1 - sigmoid(z) == 1 / (1 + e^z), without cancellation for large z.
    z_pos = _ratio(a[pos], med_pos, temperature, "positive")
    with np.errstate(over="ignore"):
        w[pos] = 1.0 / (1.0 + np.exp(z_pos))
    z_neg = _ratio(-a[~pos], med_nonpos, temperature, "non-positive")
    w[~pos] = 1.0 + 1.0 / (1.0 + np.exp(-z_neg))
    if normalize and w.size:
        m = mean if mean is not None else exact_sum(w) / w.size
        if not m > 0:
            raise ValueError(f"eq5_weights: cannot normalise by mean {m}")
        w = w / m
    if clip is not None:
        low, high = clip
        w = np.clip(w, low, high)
    return w


def weights_from_config(alpha, cfg, medians: Medians | None = None, mean: float | None = None) -> np.ndarray:
    """`eq5_weights` with the options of a `WeightsConfig`, over the rows that have an alpha.

    A row whose alpha is NaN or -inf (a broken score) gets a NaN weight instead
    of failing the whole column; the tiering rejects it as `non-finite alpha`.
    Medians and the normalising mean are taken over the other rows.
    """
    a = np.asarray(alpha, dtype=np.float64).reshape(-1)
    ok = scorable(a)
    if ok.all():
        return eq5_weights(a, cfg.temperature, cfg.normalize, cfg.clip, medians, mean=mean)
    w = np.full(a.shape, np.nan)
    w[ok] = eq5_weights(a[ok], cfg.temperature, cfg.normalize, cfg.clip, medians, mean=mean)
    return w


def scorable(alpha: np.ndarray) -> np.ndarray:
    """Rows whose alpha Eq. 5 can weight (not NaN, not -inf)."""
    return ~(np.isnan(alpha) | np.isneginf(alpha))


def exact_sum(values) -> float:
    """The correctly rounded sum (math.fsum): independent of order and partitioning."""
    return math.fsum(np.asarray(values, dtype=np.float64).tolist())


def _check_alpha(alpha_values) -> np.ndarray:
    a = np.asarray(alpha_values, dtype=np.float64).reshape(-1)
    if np.isnan(a).any():
        raise ValueError("eq5_weights: alpha contains NaN")
    if np.isneginf(a).any():
        raise ValueError("eq5_weights: alpha contains -inf (Eq. 4 gives alpha >= -1)")
    return a


def _ratio(x: np.ndarray, med: float | None, tau: float, branch: str) -> np.ndarray:
    """x / (tau * med) for x >= 0, with the limits of the module docstring."""
    if x.size == 0:
        return x
    if med is None:
        if np.isfinite(x).any():
            raise ValueError(f"eq5_weights: no median given for the {branch} branch")
        return x  # only +inf values: the limit is +inf
    if med < 0 or not math.isfinite(med):
        raise ValueError(f"eq5_weights: {branch} median must be finite and >= 0, got {med}")
    if med == 0:
        return np.where(x > 0, np.inf, 0.0)
    return x / (tau * med)  # +inf stays +inf


# --------------------------------------------------------------- Ray Data ---
def distributed_medians(ds, column: str = "alpha") -> Medians:
    """Both Eq. 5 medians of a Ray Dataset column, exactly, without the rows on the driver.

    Ray 2.60's `ray.data.aggregate.Quantile` is exact but concatenates the whole
    column into one accumulator (a single task holds every value, and it
    interpolates rather than (a + b) / 2); `ApproximateQuantile` is a sketch.
    Here: one map tags each value with its branch (0: -alpha for alpha <= 0,
    1: alpha for 0 < alpha < inf), a distributed sort orders (branch, value),
    the branch sizes come from per-block counts, and only the one or two
    middle rows of each branch are fetched (`rows_at`).
    """
    import pyarrow as pa

    def tag(batch: pa.Table) -> pa.Table:
        a = batch.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
        a = a[scorable(a)]  # as `weight_medians`: broken scores are left out
        keep_pos = (a > 0) & np.isfinite(a)
        keep_neg = a <= 0
        branch = np.concatenate([np.zeros(keep_neg.sum(), np.int8), np.ones(keep_pos.sum(), np.int8)])
        value = np.concatenate([-a[keep_neg], a[keep_pos]])
        return pa.table({"branch": branch, "value": value})

    tagged = ds.select_columns([column]).map_batches(tag, batch_format="pyarrow")
    ordered = tagged.sort(["branch", "value"]).materialize()
    counts = ordered.map_batches(_branch_counts, batch_format="pyarrow").take_all()  # a row per block
    n_neg, n_pos = sum(int(r["neg"]) for r in counts), sum(int(r["pos"]) for r in counts)
    wanted = _middle_positions(n_neg, 0) + _middle_positions(n_pos, n_neg)
    values = dict(zip(wanted, [r["value"] for r in rows_at(ordered, wanted)]))
    med_neg = median_sorted([values[p] for p in _middle_positions(n_neg, 0)]) if n_neg else None
    med_pos = median_sorted([values[p] for p in _middle_positions(n_pos, n_neg)]) if n_pos else None
    return med_pos, med_neg


def _branch_counts(batch):
    import pyarrow as pa

    b = batch.column("branch").to_numpy(zero_copy_only=False)
    return pa.table({"neg": [int((b == 0).sum())], "pos": [int((b == 1).sum())]})


def _middle_positions(n: int, offset: int) -> list[int]:
    """Global positions of the middle element(s) of a sorted run of n rows at offset."""
    if n == 0:
        return []
    if n % 2:
        return [offset + n // 2]
    return [offset + n // 2 - 1, offset + n // 2]


def rows_at(materialized, positions: Sequence[int]) -> list[dict]:
    """The rows at global positions of a materialized (e.g. sorted) Ray Dataset.

    Uses `split_at_indices` (metadata only, plus splitting at most one block
    per index), so just the requested rows travel to the driver.
    """
    if not positions:
        return []
    unique = sorted(set(int(p) for p in positions))
    pieces = materialized.split_at_indices(unique)
    found = {}
    for i, p in enumerate(unique):
        rows = pieces[i + 1].take(1)
        if not rows:
            raise IndexError(f"rows_at: position {p} is past the end")
        found[p] = rows[0]
    return [found[int(p)] for p in positions]


def exact_partials(values) -> list[float]:
    """Shewchuk partials of a sum: exact, and mergeable across blocks.

    `math.fsum(partials_a + partials_b)` is the correctly rounded sum of all
    values of both blocks, so a distributed mean equals the in-memory one bit
    for bit.
    """
    partials: list[float] = []
    for x in np.asarray(values, dtype=np.float64).tolist():
        i = 0
        for y in partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                partials[i] = lo
                i += 1
            x = hi
        partials[i:] = [x]
    return partials


def distributed_eq5_weights(ds, cfg, column: str = "alpha", out: str = "weight"):
    """Eq. 5 weights as a column of a Ray Dataset, with whole-dataset medians (and mean).

    cfg: a `WeightsConfig`. Returns (dataset with `out` set, info dict with
    the medians and the normalising mean). Same bits as `weights_from_config`
    on the whole column in memory.
    """
    import pyarrow as pa

    medians = distributed_medians(ds, column)
    mean = None
    if cfg.normalize:
        def partials(batch: pa.Table) -> pa.Table:
            a = batch.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
            w = eq5_weights(a[scorable(a)], cfg.temperature, medians=medians)
            return pa.table({"p": pa.array([exact_partials(w)], pa.list_(pa.float64())), "n": [len(w)]})

        rows = ds.select_columns([column]).map_batches(partials, batch_format="pyarrow").take_all()
        n = sum(int(r["n"]) for r in rows)
        if n:
            mean = math.fsum(p for r in rows for p in r["p"]) / n

    def apply(batch: pa.Table) -> pa.Table:
        w = pa.array(weights_from_config(batch.column(column).to_numpy(zero_copy_only=False), cfg, medians, mean), pa.float64())
        if out in batch.column_names:
            return batch.set_column(batch.schema.get_field_index(out), out, w)
        return batch.append_column(out, w)

    info = {"medians": {"positive": medians[0], "non_positive": medians[1]}, "mean": mean}
    return ds.map_batches(apply, batch_format="pyarrow"), info

