"""Composite ranking and M difficulty tiers from the Lesson 1 and Lesson 2 scores.

    python jobs/tier.py --data DIR --scores L1_DIR --scores L2_DIR --out DIR [--overwrite] [--set curriculum.m=4]

Exactly `irgpt tier` (same flags, defaults and errors).
"""

import _common

if __name__ == "__main__":
    _common.command("tier")
