"""Two-stage VLM training on Ray Train + DeepSpeed (stage 1 on the tiers, stage 2 instructions).

    python jobs/train.py --stage all --data DIR --tiers DIR --out RUN_DIR [--config ...] [--set ...]
    python jobs/train.py --resume RUN_DIR [--config ...]
    python jobs/train.py --dry-run --config configs/internvl2-8b.yaml
"""

import json

import _common


def run() -> int:
    p = _common.parser(__doc__)
    p.add_argument("--stage", choices=["1", "2", "all"], default="all")
    p.add_argument("--data")
    p.add_argument("--tiers")
    p.add_argument("--out")
    p.add_argument("--resume", metavar="RUN_DIR")
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args()
    cfg = _common.load(args)
    if args.dry_run:
        from irgpt.train.dry_run import dry_run

        dry_run(cfg)
        return 0
    from irgpt.train.trainer import resume, train

    if args.resume:
        summary = resume(cfg, args.resume)
    else:
        if not args.out:
            raise _common.CommandError("--out RUN_DIR is required (or --resume RUN_DIR)")
        summary = train(cfg, args.stage, args.data or cfg.data_dir, args.tiers, args.out)
    print(json.dumps({k: v for k, v in summary.items() if k.startswith("stage")}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    _common.main(run)
