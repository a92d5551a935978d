"""Tables 3 and 4 over seeds at a scale where the tiny model learns: data and
scores, stage 1 for every ablation row and seed, stage 2 + benchmark for a
few rows, then docs/experiments.md (irgpt/tune/experiment.py).

    python jobs/experiment.py --config configs/experiment.yaml [--set k=v ...] [--out FILE]

Re-running reuses every finished part (pipeline stages, ablation runs, stage-2 checks).
"""

import _common


def run() -> int:
    p = _common.parser(__doc__)
    p.set_defaults(config="configs/experiment.yaml")
    p.add_argument("--out", help="the Markdown report (default: experiment.out, docs/experiments.md)")
    args = p.parse_args()
    cfg = _common.load(args)

    from irgpt.tune.experiment import run_experiment

    result = run_experiment(cfg, args.out)
    print(result["markdown"])
    print(f"wrote {', '.join(result['files'])}")
    return 0


if __name__ == "__main__":
    _common.main(run)
