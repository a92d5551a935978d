"""Benchmark a trained model (batched greedy generation on Ray Data), or score prediction files.

    python jobs/eval.py run --model MODEL_DIR --bench DATA_DIR [--out DIR] [--config ...]
    python jobs/eval.py score --predictions FILE [--out FILE]

Exactly `irgpt eval` (same flags, defaults and errors).
"""

import _common

if __name__ == "__main__":
    _common.command("eval")
