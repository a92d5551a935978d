"""`irgpt fe-train`: (re-)train the Lesson 1 MAE with masking, a `TrainingJob` on Ray Train.

Either extractor kind (`scoring.lesson1.extractor_kind`): a ViTMAE (random
masking at `mask_ratio`; the result is a Hugging Face directory) or an InfMAE
(the release's skip4 masking, or `fe_train.masking: random`; the result is
`infmae.pth` in the release's checkpoint layout). Both start from `tiny` or
from the weights `scoring.lesson1.extractor` names.

docs/method.md "Lesson 1": the extractor is re-trained with masking on infrared
and visible grayscale images. Training rows: `split == "train"`,
`task == "caption"` (each scene image once; the instruction rows repeat the
same images), `band` in `FE_BANDS` (every infrared band + `vis_gray`; RGB
`vis` is left out because `vis_gray` is its grayscale rendering already).

Data path: no Ray Data. Every worker lists the same rows (sorted by
sample_id) and decodes its own strided slice `ids[rank::world]` from the
Parquet shards; epoch e's order comes from `default_rng([seed, e, rank])` and
its MAE mask noise from a torch generator seeded by (seed, e, rank), so a run
restarted at an epoch boundary draws exactly what an uninterrupted one would.
The run is reproducible for a given worker count (Ray Data's
`streaming_split` order is not, docs/stack.md), and tiny images do not pay
Ray Data's per-task overhead. The decoded slice is held in memory (uint8:
4 KiB per 64 px image; 50 KiB at 224 px).

Batch arithmetic (defined once): `fe_train.batch_size` is the GLOBAL batch;
each worker takes batch_size / world rows. DDP averages gradients over
workers, so a step equals one step on the global batch (ViTMAE's loss is
the mean over masked patches and every worker has the same batch size).
Steps per epoch = ceil(n_min / per_worker_batch) with n_min the smallest
worker slice (all-reduced), so every rank runs the same number of steps.

Optimiser: AdamW, betas (0.9, 0.95), weight decay 0.05, linear warm-up over
5% of the steps then cosine to 0 (the MAE recipe, He et al. 2022, Table 8;
`irgpt.train.schedule`). Checkpoint after every epoch (model, optimiser,
schedule, history; `irgpt.train.skeleton`): a dead worker restarts the group
from the last epoch, and a rerun with the same settings and `--out` resumes
(a finished run is not retrained).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from irgpt.config import Config, FeTrainConfig
from irgpt.data.io import atomic_write_json, manifest_hash, shard_paths
from irgpt.data.schema import INFRARED_BANDS
from irgpt.errors import CommandError
from irgpt.ray_utils import ensure_ray, log0
from irgpt.train.skeleton import TrainingJob, read_state

__all__ = ["FE_BANDS", "MaeJob", "fe_train", "training_image_ids"]

FE_BANDS = (*INFRARED_BANDS, "vis_gray")
"""Bands the MAE trains on: infrared + visible grayscale (docs/method.md)."""

BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.05
WARMUP_FRACTION = 0.05
STATE_FILE = "mae_state.pt"
MODEL_DIR = "model"
REPORT_FILE = "fe_train.json"


# ------------------------------------------------------------- data ----
def training_image_ids(data_dir: str | Path) -> list[str]:
    """Sample ids of the training images (see module doc), sorted."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pds

    paths = shard_paths(data_dir)
    if not paths:
        raise CommandError(f"{data_dir}: no part-*.parquet shards")
    ds = pds.dataset([str(p) for p in paths], format="parquet")
    keep = (pc.field("split") == "train") & (pc.field("task") == "caption") & pc.field("band").isin(list(FE_BANDS))
    ids = ds.to_table(columns=["sample_id"], filter=keep).column("sample_id").to_pylist()
    return sorted(ids)


