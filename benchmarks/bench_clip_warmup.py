"""Lesson 2 warm-up throughput on Ray Train with 1 and 2 workers (+ optional quality check).

    .venv/bin/python benchmarks/bench_clip_warmup.py              # writes benchmarks/results/clip_warmup.json
    .venv/bin/python benchmarks/bench_clip_warmup.py --quality    # also AUROC / Eq. 5 weights after 1 worker

Data: the synthetic dataset (`irgpt.data.synth`, caption rows only: the
warm-up reads nothing else) with `--scenes` scenes, 20% misaligned captions.
Each worker count runs `clip_warmup` end to end; `samples_per_s` is the
steady state (epochs after the first, which also pays for allocator warm-up),
`startup_s` the rest of the wall time (Ray Train worker group, imports, data
decode, checkpoints). Wall times on a shared machine include contention: the
load average is recorded beside them.

`--quality` scores every infrared caption pair before and after the 1-worker
warm-up against the fixed pool (`PoolLoss`, K = 255) in a plain loop and
reports AUROC(loss_after, gt_misaligned), AUROC(alpha) and the mean Eq. 5
weight of misaligned vs aligned pairs (tracker issue 4).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from irgpt.config import load_config  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "clip_warmup.json"


def make_data(out: Path, scenes: int, seed: int) -> None:
    import irgpt.data.synth as synth

    # Only caption rows matter here; skipping the task builder also keeps the
    # benchmark independent of it.
    synth._SceneRows.task_rows = lambda self, band, image: []
    synth.synthesize(synth.SynthConfig(num_samples=scenes, seed=seed, misaligned_fraction=0.2, num_workers=1),
                     out, progress=False)


def quality(cfg, data_dir: Path, warm_dir: Path) -> dict:
    import numpy as np
    import pyarrow.parquet as pq

    from irgpt.data.io import shard_paths
    from irgpt.models.clip import image_size, is_ir_caption, load_clip, prepare_pairs
    from irgpt.scoring.clip_loss import PoolLoss, auroc, select_pool
    from irgpt.scoring.weights import alpha, eq5_weights
    from irgpt.train.clip_job import initial_model

    t0 = time.perf_counter()
    l2 = cfg.scoring.lesson2
    before, preprocess, tokenizer = initial_model(cfg)
    after, _, _ = load_clip(l2.model, warm_dir / "clip_warmup.pt")
    cols = ["sample_id", "image", "image_path", "conversations", "band", "task", "split", "gt_misaligned"]
    rows = [r for p in shard_paths(data_dir) for r in pq.read_table(p, columns=cols).to_pylist()
            if is_ir_caption(r["band"], r["task"])]
    images, tokens, ids, _, _ = prepare_pairs(rows, image_size(before), tokenizer, l2.context_length)
    meta = {r["sample_id"]: r for r in rows}
    gt = np.array([bool(meta[s]["gt_misaligned"]) for s in ids])
    train = np.array([meta[s]["split"] == "train" for s in ids])
    pool_ids = select_pool(ids, l2.pool_size, l2.seed)
    at = [ids.index(s) for s in pool_ids]
    loss = {}
    for name, model in (("before", before), ("after", after)):
        scorer = PoolLoss(model, images[at], tokens[at], pool_ids, k=l2.pool_size, preprocess=preprocess)
        loss[name] = scorer.losses(images, tokens, ids).astype(np.float64)
    a = alpha(loss["before"], loss["after"])
    w = eq5_weights(a)
    return {
        "pairs": len(ids), "train_pairs": int(train.sum()), "misaligned": int(gt.sum()),
        "auroc_loss_after": auroc(loss["after"], gt), "auroc_alpha": auroc(a, gt),
        "auroc_loss_before": auroc(loss["before"], gt),
        "auroc_loss_after_train_split": auroc(loss["after"][train], gt[train]),
        "auroc_loss_after_heldout": auroc(loss["after"][~train], gt[~train]),
        "mean_weight_misaligned": float(w[gt].mean()), "mean_weight_aligned": float(w[~gt].mean()),
        "scoring_s": round(time.perf_counter() - t0, 1),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=400, help="synthetic scenes (400 = the demo)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quality", action="store_true", help="score before/after the 1-worker run (uses config epochs)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    from irgpt.ray_utils import ensure_ray
    from irgpt.train.clip_job import clip_warmup

    results = {"python": platform.python_version(), "cpus": os.cpu_count(), "scenes": args.scenes, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        t0 = time.perf_counter()
        make_data(data, args.scenes, args.seed)
        results["synth_s"] = round(time.perf_counter() - t0, 1)
        for workers in args.workers:
            epochs = None if (args.quality and workers == 1) else args.epochs
            sets = [f"scoring.lesson2.warmup.num_workers={workers}"]
            sets += [f"scoring.lesson2.warmup.epochs={epochs}"] if epochs else []
            cfg = load_config(None, sets)
            ensure_ray(cfg.ray)
            load = os.getloadavg()[0]
            rep = clip_warmup(cfg, data, Path(tmp) / f"w{workers}")
            steady = rep["history"][1:] or rep["history"]
            sps = sum(h["steps"] for h in steady) * rep["batch_size"] / sum(h["seconds"] for h in steady)
            run = {
                "workers": workers, "epochs": rep["epochs"], "pairs": rep["num_pairs"], "batch_size": rep["batch_size"],
                "steps": rep["steps"], "samples_per_s": round(sps, 1), "seconds": round(rep["seconds"], 1),
                "train_s": round(rep["train_seconds"], 1), "startup_s": round(rep["seconds"] - rep["train_seconds"], 1),
                "losses": [round(x, 4) for x in rep["losses"]], "load_avg_1m_before": round(load, 2),
            }
            if args.quality and workers == 1:
                run["quality"] = quality(cfg, data, Path(tmp) / "w1")
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
