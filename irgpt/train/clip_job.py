"""`irgpt clip-warmup`: the short CLIP fine-tune between l and l' (docs/method.md, Lesson 2),
a `TrainingJob` on Ray Train.

Ordinary CLIP training on the infrared caption pairs of the train split
(bands nir / swir / mwir / lwir / unknown, task `caption`), on Ray Train
(`TorchTrainer`, gloo on CPU). One code path for any number of workers:
`world_size = 1` is the same loop.

Batch arithmetic (defined once, here). `warmup.batch_size` is the GLOBAL
batch B: each of W workers takes B // W pairs per step and the image / text
features are all-gathered (`open_clip.ClipLoss(local_loss=False,
gather_with_grad=True)`), so every rank computes the same loss over all B
pairs with B - 1 negatives each. Gradients: the all-gather's backward sums
the B-pair loss gradient onto each rank's features (a factor W) and DDP
averages parameter gradients over ranks (a factor 1/W), so the update is
the gradient of the global-batch loss, as with one worker. Steps per epoch
= floor(min over ranks of the rank's pairs / (B // W)); the last partial
batch is dropped so every step has B pairs.

Data (Decision). Ray Data's streaming order is not deterministic, so each
worker reads its own deterministic slice: the driver lists the eligible rows
of the sorted Parquet shards (a few small columns), the global eligible list
is cut into W contiguous, balanced ranges, and rank r reads, decodes (grey,
model size) and tokenizes its range once, holding it in memory
(~N/W * S^2 bytes of pixels). Each epoch it shuffles with
`default_rng([seed, epoch, rank])`. With one worker, the same seed and data
therefore give the same weights hash (tested).

Optimiser: AdamW (lr, weight_decay from config; betas (0.9, 0.98), eps 1e-6
as CLIP; no decay on gains, biases and logit_scale, as open_clip's
training), linear warm-up over the first `WARMUP_FRACTION` of steps then
cosine decay to 0 (`irgpt.train.schedule`); logit_scale clamped to ln(100)
after each step, as open_clip. Checkpoints (`irgpt.train.skeleton`): model +
optimiser + schedule + history after every epoch (keep 2); a dead worker
restarts the group from the last epoch (`scoring.lesson2.warmup.max_failures`),
a rerun with the same settings and `--out` resumes from the latest one; other
settings get another Ray run name, so they never resume a foreign state.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from irgpt import storage
from irgpt.errors import CommandError
from irgpt.train.skeleton import TrainingJob, read_state

WARMUP_FRACTION = 0.1
"""Linear lr warm-up over this fraction of all steps, then cosine to 0."""
ADAM_BETAS = (0.9, 0.98)
ADAM_EPS = 1e-6
MAX_LOGIT_SCALE = math.log(100.0)
READ_COLUMNS = ["band", "task", "split"]
PAIR_COLUMNS = ["sample_id", "image", "image_path", "conversations"]
CHECKPOINT_FILE = "state.pt"
OUT_MODEL = "clip_warmup.pt"
OUT_REPORT = "clip_warmup.json"


# --------------------------------------------------------------- the data ----
def plan_rows(data_dir: str | Path) -> list[dict]:
    """Per sorted shard: the row indices of train-split infrared caption rows."""
    import pyarrow.parquet as pq

    from irgpt.data.io import shard_paths
    from irgpt.data.schema import is_ir_caption

    paths = shard_paths(data_dir)
    if not paths:
        raise CommandError(f"{data_dir}: no part-*.parquet shards")
    plan = []
    for path in paths:
        t = pq.read_table(path, columns=READ_COLUMNS).to_pydict()
        rows = [i for i, (b, k, s) in enumerate(zip(t["band"], t["task"], t["split"])) if s == "train" and is_ir_caption(b, k)]
        if rows:
            plan.append({"file": storage.readable(path.resolve()), "rows": rows})  # the same on any machine
    return plan


def rank_slice(plan: list[dict], rank: int, world: int) -> list[tuple[str, list[int]]]:
    """Rank `rank`'s contiguous share [n*r/W, n*(r+1)/W) of the global eligible row list."""
    total = sum(len(p["rows"]) for p in plan)
    lo, hi = total * rank // world, total * (rank + 1) // world
    out, start = [], 0
    for p in plan:
        n = len(p["rows"])
        a, b = max(lo, start), min(hi, start + n)
        if a < b:
            out.append((p["file"], p["rows"][a - start : b - start]))
        start += n
    return out


