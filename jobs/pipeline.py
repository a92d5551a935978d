"""All stages in order: synth -> fe_train -> score_l1 -> score_l2 -> tier ->
train_stage1 -> train_stage2 -> eval -> report, under runs/<run.name>/.

    python jobs/pipeline.py --config configs/demo.yaml [--set k=v ...] [--force]

Re-running skips stages whose outputs are up to date (resumes after a failure).
"""

import _common


def run() -> int:
    p = _common.parser(__doc__)
    p.add_argument("--force", action="store_true", help="recompute every stage")
    p.add_argument("--stages", help="comma-separated subset of stages to run (default run.stages)")
    args = p.parse_args()
    if args.stages:
        args.set.append(f"run.stages=[{args.stages}]")
    cfg = _common.load(args)

    from irgpt.pipeline import run_pipeline

    record = run_pipeline(cfg, force=args.force)
    for stage in record["stages"]:
        print(f"{stage['name']:<14} {stage['status']:<8} {stage.get('seconds') or 0:8.1f}s")
    print(f"run directory: {record['run_dir']}  (report: {record['run_dir']}/report/report.html)")
    return 0


if __name__ == "__main__":
    _common.main(run)
