"""Ray Tune over a search space: each trial re-tiers from the stored scores, trains, evaluates.

    python jobs/tune.py --config configs/demo.yaml --space tune_spaces/default.yaml \
        [--data DIR] [--scores L1 --scores L2] [--out DIR] [--trial-steps N] [--resume] [--set k=v ...]

Defaults follow the pipeline's run directory: RUN_DIR/data, RUN_DIR/scores_l1,
RUN_DIR/scores_l2, and the results in RUN_DIR/tune (trials.csv, best.yaml).
"""

import _common


def run() -> int:
    p = _common.parser(__doc__)
    p.add_argument("--space", help="search space YAML (default: tune.space)")
    p.add_argument("--data")
    p.add_argument("--scores", action="append", default=None, metavar="DIR")
    p.add_argument("--out")
    p.add_argument("--trial-steps", type=int, default=None, help="optimizer steps per stage in each trial")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluation rows per trial (0 = all)")
    p.add_argument("--resume", action="store_true", help="continue the experiment in --out")
    args = p.parse_args()
    cfg = _common.load(args)

    from irgpt.tune.driver import run_tune
    from irgpt.tune.trial import EVAL_LIMIT

    limit = EVAL_LIMIT if args.eval_limit is None else (args.eval_limit or None)
    summary = run_tune(cfg, args.data, args.scores, args.out, space=args.space, resume=args.resume,
                       trial_steps=args.trial_steps, eval_limit=limit)
    if summary["best"] is None:
        raise _common.CommandError(f"no trial reported an objective ({summary['counts']}); see {summary['experiment']}")
    print(f"best trial {summary['best']['trial_id']}: objective {summary['best']['objective']:.6g}; "
          f"files: {', '.join(summary['files'])}")
    return 0


if __name__ == "__main__":
    _common.main(run)