def load_images(data_dir: str | Path, ids: list[str], size: int) -> tuple[np.ndarray, list[str]]:
    """Decode the rows `ids` to uint8 (k, size, size), mode L; returns (images, rejected ids)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pds

    from irgpt.data.images import ImageRejected, decode_to_array

    ds = pds.dataset([str(p) for p in shard_paths(data_dir)], format="parquet")
    cols = [c for c in ("sample_id", "image", "image_path") if c in ds.schema.names]
    table = ds.to_table(columns=cols, filter=pc.field("sample_id").isin(ids)).sort_by("sample_id")
    images, rejected = [], []
    data = table.column("image").to_pylist() if "image" in cols else [None] * table.num_rows
    paths = table.column("image_path").to_pylist() if "image_path" in cols else [None] * table.num_rows
    for sid, blob, path in zip(table.column("sample_id").to_pylist(), data, paths):
        try:
            if blob is None and path is None:
                raise ImageRejected("no image bytes and no image_path")
            images.append(decode_to_array(blob if blob is not None else path, size=size, mode="L"))
        except ImageRejected:
            rejected.append(sid)
    out = np.stack(images) if images else np.zeros((0, size, size), np.uint8)
    return out, rejected


# ------------------------------------------------------------- the job ----
class MaeJob(TrainingJob):
    """MAE masked-reconstruction training (module doc)."""

    def setup(self, rank: int, world: int) -> None:
        import torch
        from ray.train.torch import get_device, prepare_model

        from irgpt.models.mae import extractor_kind, load_extractor, unwrap
        from irgpt.train.dist import all_reduce
        from irgpt.train.schedule import warmup_cosine

        c = self.config
        fe = self.fe = FeTrainConfig(**c["fe_train"])
        self.rank, self.world = rank, world
        # One intra-op thread per worker: Ray reserves 1 CPU per worker (ScalingConfig
        # default), and more threads than reserved CPUs only contend.
        torch.set_num_threads(int(c.get("threads", 1)))
        if fe.batch_size % world:
            raise ValueError(f"fe_train.batch_size {fe.batch_size} is not divisible by {world} workers")
        self.local_batch = fe.batch_size // world
        model = load_extractor(c["extractor"], image_size=c["image_size"], seed=fe.seed, kind=c["extractor_kind"])
        self.kind = extractor_kind(model)
        if self.kind == "infmae":
            from dataclasses import replace as with_fields

            model.config = with_fields(model.config, masking=fe.masking, mask_ratio=fe.mask_ratio)
            # The flat 16x16 embedding only orders tokens for skip4 (an argsort, no gradient) and is
            # unused by random masking: frozen, as it is in effect in the release (AdamW skips it there).
            model.patch_embed.requires_grad_(False)
            self.num_patches = model.config.grid ** 2
        else:
            model.config.mask_ratio = fe.mask_ratio  # shared with the encoder's embeddings
            self.num_patches = model.vit.embeddings.patch_embeddings.num_patches
        self.size = int(model.config.image_size)
        ids = training_image_ids(c["data_dir"])[rank::world]
        self.images, rejected = load_images(c["data_dir"], ids, self.size)
        self.n_min = int(all_reduce([len(self.images)], "min")[0])
        self.n_total, self.n_rejected = (int(v) for v in all_reduce([len(self.images), len(rejected)]))
        if self.n_min == 0:
            raise ValueError("a worker has no decodable training images")
        self.steps_per_epoch = math.ceil(self.n_min / self.local_batch)
        self.total_steps = self.steps_per_epoch * fe.epochs
        model.train()
        self.ddp = prepare_model(model)  # moves to the device; DDP (gloo on CPU) when world > 1
        self.model = unwrap(self.ddp)
        self.device = get_device()
        self.opt = torch.optim.AdamW(self.ddp.parameters(), lr=fe.lr, betas=BETAS, weight_decay=WEIGHT_DECAY)
        self.sched = warmup_cosine(self.opt, self.total_steps, WARMUP_FRACTION)
        self.history: list[dict] = []

    def _begin_epoch(self, epoch: int) -> None:
        import torch

        seeds = [self.fe.seed, epoch, self.rank]
        self.order = np.random.default_rng(seeds).permutation(len(self.images))[: self.n_min]
        self.noise_gen = torch.Generator().manual_seed(int(np.random.default_rng(seeds + [1]).integers(2**62)))
        self.t0, self.loss_sum, self.seen = time.perf_counter(), 0.0, 0

    def step(self, step: int) -> dict:
        import torch

        from irgpt.train.dist import all_reduce

        epoch, s = divmod(step, self.steps_per_epoch)
        if s == 0:
            self._begin_epoch(epoch)
        idx = self.order[s * self.local_batch : (s + 1) * self.local_batch]
        x = self._pixels(self.images[idx]).to(self.device)
        noise = torch.rand(x.shape[0], self.num_patches, generator=self.noise_gen).to(self.device)
        loss = self.ddp(x, noise=noise)[0] if self.kind == "infmae" else self.ddp(pixel_values=x, noise=noise).loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.loss_sum += float(loss.detach()) * x.shape[0]
        self.seen += x.shape[0]
        if s < self.steps_per_epoch - 1:
            return {"loss": float(loss.detach())}
        g_loss, g_seen = all_reduce([self.loss_sum, self.seen])
        seconds = time.perf_counter() - self.t0
        self.history.append({"epoch": epoch + 1, "loss": g_loss / g_seen, "samples": int(g_seen),
                             "seconds": round(seconds, 3), "samples_per_s": round(g_seen / max(seconds, 1e-9), 1),
                             "lr_end": self.sched.get_last_lr()[0]})
        return self.history[-1]

    def _pixels(self, images):
        from irgpt.models import infmae
        from irgpt.models.mae import to_pixel_values

        if self.kind == "infmae":
            return to_pixel_values(images, self.size, mean=infmae.PIXEL_MEAN, std=infmae.PIXEL_STD,
                                   channels=self.model.config.in_chans)
        return to_pixel_values(images, self.size)

    def checkpoint_due(self, done: int) -> bool:
        return done % self.steps_per_epoch == 0

    def save(self, directory: Path, rank: int, final: bool) -> dict:
        import torch

        if rank == 0:  # model and optimiser states are the same on every rank (DDP)
            torch.save({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                        "scheduler": self.sched.state_dict()}, directory / STATE_FILE)
            if final and self.kind == "infmae":
                from irgpt.models.infmae import INFMAE_FILE, save_infmae

                (directory / MODEL_DIR).mkdir()
                save_infmae(self.model, directory / MODEL_DIR / INFMAE_FILE, epoch=len(self.history) - 1,
                            optimizer=self.opt.state_dict())
            elif final:
                self.model.save_pretrained(directory / MODEL_DIR)
        return {"history": self.history}

    def load(self, directory: Path, rank: int, state: dict) -> None:
        import torch

        saved = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
        self.model.load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["optimizer"])
        self.sched.load_state_dict(saved["scheduler"])
        self.history = state["history"]

    def finish(self) -> dict:
        return {**self.history[-1], "images": self.n_total, "rejected": self.n_rejected,
                "steps_per_epoch": self.steps_per_epoch, "world_size": self.world}


# ------------------------------------------------------------ driver ----
def fe_train(cfg: Config, data_dir: str | Path, out_dir: str | Path, *, epochs: int | None = None,
             num_workers: int | None = None, fail_at_step: int | None = None) -> dict:
    """Train the extractor on `data_dir`; the model goes to `out_dir` (+ fe_train.json).

    `out_dir` then loads with `irgpt.models.mae.load_extractor(out_dir)`. The Ray
    run is named by the settings, the data and the initial weights: a rerun with
    the same ones and `out_dir` resumes (or, finished, only rewrites the result);
    others start their own run. `fail_at_step` is the kill test hook
    (`irgpt.train.skeleton`). Returns the report written to `out_dir/fe_train.json`.
    """
    from irgpt.models.mae import TINY_IMAGE_SIZE, extractor_kind, load_extractor, weights_hash
    from irgpt.train.skeleton import fit

    t_start = time.perf_counter()
    l1 = cfg.scoring.lesson1
    fe = replace(l1.fe_train, **{k: v for k, v in (("epochs", epochs), ("num_workers", num_workers)) if v is not None})
    if fe.epochs < 1 or fe.num_workers < 1:
        raise CommandError(f"fe_train: epochs and num_workers must be >= 1, got {fe.epochs}, {fe.num_workers}")
    if fe.batch_size % fe.num_workers:
        raise CommandError(f"fe_train.batch_size={fe.batch_size} must be divisible by num_workers={fe.num_workers}")
    data_dir, out = Path(data_dir).resolve(), Path(out_dir).resolve()
    ids = training_image_ids(data_dir)
    if len(ids) < fe.num_workers:
        raise CommandError(f"{data_dir}: {len(ids)} train caption rows in bands {list(FE_BANDS)}; need >= {fe.num_workers}")
    initial = load_extractor(l1.extractor, image_size=TINY_IMAGE_SIZE, seed=fe.seed, kind=l1.extractor_kind)
    kind, init_weights = extractor_kind(initial), weights_hash(initial)
    del initial
    key = hashlib.sha256(json.dumps([asdict(fe), l1.extractor, kind, init_weights, manifest_hash(data_dir)],
                                    sort_keys=True).encode()).hexdigest()[:12]
    name = f"fe-train-{key}"
    out.mkdir(parents=True, exist_ok=True)
    t_ray = time.perf_counter()
    ensure_ray(cfg.ray)
    ray_start_s = time.perf_counter() - t_ray
    masking = fe.masking if kind == "infmae" else f"random {fe.mask_ratio}"
    log0(f"[fe_train] {len(ids)} images, {fe.epochs} epochs, {fe.num_workers} worker(s), {kind} "
         f"{l1.extractor}, masking {masking}")
    loop = {"job": "irgpt.train.mae_job:MaeJob", "fe_train": asdict(fe), "data_dir": str(data_dir),
            "extractor": l1.extractor, "extractor_kind": kind, "image_size": TINY_IMAGE_SIZE, "threads": 1,
            "fail_at_step": fail_at_step, "fail_marker": str(out / "fail_marker") if fail_at_step else None}
    t_fit = time.perf_counter()
    result = fit(loop, name=name, storage=out / "ray", num_workers=fe.num_workers, use_gpu=fe.use_gpu,
                 max_failures=fe.max_failures)
    fit_s = time.perf_counter() - t_fit
    if result.error is not None:
        raise result.error
    if result.checkpoint is None:
        raise RuntimeError("fe_train: the run reported no checkpoint")
    from irgpt.models.infmae import INFMAE_FILE

    for stale in (INFMAE_FILE, "config.json", "model.safetensors"):  # an earlier run's model of the other kind
        (out / stale).unlink(missing_ok=True)
    with result.checkpoint.as_directory() as ckpt:
        history = read_state(Path(ckpt), 0, name)["history"]
        for item in Path(ckpt, MODEL_DIR).iterdir():
            shutil.copy2(item, out / item.name)
    metrics = result.metrics or {}
    weights = weights_hash(load_extractor(str(out)))
    train_samples = sum(e["samples"] for e in history)
    train_seconds = sum(e["seconds"] for e in history)
    report = {
        "epochs": fe.epochs, "losses": [e["loss"] for e in history], "history": history,
        "images": metrics.get("images"), "rejected": metrics.get("rejected"), "bands": list(FE_BANDS),
        "num_workers": fe.num_workers, "samples_per_s": round(train_samples / max(train_seconds, 1e-9), 1),
        "seconds": round(time.perf_counter() - t_start, 2), "fit_seconds": round(fit_s, 2),
        "ray_init_seconds": round(ray_start_s, 2), "train_loop_seconds": round(train_seconds, 2),
        "seed": fe.seed, "config": asdict(fe), "extractor_init": l1.extractor, "extractor_kind": kind,
        "masking": masking, "data_dir": str(data_dir),
        "weights_hash_before": init_weights, "weights_hash": weights, "ray_run": name,
        "ray_checkpoint": result.checkpoint.path,
    }
    atomic_write_json(out / REPORT_FILE, report)
    log0(f"[fe_train] done in {report['seconds']:.1f}s: loss {report['losses'][0]:.4f} -> "
         f"{report['losses'][-1]:.4f}, {report['samples_per_s']} samples/s, weights {weights}")
    return report
