"""Ray Tune over a search space: each trial re-tiers from the stored scores, trains, evaluates.

    python jobs/tune.py --config configs/demo.yaml --space tune_spaces/default.yaml \
        [--data DIR] [--scores L1 --scores L2] [--out DIR] [--trial-steps N] [--resume] [--set k=v ...]

Exactly `irgpt tune`. Defaults follow the pipeline's run directory: RUN_DIR/data,
RUN_DIR/scores_l1, RUN_DIR/scores_l2, and the results in RUN_DIR/tune.
"""

import _common

if __name__ == "__main__":
    _common.command("tune")
