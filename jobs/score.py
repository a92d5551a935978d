"""Score samples on Ray Data: Lesson 1 (IR-VIS distance) or Lesson 2 (IR-text alignment).

    python jobs/score.py ir-vis --data DIR --out DIR [--extractor FE_DIR] [--estimator exact|rff|auto] [--config ...]
    python jobs/score.py ir-text --data DIR --out DIR [--warmup CKPT] [--config ...]

Exactly `irgpt score` (same flags, defaults and errors).
"""

import _common

if __name__ == "__main__":
    _common.command("score")
