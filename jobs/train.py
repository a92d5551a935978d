"""Two-stage VLM training on Ray Train + DeepSpeed (stage 1 on the tiers, stage 2 instructions).

    python jobs/train.py --stage all --data DIR --tiers DIR --out RUN_DIR [--config ...] [--set ...]
    python jobs/train.py --resume RUN_DIR [--config ...]
    python jobs/train.py --dry-run --config configs/internvl2-8b.yaml

Exactly `irgpt train` (same flags, defaults and errors).
"""

import _common

if __name__ == "__main__":
    _common.command("train")
