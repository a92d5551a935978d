"""Ranking, tiers, schedules, Eq. 4-5 weights and the tier-aware iterator (docs/curriculum.md).

Import the submodules directly (this package imports nothing, so `irgpt
--help` stays fast):

    from irgpt.scoring.weights import alpha, eq5_weights, distributed_medians
    from irgpt.curriculum.tiers import build_tiers
    from irgpt.curriculum.iterator import TierIterator
    from irgpt.curriculum.pacing import admitted_tier
"""
