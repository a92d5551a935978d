"""Lesson 1 on Ray: `irgpt score ir-vis` (docs/method.md "Lesson 1", Eq. 1-3).

Passes over the data, each one a Ray job of its own:
1. Features (resumable `run_pass` on the actor pool): the MAE encoder with
   mask ratio 0, mean-pooled tokens, for every infrared and visible caption
   row -> `OUT/_features/` (a fixed-size float32 list column, reusable).
2. Bandwidth: the median heuristic over the `bandwidth_sample` rows of
   smallest hash(seed, sample_id) (`mmd.bandwidth_rows`, the rule of the
   in-memory reference `mmd.lesson1_distances` too), so it is the same
   whatever the partitioning, and the same for both estimators.
3. Distances: `rff` - Ray tasks per feature part compute fixed-point partial
   sums of phi for each domain (exact integer sums, any order gives the same
   bits), the driver forms the centroids (Eq. 2) and MMD (Eq. 1), then tasks
   per part compute d_i = MMD - p_i (Eq. 3 projection, Decision). `exact` -
   the kernel trick on all features in one process (the reference).
4. rank_l1: ascending normalised rank of d_i, ties by hash of sample_id.
The score rows (ids and a few floats) are gathered on the driver for the
global rank; features and images never are, except for `exact`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from irgpt import storage
from irgpt.config import Config, config_hash
from irgpt.data.io import (
    base_manifest,
    read_manifest,
    shard_paths,
    write_manifest,
    write_rejects,
)
from irgpt.data.schema import INFRARED_BANDS, VISIBLE_BANDS
from irgpt.errors import CommandError
from irgpt.ray_utils import ensure_ray, log0, warn_untrained
from irgpt.scoring import mmd
from irgpt.scoring.base import Scorer
from irgpt.scoring.pipeline import (
    attach_data_column,
    part_nodes,
    read_rejects_parts,
    run_pass,
    write_score_parts,
)
from irgpt.scoring.ranks import normalized_rank

SCORER_VERSION = "ir_vis/1"
FEATURES = "_features"
VIS_FEATURES = "_features_vis"


class FeatureScorer(Scorer):
    """MAE features of the infrared and visible caption rows of one part."""

    name = "mae-features"
    input_columns = ("sample_id", "image", "band", "task", "split")

    def __init__(self, extractor: str, bands: list[str], kind: str = "auto"):
        from irgpt.models.mae import load_extractor

        self.model = load_extractor(extractor, kind=kind)
        self.size = int(self.model.config.image_size)
        self.bands = set(bands)

    def score(self, table, part):
        from irgpt.data.images import ImageRejected, decode_to_array
        from irgpt.models.mae import extract_features

        keep = [
            i for i, (b, t) in enumerate(zip(table.column("band").to_pylist(), table.column("task").to_pylist()))
            if b in self.bands and t == "caption"
        ]
        rows, images, rejects = [], [], []
        ids = table.column("sample_id").to_pylist()
        for i in keep:
            try:
                images.append(decode_to_array(table.column("image")[i].as_py(), size=self.size, mode="L"))
                rows.append(i)
            except ImageRejected as exc:
                rejects.append({"sample_id": ids[i], "reason": f"cannot decode image: {exc.reason}", "stage": "score_l1"})
        if images:
            feats = extract_features(self.model, np.stack(images))
            ok = mmd.finite_rows(feats)
            for i in np.flatnonzero(~ok):
                rejects.append({"sample_id": ids[rows[i]], "reason": mmd.NONFINITE_REASON, "stage": "score_l1"})
            rows = [r for r, good in zip(rows, ok) if good]
            feats = feats[ok]
        else:
            feats = np.zeros((0, int(self.model.config.hidden_size)), np.float32)
        dim = feats.shape[1]
        out = table.select(["sample_id", "band", "split"]).take(pa.array(rows, pa.int64()))
        flat = pa.array(feats.astype(np.float32).ravel(), pa.float32())
        out = out.append_column("feature", pa.FixedSizeListArray.from_arrays(flat, dim))
        return out, rejects


def _features_pass(cfg: Config, data_dir: Path, out_dir: Path, extractor: str, bands, weights: str, force: bool):
    pool = cfg.scoring.lesson1.pool
    key = {"extractor_weights": weights, "bands": sorted(bands), "data": _data_key(data_dir)}
    kwargs = {"extractor": extractor, "bands": sorted(bands), "kind": cfg.scoring.lesson1.extractor_kind}
    return run_pass(
        name=f"score_l1:{out_dir.name}", input_dir=data_dir, out_dir=out_dir,
        scorer_factory=FeatureScorer, scorer_kwargs=kwargs,
        pool=pool, key=key, columns=list(FeatureScorer.input_columns), force=force,
    )


def _data_key(data_dir: Path) -> dict:
    manifest = read_manifest(data_dir)
    return {"dir": storage.readable(data_dir.resolve()), "config_hash": manifest.get("config_hash"),
            "num_rows": manifest.get("num_rows"), "created": manifest.get("created_unix")}


def _read_features(feature_dirs: list[Path], columns: list[str]) -> pa.Table:
    tables = [pq.read_table(p, columns=columns) for d in feature_dirs for p in shard_paths(d)]
    return pa.concat_tables(tables) if tables else pa.table({c: [] for c in columns})


def _as_matrix(column) -> np.ndarray:
    column = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    dim = column.type.list_size
    return np.asarray(column.flatten().to_numpy(zero_copy_only=False), np.float64).reshape(-1, dim)


def _bandwidth(feature_dirs: list[Path], l1) -> tuple[float, int]:
    """`mmd.pooled_bandwidth`'s rule over every feature row (infrared and visible):
    only the chosen rows' features are read."""
    ids = _read_features(feature_dirs, ["sample_id"]).column("sample_id").to_pylist()
    chosen = pa.array(sorted(ids[i] for i in mmd.bandwidth_rows(ids, l1.seed, l1.bandwidth_sample)), pa.string())
    parts = []
    for d in feature_dirs:
        for p in shard_paths(d):
            t = pq.read_table(p, columns=["sample_id", "feature"])
            parts.append(t.filter(pc.is_in(t.column("sample_id"), value_set=chosen)))
    sample = pa.concat_tables(parts).sort_by("sample_id")
    x = _as_matrix(sample.column("feature"))
    return mmd.median_bandwidth(x, l1.seed, max(2, x.shape[0])), x.shape[0]


