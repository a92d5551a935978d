"""A small fake run directory with the real layout and data shapes (docs/report.md).

`make_run(root)` writes every stage's outputs; `parts=` limits it to some of
them (a partial run). Numbers are drawn so the plots show what a real run
shows: d grows with band, misaligned pairs lose alignment during warm-up, the
loss falls per tier.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ALL = ("run", "data", "scores_l1", "scores_l2", "tiers", "train", "eval", "tune")
BANDS = ["vis_gray", "nir", "swir", "mwir", "lwir", "unknown"]
GT_RANK = {"vis_gray": 0, "nir": 1, "swir": 2, "mwir": 3, "lwir": 4}
TASKS = ["caption", "scene", "recognition", "grounding", "counting"]
SOURCES = ["synth-street", "synth-aerial", "synth-indoor", "flir-like"]

METRICS = {
    "psum": 301.25, "nsum": 57.5,
    "psum_tasks": ["scene", "recognition", "grounding", "relationship", "reid", "security"],
    "nsum_tasks": ["location", "aerial_counting", "pedestrian_counting"],
    "tasks": {
        "scene": {"score": 61.5, "parse_rate": 0.98, "n": 40, "metric": "accuracy_pct"},
        "recognition": {"score": 72.25, "parse_rate": 1.0, "n": 40, "metric": "accuracy_pct"},
        "grounding": {"score": 12.5, "parse_rate": 0.75, "n": 40, "metric": "gt_boxes_matched_pct"},
        "relationship": {"score": 55.0, "parse_rate": 0.95, "n": 40, "metric": "accuracy_pct"},
        "reid": {"score": 25.0, "parse_rate": 0.9, "n": 40, "metric": "accuracy_pct"},
        "security": {"score": 75.0, "parse_rate": 0.85, "n": 40, "metric": "exact_set_accuracy_pct"},
        "location": {"score": 41.25, "parse_rate": 0.6, "n": 40, "metric": "mean_point_error"},
        "aerial_counting": {"score": 9.75, "parse_rate": 0.8, "n": 40, "metric": "mae"},
        "pedestrian_counting": {"score": 6.5, "parse_rate": 0.7, "n": 40, "metric": "mae"},
    },
}


def _write(directory: Path, table: pa.Table, manifest: dict, shards: int = 2) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    step = -(-table.num_rows // shards)
    for k in range(shards):
        pq.write_table(table.slice(k * step, step), directory / f"part-{k:05d}.parquet")
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _counts(values) -> dict:
    u, c = np.unique(np.asarray(values, dtype=str), return_counts=True)
    return {str(a): int(b) for a, b in zip(u, c)}


def _weights(alpha: np.ndarray) -> np.ndarray:
    """Eq. 5."""
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    pos, neg = alpha > 0, alpha <= 0
    w = np.empty_like(alpha)
    w[pos] = 1 - sig(alpha[pos] / np.median(alpha[pos]))
    w[neg] = 1 + sig(-alpha[neg] / np.median(-alpha[neg]))
    return w


def make_run(root: str | Path, *, name: str = "fake-demo", parts=ALL, n: int = 400, seed: int = 0) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = np.array([f"s{i:05d}" for i in range(n)])
    band = rng.choice(BANDS, n, p=[0.15, 0.2, 0.15, 0.2, 0.2, 0.1])
    task = rng.choice(TASKS, n, p=[0.4, 0.15, 0.15, 0.15, 0.15])
    source = rng.choice(SOURCES, n)
    split = rng.choice(["train", "val", "benchmark"], n, p=[0.8, 0.1, 0.1])
    gt_rank = np.array([GT_RANK.get(b, -1) for b in band])
    misaligned = rng.random(n) < 0.15
    if "data" in parts:
        t = pa.table({"sample_id": ids, "band": band, "source": source, "task": task, "split": split,
                      "gt_band_rank": pa.array(np.where(gt_rank >= 0, gt_rank, None), pa.int32()),
                      "gt_misaligned": misaligned})
        _write(root / "data", t, {"kind": "samples", "num_rows": n, "rejected": 3, "config_hash": "abc123",
                                  "seed": seed, "code_version": "0.1.0", "created_unix": 1.7e9,
                                  "composition": {c: _counts(t.column(c).to_pylist())
                                                  for c in ("band", "task", "source", "split")}})
    ir = band != "vis_gray"
    ir_ids, ir_band = ids[ir], band[ir]
    d = np.array([{"nir": 0.2, "swir": 0.35, "mwir": 0.5, "lwir": 0.65, "unknown": 0.45}[b] for b in ir_band])
    d = (d + rng.normal(0, 0.06, ir.sum())).astype(np.float32)
    rank1 = (np.argsort(np.argsort(d, kind="stable")) / max(len(d) - 1, 1)).astype(np.float32)
    if "scores_l1" in parts:
        t = pa.table({"sample_id": ir_ids, "band": ir_band, "split": split[ir], "d_ir_vis": d, "rank_l1": rank1,
                      "scorer_version": ["ir_vis-1"] * len(d),
                      "gt_band_rank": pa.array(np.where(gt_rank[ir] >= 0, gt_rank[ir], None), pa.int32())})
        means = {b: float(d[ir_band == b].mean()) for b in sorted(set(ir_band))}
        _write(root / "scores_l1", t, {
            "kind": "scores", "lesson": "l1", "num_rows": len(d), "code_version": "0.1.0", "created_unix": 1.7e9,
            "stats": {"estimator": "exact", "mmd": 0.41, "mmd2": 0.168, "bandwidth": 3.2, "bandwidth_sample": 256},
            "summary": {"mean_d_by_band": means, "spearman_gt_band_rank": 0.91},
            "provenance": {"scorer": "ir_vis-1", "extractor": "mae-tiny", "config_hash": "l1hash", "seed": 0}})
    lb = rng.gamma(4.0, 0.5, n) + 0.5
    la = np.where(misaligned, lb * rng.uniform(1.05, 1.5, n), lb * rng.uniform(0.4, 0.95, n))
    alpha = (la - lb) / lb
    weight = _weights(alpha)
    if "scores_l2" in parts:
        t = pa.table({"sample_id": ids, "band": band, "loss_before": lb.astype(np.float32),
                      "loss_after": la.astype(np.float32), "alpha": alpha.astype(np.float32),
                      "weight": weight.astype(np.float32), "rank_l2": np.argsort(np.argsort(la)).astype(np.float32),
                      "gt_misaligned": misaligned})
        _write(root / "scores_l2", t, {
            "kind": "scores", "lesson": "l2", "num_rows": n, "rejected": 0, "rank_by": "loss_after",
            "medians": {"alpha_pos": float(np.median(alpha[alpha > 0])),
                        "neg_alpha_nonpos": float(np.median(-alpha[alpha <= 0]))},
            "summary": {"loss_before": float(lb.mean()), "auroc_loss_after": 0.74, "auroc_alpha": 0.99,
                        "mean_weight_misaligned": float(weight[misaligned].mean()),
                        "mean_weight_aligned": float(weight[~misaligned].mean())},
            "provenance": {"scorer": "ir_text-1", "model": "clip-tiny", "seed": 0}})
    if "tiers" in parts:
        comp = rng.random(n)
        order = np.argsort(comp)
        tier = np.empty(n, int)
        tier[order] = np.arange(n) * 4 // n
        entries = []
        for k in range(4):
            sel = tier == k
            t = pa.table({"sample_id": ids[sel], "band": band[sel], "task": task[sel], "source": source[sel],
                          "tier": np.full(sel.sum(), k), "composite_rank": comp[sel], "weight": weight[sel]})
            (root / "tiers" / f"tier={k}").mkdir(parents=True, exist_ok=True)
            pq.write_table(t, root / "tiers" / f"tier={k}" / "part-00000.parquet")
            entries.append({"tier": k, "size": int(sel.sum()), "mean_weight": float(weight[sel].mean()),
                            "composition": {c: _counts(v[sel]) for c, v in
                                            (("band", band), ("task", task), ("source", source))},
                            "composite_rank": {"min": float(comp[sel].min()), "max": float(comp[sel].max())}})
        (root / "tiers" / "manifest.json").write_text(json.dumps(
            {"kind": "tiers", "tiers": entries, "config": {"m": 4, "lam": 0.5, "schedule": "ascending_stratified_random"}}))
    if "train" in parts:
        for stage, steps, tiers in ((1, 120, 4), (2, 80, 0)):
            lines = []
            for k in range(steps):
                rec = {"stage": stage, "global_step": k, "epoch": 0, "loss": float(3.0 * np.exp(-k / 60) + 0.3
                       + (0.4 * (k * tiers // steps) if tiers else 0) + rng.normal(0, 0.05)),
                       "lr": 1e-3, "samples_per_s": 50.0, "tokens_per_s": 900.0}
                if tiers:
                    rec["tier"] = k * tiers // steps
                    rec["loss_tier"] = rec["loss"]
                lines.append(json.dumps(rec))
                if k % 30 == 29:
                    lines.append(json.dumps({"global_step": k, "val_loss": float(2.5 * np.exp(-k / 80) + 0.5)}))
            (root / "train" / f"stage{stage}").mkdir(parents=True, exist_ok=True)
            (root / "train" / f"stage{stage}" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        (root / "train" / "summary.json").write_text(json.dumps({
            "stage1": {"initial_val_loss": 3.1, "final_val_loss": 1.2, "steps": 120, "samples_per_s": 50.0,
                       "checkpoint": "train/stage1/ckpt", "model": "vlm-tiny"},
            "stage2": {"initial_val_loss": 2.0, "final_val_loss": 1.4, "steps": 80, "samples_per_s": 40.0,
                       "checkpoint": "train/stage2/ckpt", "model": "vlm-tiny"}}))
    if "eval" in parts:
        (root / "eval").mkdir(parents=True, exist_ok=True)
        (root / "eval" / "metrics.json").write_text(json.dumps(METRICS))
    if "tune" in parts:
        (root / "tune").mkdir(parents=True, exist_ok=True)
        rows = ["trial_id,curriculum.m,curriculum.lam,objective,psum,nsum,seconds,status"]
        for i in range(8):
            m, lam = [2, 4, 6, 8][i % 4], round(0.25 * (i % 5), 2)
            obj = 200 + 10 * m - 30 * abs(lam - 0.5) + rng.normal(0, 5)
            rows.append(f"t{i:03d},{m},{lam},{obj:.3f},{obj + 50:.2f},50.0,{30 + i},TERMINATED")
        (root / "tune" / "trials.csv").write_text("\n".join(rows) + "\n")
        (root / "tune" / "best.yaml").write_text("curriculum:\n  m: 8\n  lam: 0.5\n")
    if "run" in parts:
        names = [("synth", "data"), ("fe_train", "fe"), ("score_l1", "scores_l1"), ("score_l2", "scores_l2"),
                 ("tier", "tiers"), ("train_stage1", "train/stage1"), ("train_stage2", "train/stage2"),
                 ("eval", "eval"), ("tune", "tune")]
        stages = [{"name": s, "status": "done" if (o.split("/")[0] in parts) else "skipped",
                   "seconds": round(5 + 3.7 * i, 1), "outputs": [str(root / o)], "started": 1.7e9 + 60 * i,
                   "message": None} for i, (s, o) in enumerate(names)]
        (root / "run.json").write_text(json.dumps({
            "name": name, "config_hash": "cfg0123456789abc", "code_version": "0.1.0", "seed": seed,
            "config": {"run": {"name": name, "seed": seed}, "curriculum": {"m": 4, "lam": 0.5, "seed": 0},
                       "scoring": {"lesson1": {"seed": 1}, "lesson2": {"seed": 2}},
                       "tune": {"objective": "benchmark"}},
            "stages": stages, "versions": {"ray": "2.50.0", "torch": "2.6.0", "transformers": "5.0.0"}}))
    return root
