"""Benchmark a trained model (batched greedy generation on Ray Data), or score prediction files.

    python jobs/eval.py --model MODEL_DIR --bench DATA_DIR --out DIR [--config ...]
"""

import json

import _common


def run() -> int:
    p = _common.parser(__doc__)
    p.add_argument("--model", required=True, help="model directory (e.g. RUN/train/stage2/model)")
    p.add_argument("--bench", help="dataset with a benchmark split (default: data.dir / RUN_DIR/data)")
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="benchmark")
    args = p.parse_args()
    cfg = _common.load(args)

    from irgpt.eval.run import run_benchmark

    report = run_benchmark(cfg, args.model, args.bench or cfg.data_dir, args.out, split=args.split)
    print(json.dumps({"psum": report.get("psum"), "nsum": report.get("nsum")}, indent=2))
    return 0


if __name__ == "__main__":
    _common.main(run)
