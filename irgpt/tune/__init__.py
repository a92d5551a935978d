"""Ray Tune over the curriculum and training options, and the paper's ablations (docs/tune.md).

    from irgpt.tune.driver import run_tune        # irgpt tune
    from irgpt.tune.ablate import run_ablation    # irgpt ablate
    from irgpt.tune.trial import run_trial        # one tier + train + evaluate
    from irgpt.tune.space import load_space       # tune_spaces/*.yaml -> Tune domains

Submodules are imported on use: `irgpt.tune.cli` stays cheap for `irgpt --help`.
"""
