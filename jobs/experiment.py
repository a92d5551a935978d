"""Tables 3 and 4 over seeds at a scale where the tiny model learns: data and
scores, stage 1 for every ablation row and seed, stage 2 + benchmark for a few
rows, then docs/experiments.md (irgpt/tune/experiment.py).

    python jobs/experiment.py --config configs/experiment.yaml [--set k=v ...] [--out FILE]

Exactly `irgpt experiment`. Re-running reuses every finished part.
"""

import _common

if __name__ == "__main__":
    _common.command("experiment")
