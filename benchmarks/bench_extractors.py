"""Lesson 1 quality of the two tiny extractors side by side: ViTMAE vs InfMAE (release topology).

    .venv/bin/python benchmarks/bench_extractors.py [--out PATH]   # default benchmarks/results/extractors.json

The acceptance data of the Lesson 1 slow test (`irgpt data synth --num-samples
400 --seed 11`), default config: `fe_train` (18 epochs, batch 64, 1 worker)
then `score_ir_vis` (exact MMD) for `scoring.lesson1.extractor_kind` vitmae and
infmae (InfMAE: skip4 masking), one after the other in one process on one
local Ray. Reported per kind: mean d_ir_vis per band, whether the band order
nir < swir < min(mwir, lwir) holds, Spearman(d_ir_vis, gt_band_rank), and the
fe-train / scoring wall times. The demo's extractor is whichever kind orders
the bands better (docs/lesson1.md).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import argparse

    from scipy.stats import spearmanr

    from irgpt.config import RayConfig, load_config
    from irgpt.data.io import read_table
    from irgpt.data.schema import INFRARED_BANDS
    from irgpt.data.synth import SynthConfig, synthesize
    from irgpt.ray_utils import ensure_ray
    from irgpt.scoring.ir_vis import score_ir_vis
    from irgpt.train.mae_job import fe_train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "extractors.json"))
    args = parser.parse_args()
    ensure_ray(RayConfig(address=None, num_cpus=2))
    out: dict = {"data": "synth --num-samples 400 --seed 11", "load_average_start": os.getloadavg(), "kinds": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(SynthConfig(num_samples=400, seed=11), tmp / "S", progress=False)
        for kind in ("vitmae", "infmae"):
            cfg = load_config(None, [f"scoring.lesson1.extractor_kind={kind}"])
            t0 = time.perf_counter()
            report = fe_train(cfg, tmp / "S", tmp / f"FE-{kind}")
            t1 = time.perf_counter()
            score_ir_vis(cfg, tmp / "S", tmp / f"E-{kind}", extractor=str(tmp / f"FE-{kind}"), estimator="exact")
            t2 = time.perf_counter()
            t = read_table(tmp / f"E-{kind}", ["band", "d_ir_vis", "gt_band_rank"])
            d, band = t.column("d_ir_vis").to_numpy(), np.array(t.column("band").to_pylist())
            mean = {b: round(float(d[band == b].mean()), 4) for b in INFRARED_BANDS if (band == b).any()}
            out["kinds"][kind] = {
                "band_means": mean,
                "band_order_holds": bool(mean["nir"] < mean["swir"] < min(mean["mwir"], mean["lwir"])),
                "spearman": round(float(spearmanr(d, t.column("gt_band_rank").to_numpy()).statistic), 4),
                "fe_train_s": round(t1 - t0, 1), "score_s": round(t2 - t1, 1),
                "losses": [round(x, 4) for x in report["losses"]], "masking": report["masking"],
            }
            print(kind, json.dumps(out["kinds"][kind]), flush=True)
    out["load_average_end"] = os.getloadavg()
    dest = Path(args.out)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