def load_rank_pairs(plan: list[dict], rank: int, world: int, size: int, tokenizer, context_length: int) -> dict:
    """Read + decode + tokenize this rank's slice (see module doc)."""
    import pyarrow.parquet as pq

    from irgpt.models.clip import prepare_pairs

    images, tokens, ids, rejects, truncated = [], [], [], [], 0
    for path, rows in rank_slice(plan, rank, world):
        table = pq.read_table(storage.fetch(path), columns=PAIR_COLUMNS).take(rows)
        im, tok, sid, trunc, rej = prepare_pairs(table.to_pylist(), size, tokenizer, context_length)
        if sid:
            images.append(im)
            tokens.append(tok)
        ids += sid
        rejects += rej
        truncated += int(trunc.sum())
    return {
        "images": np.concatenate(images) if images else np.zeros((0, size, size), np.uint8),
        "tokens": torch.cat(tokens) if tokens else torch.zeros(0, context_length, dtype=torch.long),
        "ids": ids, "rejects": rejects, "truncated": truncated,
    }


# -------------------------------------------------------------- the loop ----
def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """open_clip's rule: no weight decay on 1-d params (gains, biases), logit_scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if skip else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def make_training(model: torch.nn.Module, c: dict, total_steps: int, rank: int = 0, world: int = 1):
    """(optimizer, lr schedule, loss) of the warm-up (module doc)."""
    import open_clip

    from irgpt.train.schedule import warmup_cosine

    opt = torch.optim.AdamW(param_groups(model, c["weight_decay"]), lr=c["lr"], betas=ADAM_BETAS, eps=ADAM_EPS)
    sched = warmup_cosine(opt, total_steps, WARMUP_FRACTION)
    loss_fn = open_clip.ClipLoss(local_loss=False, gather_with_grad=True, rank=rank, world_size=world)
    return opt, sched, loss_fn


def train_step(ddp, model, opt, sched, loss_fn, preprocess, data: dict, idx: np.ndarray) -> float:
    """One optimizer step on this rank's pairs `idx` (the global batch is all-gathered)."""
    device = next(model.parameters()).device
    images, tokens = preprocess(data["images"][idx]).to(device), data["tokens"][idx].to(device)
    img_f, txt_f, scale = ddp(images, tokens)
    loss = loss_fn(img_f, txt_f, scale)  # mean over the global batch, both directions
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    return float(loss.detach())


def epoch_order(n: int, seed: int, epoch: int, rank: int) -> np.ndarray:
    """This rank's pair order in `epoch`: `default_rng([seed, epoch, rank])`."""
    return np.random.default_rng([seed, epoch, rank]).permutation(n)