def _rff_part_sums(path: str, dim: int, D: int, s: float, seed: int, vis_only: bool):
    t = pq.read_table(storage.fetch(path), columns=["band", "feature"])  # a task on any node
    rff = mmd.RFF(dim, D, s, seed)
    phi = rff.features(_as_matrix(t.column("feature")))
    band = np.asarray(t.column("band").to_pylist(), dtype=object)
    is_vis = np.isin(band, VISIBLE_BANDS) if not vis_only else np.ones(len(band), bool)
    return mmd.rff_partial_sums(phi[~is_vis]), mmd.rff_partial_sums(phi[is_vis])


def _rff_part_distances(path: str, dim: int, D: int, s: float, seed: int, c_ir, c_vis):
    t = pq.read_table(storage.fetch(path))  # a task on any node
    t = t.filter(pc.is_in(t.column("band"), pa.array(INFRARED_BANDS)))
    phi = mmd.RFF(dim, D, s, seed).features(_as_matrix(t.column("feature")))
    return t.drop(["feature"]), mmd.rff_distances(phi, c_ir, c_vis)


def _distances_rff(feature_dirs, vis_dirs, l1, s: float, dim: int, num_cpus: float):
    import ray

    sums_task = ray.remote(num_cpus=num_cpus)(_rff_part_sums)
    dist_task = ray.remote(num_cpus=num_cpus)(_rff_part_distances)
    D = l1.rff_dim
    own = [str(p) for d in feature_dirs for p in shard_paths(d)]
    ext = [str(p) for d in vis_dirs for p in shard_paths(d)]
    results = ray.get([sums_task.remote(p, dim, D, s, l1.seed, False) for p in own]
                      + [sums_task.remote(p, dim, D, s, l1.seed, True) for p in ext])
    # Integer fixed-point sums: exact, so any part order gives the same bits.
    ir_sum = mmd.combine_sums(r[0] for r in results if r[0][1] > 0)
    vis_sum = mmd.combine_sums(r[1] for r in results if r[1][1] > 0)
    c_ir, c_vis = mmd.centroid_from_sums(*ir_sum), mmd.centroid_from_sums(*vis_sum)
    pieces = ray.get([dist_task.remote(p, dim, D, s, l1.seed, c_ir, c_vis) for p in own])
    rows = pa.concat_tables([t for t, _ in pieces])
    d = np.concatenate([d for _, d in pieces])
    m = mmd.rff_mmd(c_ir, c_vis)
    stats = {"estimator": "rff", "mmd": m, "mmd2": m * m, "rff_dim": D, "rff_seed": l1.seed,
             "n_ir": ir_sum[1], "n_vis": vis_sum[1], "degenerate": m == 0.0}
    return rows, d, stats


