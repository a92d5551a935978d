"""All stages in order under run.root/run.name: synth -> fe_train -> score_l1 ->
clip_warmup -> score_l2 -> tier -> train_stage1 -> train_stage2 -> eval -> report.

    python jobs/pipeline.py --config configs/demo.yaml [--set k=v ...] [--force] [--stages a,b]

Exactly `irgpt pipeline` (same flags, defaults and errors). Re-running skips
stages whose outputs are up to date (resumes after a failure).
"""

import _common

if __name__ == "__main__":
    _common.command("pipeline")
