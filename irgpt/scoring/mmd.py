"""Lesson 1 maths (docs/method.md "Lesson 1"): MMD between the infrared and visible
feature sets, and each infrared sample's remaining distance to the visible domain.

Pure float64 NumPy functions (no Ray, no torch); the Ray Data scoring
pipeline calls them. Notation: x_i (i < n) infrared features, v_j (j < m)
visible features, Gaussian kernel k(x, y) = exp(-||x - y||^2 / (2 s^2)) with
feature map phi, bandwidth s.

- Eq. 1: MMD^2 = || (1/n) sum_i phi(x_i) - (1/m) sum_j phi(v_j) ||_H^2
- Eq. 2: c_ir = (1/n) sum_i phi(x_i),  c_vis = (1/m) sum_j phi(v_j)
- Eq. 3: p_i = (phi(x_i) - c_ir) . (c_vis - c_ir) / ||c_vis - c_ir||  (projection)
- **Decision** (docs/method.md): d_i = MMD - p_i, ranked ascending (smallest
  d_i = closest to visible = easiest). The printed Eq. 3 (p_i + MMD) grows
  towards the visible domain, the opposite of the paper's text and Fig. 5.

Two estimators of the same quantities:

- `exact_distances`: kernel trick, O(n^2 + n m + m^2) kernel evaluations in
  bounded-memory blocks; the reference.
- `RFF` + `rff_partial_sums` / `combine_sums` / `centroid_from_sums` /
  `rff_distances`: random Fourier features (Rahimi & Recht 2007) make phi an
  explicit D-vector, so the centroids are sums (one streaming pass, any
  partitioning) and each d_i costs O(D).

MMD = 0 (identical domains, e.g. the same feature set on both sides): the
direction c_vis - c_ir is undefined. We define p_i = 0 and d_i = 0 for all i
whenever MMD^2 <= `MMD_ZERO_TOL` (kernel values lie in [0, 1], so an absolute
tolerance is meaningful; a finite sample of two different distributions has
a biased MMD^2 of order 1/n, far above it). Never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy.spatial.distance import pdist

from irgpt.config.sections import Lesson1Config
from irgpt.data.schema import stable_hash

MMD_ZERO_TOL = 1e-12
"""MMD^2 at or below this counts as identical domains (p_i = d_i = 0)."""

BANDWIDTH_FALLBACK = 1.0
"""Bandwidth when every sampled pairwise distance is 0 (or < 2 rows)."""

KERNEL_CHUNK = 1024
"""Rows per block: an exact kernel block is chunk^2 float64 (8 MiB)."""

NONFINITE_REASON = "non-finite feature (NaN or inf)"
"""Reject reason the pipeline writes for rows `finite_rows` flags."""

RFF_INT_BITS = 36
"""Fixed-point RFF sums: |phi| * 2^scale < 2^36, so int64 sums of up to 2^27 rows
never overflow (see `rff_partial_sums`)."""
RFF_MAX_ROWS = 1 << 27


# ------------------------------------------------------------- checks ----
def finite_rows(x: np.ndarray) -> np.ndarray:
    """Boolean mask (n,): True where every feature of the row is finite.

    The pipeline rejects rows where it is False with `NONFINITE_REASON`
    before any function below sees them (they all require finite input).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (n, dim), got shape {x.shape}")
    return np.isfinite(x).all(axis=1)


def _as_features(x: np.ndarray, name: str) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty (n, dim) array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: non-finite features; drop rows with finite_rows() first")
    return a


