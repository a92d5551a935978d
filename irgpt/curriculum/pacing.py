"""Optional pacing: which tiers are admitted at an optimizer step (DeepSpeed's terms).

DeepSpeed's curriculum scheduler (`deepspeed/runtime/data_pipeline/
curriculum_scheduler.py`) maps the global step to a difficulty between
`min_difficulty` and `max_difficulty`. Here the difficulty is the index of the
hardest admitted tier: min 0, max M - 1, difficulty_step 1.

- `fixed_linear`: a = floor((M - 1) * min(1, step / total)); all tiers by
  step `total_curriculum_step`.
- `fixed_root`:   a = floor((M - 1) * min(1, step / total) ** (1 / root_degree))
  (degree 2 = square root: harder tiers arrive sooner; degree 1 = linear).
- `fixed_discrete`: DeepSpeed takes explicit `difficulty` / `max_step` lists;
  PacingConfig has none, so the M tiers get equal stages: max_step[k] =
  floor((k + 1) * total / M), and as in DeepSpeed the next tier is admitted
  once step > max_step[k].
- `none`: every tier admitted (a = M - 1).
"""

from __future__ import annotations

import math


def admitted_tier(step: int, cfg, m: int) -> int:
    """Hardest admitted tier (0..m-1) at optimizer step `step`.

    cfg: a `PacingConfig` or a `CurriculumConfig` (its `.pacing` is used).
    """
    pacing = getattr(cfg, "pacing", cfg)
    if m < 1:
        raise ValueError(f"admitted_tier: m must be >= 1, got {m}")
    fn = pacing.function
    if fn == "none" or m == 1:
        return m - 1
    total = pacing.total_curriculum_step
    if total < 1:
        raise ValueError(f"curriculum.pacing.total_curriculum_step must be >= 1 with pacing.function={fn!r}, got {total}")
    step = max(0, int(step))
    if fn == "fixed_discrete":
        return sum(1 for k in range(m - 1) if step > ((k + 1) * total) // m)
    if fn == "fixed_linear":
        degree = 1
    elif fn == "fixed_root":
        degree = pacing.root_degree
        if degree < 1:
            raise ValueError(f"curriculum.pacing.root_degree must be >= 1, got {degree}")
    else:
        raise ValueError(f"unknown curriculum.pacing.function {fn!r}")
    frac = min(1.0, step / total) ** (1.0 / degree)
    return min(m - 1, math.floor(frac * (m - 1)))


def validate_pacing(cfg) -> None:
    """Raise ValueError for pacing options that cannot work (checked once, up front)."""
    admitted_tier(0, cfg, 2)
