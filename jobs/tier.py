"""Composite ranking and M difficulty tiers from the Lesson 1 and Lesson 2 scores.

    python jobs/tier.py --data DIR --scores L1_DIR --scores L2_DIR --out DIR [--set curriculum.m=4]
"""

import _common


def run() -> int:
    p = _common.parser(__doc__)
    p.add_argument("--data", help="dataset directory (default: data.dir / RUN_DIR/data)")
    p.add_argument("--scores", action="append", required=True, help="a scores directory (repeatable)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    cfg = _common.load(args)

    from irgpt.curriculum.tiers import build_tiers

    manifest = build_tiers(args.data or cfg.data_dir, args.scores, args.out, cfg.curriculum,
                           overwrite=True, ray_cfg=cfg.ray)
    for tier in manifest.get("tiers", []):
        print(f"tier {tier['tier']}: {tier['rows']} rows")
    return 0


if __name__ == "__main__":
    _common.main(run)