def _pair(ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, v = _as_features(ir, "ir"), _as_features(vis, "vis")
    if x.shape[1] != v.shape[1]:
        raise ValueError(f"feature dims differ: ir {x.shape[1]} vs vis {v.shape[1]}")
    return x, v


# ---------------------------------------------------------- bandwidth ----
def median_bandwidth(x: np.ndarray, seed: int, sample: int) -> float:
    """Median heuristic: s = median pairwise Euclidean distance of a seeded sample.

    `min(sample, n)` rows are chosen by `np.random.default_rng(seed)` (without
    replacement, then sorted by index). The result depends on row order only
    through which rows are sampled, so callers pass rows in a canonical order:
    the pipeline passes the pooled set `np.concatenate([ir, vis])` with each
    side sorted by sample_id (`pooled_bandwidth`). Degenerate input never gives
    0 or NaN: if the median is 0 the mean distance is used, if that is 0 too
    (all sampled rows identical) or there are < 2 rows, `BANDWIDTH_FALLBACK`.
    """
    a = _as_features(x, "x")
    if sample < 2:
        raise ValueError(f"bandwidth sample must be >= 2, got {sample}")
    n = a.shape[0]
    if n < 2:
        return BANDWIDTH_FALLBACK
    k = min(sample, n)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    dists = pdist(a[idx])  # exact differences, float64
    for value in (float(np.median(dists)), float(dists.mean())):
        if value > 0 and math.isfinite(value):
            return value
    return BANDWIDTH_FALLBACK


def bandwidth_rows(ids: list[str], seed: int, sample: int) -> np.ndarray:
    """The rows the bandwidth is taken over: the `sample` ids of smallest
    `stable_hash(f"{seed}:{id}")`, returned as indices in sample_id order.

    The one rule of the in-memory reference (`pooled_bandwidth`) and of the Ray
    pipeline (`ir_vis`), so both find the same bandwidth on the same rows, in
    whatever order or partitioning the rows arrive.
    """
    if sample < 2:
        raise ValueError(f"bandwidth sample must be >= 2, got {sample}")
    chosen = sorted(range(len(ids)), key=lambda i: stable_hash(f"{seed}:{ids[i]}"))[:sample]
    return np.array(sorted(chosen, key=lambda i: ids[i]), dtype=np.int64)


def pooled_bandwidth(ir: np.ndarray, vis: np.ndarray, seed: int, sample: int,
                     ir_ids: list[str] | None = None, vis_ids: list[str] | None = None) -> float:
    """The median heuristic over the `bandwidth_rows` of the pooled rows [ir; vis].

    Without ids the rows are named by side and position (tests and benchmarks
    on bare arrays); the scorers always pass sample ids.
    """
    x, v = _pair(ir, vis)
    ids = list(ir_ids if ir_ids is not None else (f"ir-{i:012d}" for i in range(x.shape[0])))
    ids += list(vis_ids if vis_ids is not None else (f"vis-{i:012d}" for i in range(v.shape[0])))
    pooled = np.concatenate([x, v], axis=0)
    if len(ids) != pooled.shape[0]:
        raise ValueError(f"pooled_bandwidth: {len(ids)} ids for {pooled.shape[0]} rows")
    rows = pooled[bandwidth_rows(ids, seed, sample)]
    return median_bandwidth(rows, seed, max(2, rows.shape[0]))


# ------------------------------------------------------- exact (kernel) ----
def _row_norms(a: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, a)


def _kernel_block(a, b, a2, b2, gamma, same_block: bool) -> np.ndarray:
    """k(a_p, b_q) for a block; ||a-b||^2 via the Gram identity, clipped at 0."""
    d2 = a2[:, None] + b2[None, :] - 2.0 * (a @ b.T)
    np.maximum(d2, 0.0, out=d2)
    if same_block:
        np.fill_diagonal(d2, 0.0)  # k(x, x) = 1 exactly
    return np.exp(-gamma * d2, out=d2)


def kernel_row_sums(x: np.ndarray, y: np.ndarray | None, s: float, chunk: int = KERNEL_CHUNK) -> np.ndarray:
    """r_p = sum_q k(x_p, y_q) in chunk x chunk blocks (memory O(chunk^2)).

    `y=None` means y = x and uses the symmetry of the Gram matrix (half the
    blocks). Float64 throughout.
    """
    if s <= 0 or not math.isfinite(s):
        raise ValueError(f"bandwidth must be a positive finite number, got {s}")
    gamma = 1.0 / (2.0 * s * s)
    x2 = _row_norms(x)
    out = np.zeros(x.shape[0], dtype=np.float64)
    if y is None:
        starts = range(0, x.shape[0], chunk)
        for i0 in starts:
            xi, xi2 = x[i0 : i0 + chunk], x2[i0 : i0 + chunk]
            for j0 in range(i0, x.shape[0], chunk):
                block = _kernel_block(xi, x[j0 : j0 + chunk], xi2, x2[j0 : j0 + chunk], gamma, i0 == j0)
                out[i0 : i0 + chunk] += block.sum(axis=1)
                if j0 != i0:
                    out[j0 : j0 + chunk] += block.sum(axis=0)
        return out
    y2 = _row_norms(y)
    for i0 in range(0, x.shape[0], chunk):
        xi, xi2 = x[i0 : i0 + chunk], x2[i0 : i0 + chunk]
        for j0 in range(0, y.shape[0], chunk):
            block = _kernel_block(xi, y[j0 : j0 + chunk], xi2, y2[j0 : j0 + chunk], gamma, False)
            out[i0 : i0 + chunk] += block.sum(axis=1)
    return out


def _kernel_means(x, v, s, chunk):
    """Row sums and the three Gram totals the exact estimators need."""
    r_xv = kernel_row_sums(x, v, s, chunk)  # sum_j k(x_i, v_j)
    r_xx = kernel_row_sums(x, None, s, chunk)  # sum_i' k(x_i, x_i')
    s_vv = float(kernel_row_sums(v, None, s, chunk).sum())
    return r_xv, r_xx, float(r_xv.sum()), float(r_xx.sum()), s_vv


def _mmd2_from_totals(s_xx, s_vv, s_xv, n, m, unbiased):
    if unbiased:
        # U-statistic: drop the diagonal terms k(x, x) = 1 (needs n, m >= 2).
        if n < 2 or m < 2:
            raise ValueError("unbiased MMD^2 needs at least 2 samples on each side")
        return (s_xx - n) / (n * (n - 1)) + (s_vv - m) / (m * (m - 1)) - 2.0 * s_xv / (n * m)
    # V-statistic = ||c_ir - c_vis||^2 exactly (Eq. 1 with Eq. 2 centroids).
    return s_xx / (n * n) + s_vv / (m * m) - 2.0 * s_xv / (n * m)


def mmd2(ir: np.ndarray, vis: np.ndarray, s: float, unbiased: bool = False, chunk: int = KERNEL_CHUNK) -> float:
    """MMD^2 (Eq. 1) with the Gaussian kernel of bandwidth s.

    Biased (default) = V-statistic = ||c_ir - c_vis||_H^2, the quantity Eq. 3
    uses; `unbiased=True` = U-statistic (Gretton et al. 2012, Eq. 3 there),
    which may be slightly negative.
    """
    x, v = _pair(ir, vis)
    _, _, s_xv, s_xx, s_vv = _kernel_means(x, v, s, chunk)
    return float(_mmd2_from_totals(s_xx, s_vv, s_xv, x.shape[0], v.shape[0], unbiased))


def exact_distances(ir: np.ndarray, vis: np.ndarray, s: float, chunk: int = KERNEL_CHUNK) -> tuple[np.ndarray, dict]:
    """d_i = MMD - p_i for every infrared row, by the kernel trick (reference).

    With A_i = mean_j k(x_i, v_j), B_i = mean_i' k(x_i, x_i'):
      <phi(x_i) - c_ir, c_vis - c_ir> = A_i - B_i - mean(A) + mean(B)   (Eq. 2 expanded)
      ||c_vis - c_ir|| = MMD (biased, Eq. 1),  p_i = that / MMD (Eq. 3),
      d_i = MMD - p_i (Decision).
    Returns (d float64 (n,), stats) with stats = {estimator, mmd2 (biased),
    mmd2_unbiased (None if n or m < 2), mmd, bandwidth, n_ir, n_vis, degenerate}.
    """
    x, v = _pair(ir, vis)
    n, m = x.shape[0], v.shape[0]
    r_xv, r_xx, s_xv, s_xx, s_vv = _kernel_means(x, v, s, chunk)
    m2 = float(_mmd2_from_totals(s_xx, s_vv, s_xv, n, m, False))
    m2_u = float(_mmd2_from_totals(s_xx, s_vv, s_xv, n, m, True)) if n > 1 and m > 1 else None
    degenerate = m2 <= MMD_ZERO_TOL
    if degenerate:
        mmd, d = 0.0, np.zeros(n, dtype=np.float64)
    else:
        mmd = math.sqrt(m2)
        inner = r_xv / m - r_xx / n - s_xv / (n * m) + s_xx / (n * n)
        d = mmd - inner / mmd
    stats = {
        "estimator": "exact", "mmd2": max(m2, 0.0), "mmd2_unbiased": m2_u, "mmd": mmd,
        "bandwidth": float(s), "n_ir": n, "n_vis": m, "degenerate": bool(degenerate),
    }
    return d, stats


# ------------------------------------------------ random Fourier features ----
class RFF:
    """phi^(x) = sqrt(2/D) cos(W^T x + b), W ~ N(0, s^-2 I), b ~ U[0, 2 pi] (seeded).

    E[phi^(x) . phi^(y)] = exp(-||x-y||^2 / (2 s^2)) (Rahimi & Recht 2007), so
    the Eq. 2 centroids become explicit D-vectors. W and b come from
    `np.random.default_rng(seed)` (W first, then b): the same (dim_in, D,
    bandwidth, seed) gives the same map on every machine and worker.
    """

    def __init__(self, dim_in: int, D: int, bandwidth: float, seed: int):
        if dim_in < 1 or D < 1:
            raise ValueError(f"RFF needs dim_in >= 1 and D >= 1, got {dim_in}, {D}")
        if bandwidth <= 0 or not math.isfinite(bandwidth):
            raise ValueError(f"bandwidth must be a positive finite number, got {bandwidth}")
        rng = np.random.default_rng(seed)
        self.dim_in, self.D, self.bandwidth, self.seed = dim_in, D, float(bandwidth), seed
        self.W = rng.standard_normal((dim_in, D)) / self.bandwidth
        self.b = rng.uniform(0.0, 2.0 * math.pi, size=D)
        self.scale = math.sqrt(2.0 / D)

    def features(self, x: np.ndarray, chunk: int = 256) -> np.ndarray:
        """phi^ of every row, float64 (n, D).

        The matrix product runs on blocks of exactly `chunk` rows (the last one
        padded), so a row's features are bit-identical whatever batch or part
        it arrives in (a GEMM may pick another kernel for another row count;
        same idea as `irgpt.models.chunks.fixed_chunks`).
        """
        a = np.ascontiguousarray(x, dtype=np.float64)
        if a.ndim == 2 and a.shape[0] == 0 and a.shape[1] == self.dim_in:
            return np.zeros((0, self.D), dtype=np.float64)  # an empty part
        a = _as_features(a, "x")
        if a.shape[1] != self.dim_in:
            raise ValueError(f"RFF expects dim {self.dim_in}, got {a.shape[1]}")
        n = a.shape[0]
        out = np.empty((n, self.D), dtype=np.float64)
        for start in range(0, n, chunk):
            piece = a[start : start + chunk]
            k = piece.shape[0]
            if k < chunk:
                piece = np.concatenate([piece, np.repeat(piece[-1:], chunk - k, axis=0)])
            z = piece @ self.W
            z += self.b
            np.cos(z, out=z)
            z *= self.scale
            out[start : start + k] = z[:k]
        return out


def _sum_shift(D: int) -> int:
    """Binary exponent e with |phi| * 2^e < 2^RFF_INT_BITS (|phi| <= sqrt(2/D))."""
    return RFF_INT_BITS - math.ceil(math.log2(math.sqrt(2.0 / D)))


def rff_partial_sums(phi: np.ndarray) -> tuple[np.ndarray, int]:
    """(sum vector, count) of a block of RFF features, for a distributed sum.

    Determinism: each phi value is rounded to the fixed-point grid 2^-e
    (e = `_sum_shift(D)`, ~4.5e-13 at D = 4096; scaling by a power of two is
    exact, `np.rint` is the only rounding and depends on the value alone) and
    summed as int64, which is exact. The sums are therefore bit-identical for
    any row order, partitioning or combination order, with no need to fix
    the order of parts. Returns (int64 (D,), n).
    """
    p = np.asarray(phi, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"phi must be 2-D (n, D), got shape {p.shape}")
    if p.shape[0] > RFF_MAX_ROWS:
        raise ValueError(f"at most {RFF_MAX_ROWS} rows per partial sum")
    q = np.rint(np.ldexp(p, _sum_shift(p.shape[1]))).astype(np.int64)
    return q.sum(axis=0, dtype=np.int64), int(p.shape[0])


def combine_sums(parts: Iterable[tuple[np.ndarray, int]]) -> tuple[np.ndarray, int]:
    """Add partial sums (exact integer addition: any order gives the same bits)."""
    total, count = None, 0
    for vec, n in parts:
        vec = np.asarray(vec, dtype=np.int64)
        total = vec.copy() if total is None else total + vec
        count += int(n)
    if total is None:
        raise ValueError("combine_sums: no parts")
    if count > RFF_MAX_ROWS:
        raise ValueError(f"more than {RFF_MAX_ROWS} rows: int64 sums could overflow")
    return total, count


def centroid_from_sums(total: np.ndarray, count: int) -> np.ndarray:
    """c = sum / count as float64 (D,) (Eq. 2)."""
    if count < 1:
        raise ValueError("centroid of zero rows")
    total = np.asarray(total, dtype=np.int64)
    return np.ldexp(total.astype(np.float64), -_sum_shift(total.shape[0])) / count


def rff_mmd(c_ir: np.ndarray, c_vis: np.ndarray) -> float:
    """MMD = ||c_vis - c_ir|| (Eq. 1 with the Eq. 2 centroids); 0 if <= tolerance."""
    diff = np.asarray(c_vis, dtype=np.float64) - np.asarray(c_ir, dtype=np.float64)
    m2 = float(np.dot(diff, diff))
    return 0.0 if m2 <= MMD_ZERO_TOL else math.sqrt(m2)


def rff_distances(phi_ir: np.ndarray, c_ir: np.ndarray, c_vis: np.ndarray) -> np.ndarray:
    """d_i = MMD - p_i, p_i = (phi_i - c_ir) . (c_vis - c_ir) / MMD (Eq. 3); O(D) each.

    Row-wise products and `np.sum(axis=1)`, so each d_i depends only on its own
    row (no batch-size dependence). MMD = 0 gives d_i = 0 (module doc).
    """
    phi = np.asarray(phi_ir, dtype=np.float64)
    c_ir = np.asarray(c_ir, dtype=np.float64)
    diff = np.asarray(c_vis, dtype=np.float64) - c_ir
    mmd = rff_mmd(c_ir, c_vis)
    if mmd == 0.0:
        return np.zeros(phi.shape[0], dtype=np.float64)
    u = diff / mmd
    p = np.sum((phi - c_ir) * u, axis=1)
    return mmd - p


def rff_estimate(ir: np.ndarray, vis: np.ndarray, s: float, D: int, seed: int, chunk: int = KERNEL_CHUNK) -> tuple[np.ndarray, dict]:
    """In-memory two-pass RFF estimate: sums (pass 1), then d_i (pass 2).

    Memory O(chunk * D): phi is never held for all rows. The pipeline does the
    same passes over Ray Data parts with `rff_partial_sums` / `combine_sums`.
    """
    x, v = _pair(ir, vis)
    rff = RFF(x.shape[1], D, s, seed)

    def sums(a):
        return combine_sums(rff_partial_sums(rff.features(a[i : i + chunk])) for i in range(0, a.shape[0], chunk))

    c_ir = centroid_from_sums(*sums(x))
    c_vis = centroid_from_sums(*sums(v))
    d = np.concatenate([rff_distances(rff.features(x[i : i + chunk]), c_ir, c_vis) for i in range(0, x.shape[0], chunk)])
    mmd = rff_mmd(c_ir, c_vis)
    stats = {
        "estimator": "rff", "mmd2": mmd * mmd, "mmd": mmd, "bandwidth": float(s), "rff_dim": D,
        "rff_seed": seed, "n_ir": x.shape[0], "n_vis": v.shape[0], "degenerate": mmd == 0.0,
    }
    return d, stats


# ------------------------------------------------------------ dispatch ----
def choose_estimator(n: int, m: int, cfg: Lesson1Config) -> str:
    """`exact` or `rff`: cfg.estimator, or for `auto` rff when n*m > cfg.exact_max_pairs."""
    if cfg.estimator != "auto":
        return cfg.estimator
    return "rff" if n * m > cfg.exact_max_pairs else "exact"


def lesson1_distances(ir: np.ndarray, vis: np.ndarray, cfg: Lesson1Config,
                      ir_ids: list[str] | None = None, vis_ids: list[str] | None = None) -> tuple[np.ndarray, dict]:
    """Bandwidth (`pooled_bandwidth`) + the configured estimator, in memory: the
    reference the Ray pipeline (`ir_vis`) is tested against.

    Rows in sample_id order on each side (the RFF sums and the exact kernel
    sums are order-independent; ids pick the bandwidth rows). Returns
    (d (n,), stats incl. estimator and bandwidth).
    """
    x, v = _pair(ir, vis)
    s = pooled_bandwidth(x, v, cfg.seed, cfg.bandwidth_sample, ir_ids, vis_ids)
    if choose_estimator(x.shape[0], v.shape[0], cfg) == "exact":
        return exact_distances(x, v, s)
    return rff_estimate(x, v, s, cfg.rff_dim, cfg.seed)
