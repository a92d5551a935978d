"""Score samples on Ray Data: Lesson 1 (IR-VIS distance) or Lesson 2 (IR-text alignment).

    python jobs/score.py --lesson l1 --data DIR --out DIR --extractor FE_DIR [--config ...] [--set ...]
    python jobs/score.py --lesson l2 --data DIR --out DIR [--config ...]
"""

import _common


def run() -> int:
    p = _common.parser(__doc__)
    p.add_argument("--lesson", choices=["l1", "l2"], required=True)
    p.add_argument("--data", help="dataset directory (default: data.dir / RUN_DIR/data)")
    p.add_argument("--out", required=True)
    p.add_argument("--extractor", help="Lesson 1: MAE directory from fe-train")
    p.add_argument("--force", action="store_true")
    args = p.parse_args()
    cfg = _common.load(args)
    data = args.data or cfg.data_dir
    if args.lesson == "l1":
        from irgpt.scoring.ir_vis import score_ir_vis

        manifest = score_ir_vis(cfg, data, args.out, extractor=args.extractor, force=args.force)
    else:
        from irgpt.scoring.ir_text import score_ir_text

        manifest = score_ir_text(cfg, data, args.out, force=args.force)
    print(f"{manifest['num_rows']} rows scored, {manifest['rejected']} rejected -> {args.out}")
    return 0


if __name__ == "__main__":
    _common.main(run)
