"""The learning-rate schedule of the jobs that own their optimiser (MAE, CLIP warm-up).

Linear warm-up over `warmup_fraction` of the steps (at least one), then cosine
decay to 0: `transformers.get_cosine_schedule_with_warmup`. (The VLM stages use
DeepSpeed's `WarmupCosineLR`, the same shape, configured in `ds_config`.)
"""

from __future__ import annotations


def warmup_cosine(optimizer, total_steps: int, warmup_fraction: float):
    """A `LambdaLR` over `total_steps` optimizer steps (stepped once per step)."""
    from transformers import get_cosine_schedule_with_warmup

    from irgpt.train.ds_config import (
        warmup_steps,  # the VLM stages' rule: round(fraction x total), >= 1
    )

    return get_cosine_schedule_with_warmup(optimizer, warmup_steps(total_steps, warmup_fraction), total_steps)