def _distances_exact(feature_dirs, vis_dirs, s: float):
    cols = ["sample_id", "band", "split", "feature"]
    own = _read_features(feature_dirs, cols).sort_by("sample_id")
    is_ir = pc.is_in(own.column("band"), pa.array(INFRARED_BANDS))
    ir = own.filter(is_ir)
    vis = _read_features(vis_dirs, cols) if vis_dirs else own.filter(pc.invert(is_ir))
    vis = vis.sort_by("sample_id")
    d, stats = mmd.exact_distances(_as_matrix(ir.column("feature")), _as_matrix(vis.column("feature")), s)
    return ir.drop(["feature"]), d, stats


def score_ir_vis(
    cfg: Config,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    extractor: str | None = None,
    estimator: str | None = None,
    visible_data: str | None = None,
    force: bool = False,
) -> dict:
    """Score every infrared caption row of `data_dir`; returns the manifest."""
    from irgpt.models.mae import TINY, extractor_kind, load_extractor, weights_hash

    t_start = time.perf_counter()
    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir).resolve()  # actors have another cwd
    l1 = cfg.scoring.lesson1
    extractor = extractor or l1.extractor
    visible_data = visible_data or l1.visible_data
    est_choice = estimator or l1.estimator
    if est_choice not in ("auto", "exact", "rff"):
        raise CommandError(f"--estimator {est_choice!r}: choose exact, rff or auto")
    data_manifest = read_manifest(data_dir)
    untrained = extractor == TINY
    if untrained:
        warn_untrained("the Lesson 1 feature extractor", "scoring.lesson1.extractor", TINY)
    ensure_ray(cfg.ray)
    model = load_extractor(extractor, kind=l1.extractor_kind)
    weights, kind = weights_hash(model), extractor_kind(model)
    dim = int(model.config.hidden_size)
    del model
    if force:
        storage.clear(out_dir)

    own_bands = list(INFRARED_BANDS) + ([] if visible_data else list(VISIBLE_BANDS))
    feature_dirs, vis_dirs = [out_dir / FEATURES], []
    _features_pass(cfg, data_dir, out_dir / FEATURES, extractor, own_bands, weights, False)
    if visible_data:
        vis_dirs = [out_dir / VIS_FEATURES]
        _features_pass(cfg, storage.fetch(visible_data), vis_dirs[0], extractor, list(VISIBLE_BANDS), weights, False)

    counts = pc.value_counts(_read_features(feature_dirs, ["band"]).column("band")).to_pylist()
    by_band = {c["values"]: c["counts"] for c in counts}
    n_ir = sum(v for b, v in by_band.items() if b in INFRARED_BANDS)
    n_vis = sum(v for b, v in by_band.items() if b in VISIBLE_BANDS)
    if visible_data:
        n_vis = sum(pq.ParquetFile(p).metadata.num_rows for p in shard_paths(vis_dirs[0]))
    if n_vis == 0:
        raise CommandError(
            f"{data_dir}: no visible images (bands vis / vis_gray, task caption) to form the visible domain; "
            "add visible rows to the dataset or pass a visible reference with --visible-data DIR"
        )
    if n_ir == 0:
        raise CommandError(f"{data_dir}: no infrared caption rows (bands {', '.join(INFRARED_BANDS)}) to score")

    t0 = time.perf_counter()
    s, n_sample = _bandwidth(feature_dirs + vis_dirs, l1)
    chosen = mmd.choose_estimator(n_ir, n_vis, l1) if est_choice == "auto" else est_choice
    if chosen == "rff":
        rows, d, stats = _distances_rff(feature_dirs, vis_dirs, l1, s, dim, l1.pool.num_cpus)
    else:
        rows, d, stats = _distances_exact(feature_dirs, vis_dirs, s)
    stats.update(bandwidth=s, bandwidth_sample=n_sample)
    ids = rows.column("sample_id").to_pylist()
    rank = normalized_rank(d, ids)
    log0(f"[score_l1] {chosen} distances for {len(ids)} infrared rows vs {n_vis} visible "
         f"in {time.perf_counter() - t0:.1f}s (bandwidth {s:.4g}, MMD {stats['mmd']:.4g})")

    out = rows.append_column("d_ir_vis", pa.array(d.astype(np.float32)))
    out = out.append_column("rank_l1", pa.array(rank.astype(np.float32)))
    out = out.append_column("scorer_version", pa.array([SCORER_VERSION] * len(ids)))
    out = out.sort_by("sample_id")
    out = attach_data_column(out, data_dir, "gt_band_rank")
    write_score_parts(out_dir, out, l1.pool.part_rows)
    rejects = read_rejects_parts([out_dir / FEATURES] + vis_dirs)
    write_rejects(out_dir, rejects)
    manifest = base_manifest(
        "scores",
        lesson="l1",
        num_rows=out.num_rows,
        rejected=rejects.num_rows,
        untrained=untrained,
        columns=out.column_names,
        data={"dir": str(data_dir), "config_hash": data_manifest.get("config_hash"),
              "visible_data": visible_data},
        provenance={
            "scorer": SCORER_VERSION, "extractor": extractor, "extractor_kind": kind, "extractor_weights_hash": weights,
            "config_hash": config_hash(l1), "seed": l1.seed, "estimator": chosen,
        },
        config=cfg.to_dict()["scoring"]["lesson1"],
        stats=stats,
        ray_nodes=part_nodes(*feature_dirs, *vis_dirs),
        summary=summarize(out),
        seconds=round(time.perf_counter() - t_start, 2),
    )
    write_manifest(out_dir, manifest)
    return manifest


def summarize(out: pa.Table) -> dict:
    """Mean d per band and, with ground truth, Spearman(d, gt_band_rank)."""
    from scipy.stats import spearmanr

    bands = np.asarray(out.column("band").to_pylist(), dtype=object)
    d = out.column("d_ir_vis").to_numpy().astype(np.float64)
    summary = {"mean_d_by_band": {b: float(d[bands == b].mean()) for b in sorted(set(bands))},
               "count_by_band": {b: int((bands == b).sum()) for b in sorted(set(bands))}}
    if "gt_band_rank" in out.column_names:
        gt = out.column("gt_band_rank").to_numpy(zero_copy_only=False).astype(np.float64)
        ok = np.isfinite(gt)
        if ok.sum() > 2:
            summary["spearman_gt_band_rank"] = float(spearmanr(d[ok], gt[ok]).statistic)
    return summary
