"""`irgpt fe-train`: (re-)train the Lesson 1 MAE with masking, as a Ray Train job.

docs/method.md "Lesson 1": the extractor is re-trained with masking on infrared
and visible grayscale images. Training rows: `split == "train"`,
`task == "caption"` (each scene image once; the instruction rows repeat the
same images), `band` in `FE_BANDS` (every infrared band + `vis_gray`; RGB
`vis` is left out because `vis_gray` is its grayscale rendering already).

Data path (a choice the brief allowed): no Ray Data. Every worker lists the
same rows (sorted by sample_id) and decodes its own strided slice
`ids[rank::world]` from the Parquet shards; the per-epoch order comes from
`np.random.default_rng([seed, epoch, rank])` and the MAE mask noise from a
torch generator seeded by (seed, rank). The run is therefore reproducible
for a given worker count (Ray Data's `streaming_split` order is not,
docs/stack.md), and tiny images do not pay Ray Data's per-task overhead. The
decoded slice is held in memory (uint8: 4 KiB per 64 px image; a real-scale
run at 224 px holds 50 KiB per image per worker).

Batch arithmetic (defined once): `fe_train.batch_size` is the GLOBAL batch;
each worker takes batch_size / world rows. DDP averages gradients over
workers, so a step equals one step on the global batch (ViTMAE's loss is
the mean over masked patches and every worker has the same batch size).
Steps per epoch = ceil(n_min / per_worker_batch) with n_min the smallest
worker slice (all-reduced), so every rank runs the same number of steps.

Optimiser: AdamW, betas (0.9, 0.95), weight decay 0.05, linear warm-up over
5% of the steps then cosine to 0 (the MAE recipe, He et al. 2022, Table 8).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from irgpt.config import Config, FeTrainConfig
from irgpt.data.io import atomic_write_json, shard_paths
from irgpt.errors import CommandError
from irgpt.ray_utils import ensure_ray, log0

__all__ = ["FE_BANDS", "ensure_ray", "fe_train", "select_rows", "train_loop_per_worker"]

FE_BANDS = ("nir", "swir", "mwir", "lwir", "unknown", "vis_gray")
"""Bands the MAE trains on: infrared + visible grayscale (docs/method.md)."""

BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.05
WARMUP_FRACTION = 0.05
HISTORY_FILE = "fe_history.json"
REPORT_FILE = "fe_train.json"
RUN_NAME = "fe_train"


# ------------------------------------------------------------- data ----
def select_rows(data_dir: str | Path) -> list[str]:
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


# ----------------------------------------------------- the worker loop ----
def _all_reduce(values: list[float], op: str = "sum") -> list[float]:
    """All-reduce a few scalars across workers; world_size 1 is the same call path."""
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM)
    return t.tolist()


def _lr_lambda(total_steps: int):
    warmup = max(1, round(WARMUP_FRACTION * total_steps))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker: MAE masked-reconstruction training (module doc)."""
    import ray.train
    import torch
    from ray.train.torch import get_device, prepare_model

    from irgpt.models.mae import load_extractor, model_image_size, to_pixel_values, unwrap

    fe = FeTrainConfig(**config["fe_train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # One intra-op thread per worker: Ray reserves 1 CPU per worker (ScalingConfig
    # default), and more threads than reserved CPUs only contend.
    torch.set_num_threads(int(config.get("threads", 1)))
    if fe.batch_size % world:
        raise ValueError(f"fe_train.batch_size {fe.batch_size} is not divisible by {world} workers")
    local_batch = fe.batch_size // world

    model = load_extractor(config["extractor"], image_size=config["image_size"], seed=fe.seed)
    model.config.mask_ratio = fe.mask_ratio  # shared with the encoder's embeddings
    size = model_image_size(model)
    ids = select_rows(config["data_dir"])[rank::world]
    images, rejected = load_images(config["data_dir"], ids, size)
    n_min = int(_all_reduce([len(images)], "min")[0])
    n_total, n_rejected = (int(v) for v in _all_reduce([len(images), len(rejected)]))
    if n_min == 0:
        raise ValueError("a worker has no decodable training images")
    steps_per_epoch = math.ceil(n_min / local_batch)
    total_steps = steps_per_epoch * fe.epochs

    model.train()
    model = prepare_model(model)  # moves to the device; DDP (gloo on CPU) when world > 1
    device = get_device()
    num_patches = unwrap(model).vit.embeddings.patch_embeddings.num_patches
    opt = torch.optim.AdamW(model.parameters(), lr=fe.lr, betas=BETAS, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total_steps))
    noise_gen = torch.Generator().manual_seed(fe.seed * 1_000_003 + rank)
    history: list[dict] = []
    for epoch in range(fe.epochs):
        t0 = time.perf_counter()
        order = np.random.default_rng([fe.seed, epoch, rank]).permutation(len(images))[:n_min]
        loss_sum, seen = 0.0, 0
        for step in range(steps_per_epoch):
            idx = order[step * local_batch : (step + 1) * local_batch]
            x = to_pixel_values(images[idx], size).to(device)
            noise = torch.rand(x.shape[0], num_patches, generator=noise_gen).to(device)
            loss = model(pixel_values=x, noise=noise).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * x.shape[0]
            seen += x.shape[0]
        g_loss, g_seen = _all_reduce([loss_sum, seen])
        seconds = time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "loss": g_loss / g_seen, "samples": int(g_seen),
                        "seconds": round(seconds, 3), "samples_per_s": round(g_seen / max(seconds, 1e-9), 1),
                        "lr_end": sched.get_last_lr()[0]})
        metrics = {**history[-1], "images": int(n_total), "rejected": int(n_rejected),
                   "steps_per_epoch": steps_per_epoch, "world_size": world}
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:  # rank 0 saves; the others report None (Ray Train V2)
                unwrap(model).save_pretrained(tmp)
                Path(tmp, HISTORY_FILE).write_text(json.dumps({"history": history, **metrics}, indent=1))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)


