"""The Train V2 -> Tune bridge for a trial's stages, and the `--stop-after` callback.

Ray Train V2 runs a `TorchTrainer` inside a function trainable; its reports
reach the trial only through `TuneReportCallback` (docs/stack.md, "Tune with Ray Train V2").
This subclass also tags each forwarded report with the stage it came from,
so a trial's result history reads `train_stage` 1 then 2. Forwarded reports
carry the loop's keys (`loss`, `global_step`, and at the end `final_val_loss`,
`model`), never `objective`: the trial reports that itself after evaluating.
"""

from __future__ import annotations

import os
import signal
import threading

from ray.tune import Callback
from ray.tune.integration.ray_train import TuneReportCallback

from irgpt.ray_utils import log0


class StageReportCallback(TuneReportCallback):
    """`TuneReportCallback` that adds `train_stage` to every forwarded report."""

    def __init__(self, stage: int):
        super().__init__()
        self.stage = int(stage)

    def after_report(self, run_context, metrics, checkpoint):
        tagged = [{**metrics[0], "train_stage": self.stage}, *metrics[1:]] if metrics else metrics
        super().after_report(run_context, tagged, checkpoint)


def stage_callbacks(stage: int) -> list:
    """What a trial passes as `run_stage(..., callbacks=...)` inside a Tune session."""
    return [StageReportCallback(stage)]


class StopAfter(Callback):
    """End the run once `n` trials have completed (`--stop-after`), as Ctrl-C would.

    Tune's own interrupt path (its SIGUSR1 handler, installed while `fit()`
    runs in the main thread) saves the experiment with the remaining trials
    still pending, so `--resume` runs them; a `Stopper.stop_all()` would mark
    them finished instead. It fires on trial *completion*: a trial whose last
    report was seen but which had not yet returned would be run again on
    resume. Off the main thread (no handler) it does nothing. The callback is
    saved with the experiment; a restored one has no limit, so `--resume`
    runs to the end."""

    def __init__(self, n: int):
        self.n, self.completed, self.sent = n, 0, False

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.completed += 1
        if self.n is None or self.completed < self.n or self.sent:
            return
        self.sent = True
        if threading.current_thread() is threading.main_thread() and callable(signal.getsignal(signal.SIGUSR1)):
            log0(f"[tune] {self.completed} trial(s) completed (--stop-after {self.n}): ending the run; "
                 "continue with --resume")
            os.kill(os.getpid(), signal.SIGUSR1)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.n = None
