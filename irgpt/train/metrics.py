"""Training metrics: one JSON line per optimizer step, TensorBoard, a progress line.

Only rank 0 writes (rank-0 side effects in one place).
`metrics.jsonl` under the stage's output directory is what the run report,
the summary and the resume-equivalence tests read: one `{"global_step", "epoch",
"tier", "loss", "lr", ...}` object per optimizer step, throughput fields on
every `log_every`-th step, and `{"global_step", "val_loss"}` objects (every
`train.val_every` steps, plus `retrieval_r1` at a stage-1 start and end).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    def __init__(self, out_dir: str | Path, stage: int, rank: int):
        self.stage = stage
        self.active = rank == 0
        self.path = Path(out_dir) / METRICS_FILE
        self._tb = None
        if self.active:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"))
            except ImportError:  # tensorboard is a dependency; tolerate its absence in a minimal env
                self._tb = None

    def truncate_after(self, step: int) -> None:
        """After a restart from a checkpoint at `step`: drop lines of the lost steps."""
        if not self.active or not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("global_step", 0) <= step]
        self.path.write_text("".join(k + "\n" for k in kept))

    def step(self, record: dict) -> None:
        if not self.active:
            return
        self._append(record)
        if self._tb is not None:
            for key in ("loss", "lr"):
                self._tb.add_scalar(f"stage{self.stage}/{key}", record[key], record["global_step"])
            self._tb.add_scalar(f"stage{self.stage}/loss_tier{record['tier']}", record["loss"], record["global_step"])

    def write(self, record: dict) -> None:
        """A val_loss record, or the throughput fields of a log step (printed too)."""
        if not self.active:
            return
        if "val_loss" in record:
            self._append(record)
            if self._tb is not None:
                self._tb.add_scalar(f"stage{self.stage}/val_loss", record["val_loss"], record["global_step"])
                if "retrieval_r1" in record:
                    self._tb.add_scalar(f"stage{self.stage}/retrieval_r1", record["retrieval_r1"],
                                        record["global_step"])
            self.line(f"stage {self.stage} step {record['global_step']}: val_loss {record['val_loss']:.4f}"
                      + (f", retrieval R@1 {record['retrieval_r1']:.3f}" if "retrieval_r1" in record else ""))
            return
        if self._tb is not None:
            for key in ("samples_per_s", "tokens_per_s"):
                self._tb.add_scalar(f"stage{self.stage}/{key}", record[key], record["global_step"])
        self._append({"global_step": record["global_step"], "throughput": {
            k: record[k] for k in ("samples_per_s", "tokens_per_s", "num_samples", "num_truncated") if k in record}})
        self.line(
            f"stage {self.stage} step {record['global_step']} epoch {record['epoch']} tier {record['tier']}: "
            f"loss {record['loss']:.4f} lr {record['lr']:.2e} {record['samples_per_s']:.1f} samples/s "
            f"{record['tokens_per_s']:.0f} tok/s"
            + (f" ({record['num_truncated']} truncated so far)" if record.get("num_truncated") else "")
        )

    def line(self, text: str) -> None:
        if self.active:
            # Not print(): on the second TorchTrainer.fit of a driver (stage 2) Ray Train V2's
            # print patching showed every progress line twice.
            sys.stderr.write(f"[train] {text}\n")
            sys.stderr.flush()

    def _append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