# ------------------------------------------------------------ driver ----
def fe_train(cfg: Config, data_dir: str | Path, out_dir: str | Path, *, epochs: int | None = None,
             num_workers: int | None = None) -> dict:
    """Train the extractor on `data_dir`; the model goes to `out_dir` (+ fe_train.json).

    `out_dir` then loads with `irgpt.models.mae.load_extractor(out_dir)`.
    Starts fresh every time (an earlier run's Ray Train folder `out/ray` is
    replaced). Returns the report written to `out_dir/fe_train.json`.
    """
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from irgpt.models.mae import TINY_IMAGE_SIZE, load_extractor, weights_hash

    t_start = time.perf_counter()
    l1 = cfg.scoring.lesson1
    fe = replace(l1.fe_train, **{k: v for k, v in (("epochs", epochs), ("num_workers", num_workers)) if v is not None})
    if fe.epochs < 1 or fe.num_workers < 1:
        raise CommandError(f"fe_train: epochs and num_workers must be >= 1, got {fe.epochs}, {fe.num_workers}")
    if fe.batch_size % fe.num_workers:
        raise CommandError(f"fe_train.batch_size={fe.batch_size} must be divisible by num_workers={fe.num_workers}")
    data_dir, out = Path(data_dir).resolve(), Path(out_dir).resolve()
    ids = select_rows(data_dir)
    if len(ids) < fe.num_workers:
        raise CommandError(f"{data_dir}: {len(ids)} train caption rows in bands {list(FE_BANDS)}; need >= {fe.num_workers}")
    out.mkdir(parents=True, exist_ok=True)
    storage = out / "ray"
    shutil.rmtree(storage / RUN_NAME, ignore_errors=True)
    t_ray = time.perf_counter()
    ensure_ray(cfg.ray)
    ray_start_s = time.perf_counter() - t_ray
    log0(f"[fe_train] {len(ids)} images, {fe.epochs} epochs, {fe.num_workers} worker(s), extractor {l1.extractor}")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"fe_train": asdict(fe), "data_dir": str(data_dir), "extractor": l1.extractor,
                           "image_size": TINY_IMAGE_SIZE, "threads": 1},
        scaling_config=ScalingConfig(num_workers=fe.num_workers, use_gpu=fe.use_gpu),
        run_config=RunConfig(storage_path=str(storage), name=RUN_NAME,
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    t_fit = time.perf_counter()
    result = trainer.fit()
    fit_s = time.perf_counter() - t_fit
    if result.error is not None:
        raise result.error
    if result.checkpoint is None:
        raise RuntimeError("fe_train: the run reported no checkpoint")
    with result.checkpoint.as_directory() as ckpt:
        history = json.loads(Path(ckpt, HISTORY_FILE).read_text())
        for item in Path(ckpt).iterdir():
            if item.is_file() and item.name != HISTORY_FILE:
                shutil.copy2(item, out / item.name)
    weights = weights_hash(load_extractor(str(out)))
    epochs_log = history["history"]
    train_samples = sum(e["samples"] for e in epochs_log)
    train_seconds = sum(e["seconds"] for e in epochs_log)
    report = {
        "epochs": fe.epochs, "losses": [e["loss"] for e in epochs_log], "history": epochs_log,
        "images": history["images"], "rejected": history["rejected"], "bands": list(FE_BANDS),
        "num_workers": fe.num_workers, "samples_per_s": round(train_samples / max(train_seconds, 1e-9), 1),
        "seconds": round(time.perf_counter() - t_start, 2), "fit_seconds": round(fit_s, 2),
        "ray_init_seconds": round(ray_start_s, 2), "train_loop_seconds": round(train_seconds, 2),
        "seed": fe.seed, "config": asdict(fe), "extractor_init": l1.extractor, "data_dir": str(data_dir),
        "weights_hash": weights, "ray_checkpoint": result.checkpoint.path,
    }
    atomic_write_json(out / REPORT_FILE, report)
    log0(f"[fe_train] done in {report['seconds']:.1f}s: loss {report['losses'][0]:.4f} -> "
         f"{report['losses'][-1]:.4f}, {report['samples_per_s']} samples/s, weights {weights}")
    return report