class ClipWarmupJob(TrainingJob):
    """The CLIP warm-up on one rank (module doc)."""

    def setup(self, rank: int, world: int) -> None:
        import ray.train.torch

        from irgpt.models.clip import create_clip, image_size, load_state, weights_hash
        from irgpt.train.dist import gather_objects

        c = self.config
        self.rank, self.world = rank, world
        torch.manual_seed(c["seed_shuffle"])
        model, self.preprocess, tokenizer = create_clip(c["model"], c["pretrained"], c["seed"])
        if c["init_checkpoint"]:
            model.load_state_dict(load_state(c["init_checkpoint"]), strict=True)
        self.hash_before = weights_hash(model)
        self.data = load_rank_pairs(c["plan"], rank, world, image_size(model), tokenizer, c["context_length"])
        self.counts = gather_objects({"n": len(self.data["ids"]), "rejects": self.data["rejects"],
                                      "truncated": self.data["truncated"]})
        self.local_b = c["batch_size"] // world
        self.steps_per_epoch = min(x["n"] for x in self.counts) // self.local_b
        if self.steps_per_epoch < 1:
            raise RuntimeError(f"rank {rank}: {len(self.data['ids'])} pairs, fewer than one local batch of {self.local_b}")
        self.total_steps = self.steps_per_epoch * c["epochs"]
        model.to(ray.train.torch.get_device())  # CPU, or this worker's GPU with warmup.use_gpu
        model.train()
        self.model = model
        self.ddp = ray.train.torch.prepare_model(model, move_to_device=False)  # DDP when world > 1
        self.opt, self.sched, self.loss_fn = make_training(model, c, self.total_steps, rank, world)
        self.history: list[dict] = []
        self.resumed_from = 0

    def step(self, step: int) -> dict:
        epoch, s = divmod(step, self.steps_per_epoch)
        if s == 0:
            self.order = epoch_order(len(self.data["ids"]), self.config["seed_shuffle"], epoch, self.rank)
            self.t0, self.total = time.perf_counter(), 0.0
        idx = np.sort(self.order[s * self.local_b : (s + 1) * self.local_b])
        loss = train_step(self.ddp, self.model, self.opt, self.sched, self.loss_fn, self.preprocess, self.data, idx)
        self.total += loss
        if s < self.steps_per_epoch - 1:
            return {"loss": loss}
        seconds = time.perf_counter() - self.t0
        self.history.append({
            "epoch": epoch, "loss": self.total / self.steps_per_epoch, "steps": self.steps_per_epoch,
            "seconds": seconds, "samples_per_s": self.steps_per_epoch * self.local_b * self.world / seconds,
            "logit_scale": float(self.model.logit_scale.detach().exp()), "lr_end": self.sched.get_last_lr()[0],
        })
        return {"epoch": epoch, "loss": self.history[-1]["loss"]}

    def checkpoint_due(self, done: int) -> bool:
        return done % self.steps_per_epoch == 0

    def save(self, directory: Path, rank: int, final: bool) -> dict:
        if rank == 0:  # the same weights on every rank (DDP)
            torch.save({"model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                        "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict()},
                       directory / CHECKPOINT_FILE)
        return {"history": self.history, "resumed_from": self.resumed_from,
                "rejects": [r for x in self.counts for r in x["rejects"]]}

    def load(self, directory: Path, rank: int, state: dict) -> None:
        saved = torch.load(directory / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
        self.model.load_state_dict(saved["model"])  # copies into the (device) parameters
        self.opt.load_state_dict(saved["optimizer"])
        self.sched.load_state_dict(saved["scheduler"])
        self.history = state["history"]
        self.resumed_from = len(self.history)

    def finish(self) -> dict:
        return {"epoch": len(self.history) - 1, "loss": self.history[-1]["loss"], "hash_before": self.hash_before,
                "pairs": sum(x["n"] for x in self.counts),
                "truncated": sum(x["truncated"] for x in self.counts),
                "steps_per_epoch": self.steps_per_epoch, "local_batch_size": self.local_b,
                "world_size": self.world}


# ------------------------------------------------------------ the driver ----
def initial_model(cfg, init_checkpoint: str | None = None):
    """The pre-warm-up CLIP (the model of l): `lesson2.model` / `pretrained`, init seed
    `lesson2.seed`, then `init_checkpoint` if given. Scorers rebuild it with this."""
    from irgpt.models.clip import create_clip, load_state

    l2 = cfg.scoring.lesson2
    model, preprocess, tokenizer = create_clip(l2.model, l2.pretrained, l2.seed)
    if init_checkpoint:
        model.load_state_dict(load_state(init_checkpoint), strict=True)
    return model, preprocess, tokenizer


def _loop_config(cfg, plan: list[dict], init_checkpoint: str | None) -> dict:
    l2, w = cfg.scoring.lesson2, cfg.scoring.lesson2.warmup
    return {
        "model": l2.model, "pretrained": l2.pretrained, "seed": l2.seed, "init_checkpoint": init_checkpoint,
        "context_length": l2.context_length, "epochs": w.epochs, "lr": w.lr, "batch_size": w.batch_size,
        "weight_decay": w.weight_decay, "seed_shuffle": w.seed, "plan": plan,
        "num_workers": w.num_workers, "use_gpu": w.use_gpu,  # part of the run's name: no resume across them
    }


def clip_warmup(cfg, data_dir: str | Path, out_dir: str | Path, init_checkpoint: str | None = None,
                *, fail_at_step: int | None = None) -> dict:
    """Warm CLIP up on `data_dir`'s train IR caption pairs; write `out_dir/clip_warmup.{pt,json}`.

    `fail_at_step` is the kill test hook (`irgpt.train.skeleton`).

    Returns the report written to `clip_warmup.json` (losses per epoch,
    steps, samples/s, seconds, seeds, config, weights hash before / after).
    """
    from irgpt.config.loader import config_hash, to_dict
    from irgpt.data.io import atomic_write_json, base_manifest, manifest_hash
    from irgpt.data.schema import stable_hash
    from irgpt.models.clip import save_clip, weights_hash
    from irgpt.ray_utils import ensure_ray, log0
    from irgpt.train.skeleton import fit

    t_start = time.perf_counter()
    w = cfg.scoring.lesson2.warmup
    if w.num_workers < 1 or w.batch_size % w.num_workers:
        raise CommandError(
            f"scoring.lesson2.warmup.batch_size={w.batch_size} must be a multiple of num_workers={w.num_workers} "
            "(it is the global batch, split evenly across workers)"
        )
    if init_checkpoint is not None:
        if not Path(init_checkpoint).is_file():
            raise CommandError(f"--init-checkpoint: file not found: {init_checkpoint}")
        init_checkpoint = str(Path(init_checkpoint).resolve())
    out = Path(out_dir).resolve()
    plan = plan_rows(data_dir)
    n = sum(len(p["rows"]) for p in plan)
    if n < w.batch_size:
        raise CommandError(
            f"{data_dir}: {n} train infrared caption pairs, fewer than one batch of "
            f"scoring.lesson2.warmup.batch_size={w.batch_size}"
        )
    model, _, _ = initial_model(cfg, init_checkpoint)
    hash_before = weights_hash(model)
    loop = _loop_config(cfg, plan, init_checkpoint)
    # Same settings + same --out resume; anything else gets its own Ray run (module doc).
    key = f"{stable_hash(repr(sorted((k, repr(v)) for k, v in loop.items())) + hash_before, 48):012x}"
    name = f"clip-warmup-{key}"
    log0(f"[clip-warmup] {n} pairs, {w.epochs} epochs, global batch {w.batch_size} on {w.num_workers} worker(s)")
    ensure_ray(cfg.ray)
    hooks = {"fail_at_step": fail_at_step, "fail_marker": str(out / "fail_marker") if fail_at_step else None}
    result = fit({"job": "irgpt.train.clip_job:ClipWarmupJob", **loop, **hooks}, name=name, storage=out / "ray",
                 num_workers=w.num_workers, use_gpu=w.use_gpu, max_failures=w.max_failures)
    if result.error is not None:
        raise result.error
    if result.checkpoint is None:
        raise RuntimeError("clip-warmup: the run finished without a checkpoint")
    with result.checkpoint.as_directory() as d:
        saved = torch.load(os.path.join(d, CHECKPOINT_FILE), map_location="cpu", weights_only=True)
        client = read_state(Path(d), 0, name)
    state = {**(result.metrics or {}), **client}
    model.load_state_dict(saved["model"], strict=True)
    save_clip(model, out / OUT_MODEL)
    history = state["history"]
    train_s = sum(h["seconds"] for h in history)
    steps = sum(h["steps"] for h in history)
    samples = steps * state["local_batch_size"] * state["world_size"]
    if state["hash_before"] != hash_before:
        raise RuntimeError("clip-warmup: workers started from other weights than the driver built")
    report = base_manifest(
        "clip_warmup",
        config_hash=config_hash(cfg.scoring.lesson2),
        data_dir=str(Path(data_dir).resolve()),
        data_manifest_hash=manifest_hash(data_dir),
        model=cfg.scoring.lesson2.model,
        pretrained=cfg.scoring.lesson2.pretrained,
        init_checkpoint=init_checkpoint,
        init_seed=cfg.scoring.lesson2.seed,
        seed=w.seed,
        config=to_dict(cfg.scoring.lesson2),
        num_pairs=state["pairs"],
        rejects=state["rejects"],
        truncated_captions=state["truncated"],
        world_size=state["world_size"],
        batch_size=w.batch_size,
        local_batch_size=state["local_batch_size"],
        epochs=w.epochs,
        steps_per_epoch=state["steps_per_epoch"],
        steps=steps,
        losses=[h["loss"] for h in history],
        history=history,
        train_seconds=train_s,
        samples_per_s=samples / train_s if train_s else None,
        seconds=time.perf_counter() - t_start,
        resumed_from_epoch=state["resumed_from"],
        ray_run_name=name,
        weights_hash_before=hash_before,
        weights_hash_after=weights_hash(model),
        checkpoint=str(out / OUT_MODEL),
        ray_run=str(out / "ray" / name),
    )
    atomic_write_json(out / OUT_REPORT, report)
    log0(f"[clip-warmup] done: loss {report['losses'][0]:.3f} -> {report['losses'][-1]:.3f}, {steps} steps, "
         f"{report['samples_per_s']:.0f} samples/s, {report['seconds']:.0f}s; wrote {out / OUT_MODEL}")
    return report


def ensure_clip_warmup(cfg, data_dir: str | Path, out_dir: str | Path) -> Path:
    """The warm-up checkpoint for `cfg` and `data_dir` in `out_dir` (`clip_warmup.pt`).

    Reused when `clip_warmup.json` there was made with the same `scoring.lesson2`
    config hash and the same data manifest hash; otherwise the warm-up runs (a
    rerun of an interrupted one resumes from its last epoch).
    """
    from irgpt.config.loader import config_hash
    from irgpt.data.io import manifest_hash
    from irgpt.ray_utils import log0

    out = Path(out_dir).resolve()
    report = out / OUT_REPORT
    done = json.loads(report.read_text()) if report.is_file() else {}
    wanted = {"config_hash": config_hash(cfg.scoring.lesson2), "data_manifest_hash": manifest_hash(data_dir)}
    if done and all(done.get(k) == v for k, v in wanted.items()) and (out / OUT_MODEL).is_file():
        log0(f"[clip-warmup] warm-up already done for these settings and data: {out}")
    else:
        if done:
            log0(f"[clip-warmup] the warm-up in {out} was made from other settings or data: redone")
        clip_warmup(cfg, data_dir, out)
    return out / OUT_MODEL
