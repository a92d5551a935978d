"""CLIP warm-up: data slicing, schedule, determinism; Ray Train runs behind `slow`."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from irgpt.config import load_config
from irgpt.data.io import write_manifest, write_table
from irgpt.data.schema import SAMPLE_SCHEMA
from irgpt.models.clip import create_clip, weights_hash
from irgpt.train.clip_job import (
    epoch_order,
    load_rank_pairs,
    make_training,
    param_groups,
    plan_rows,
    rank_slice,
    train_step,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


POSITIONS = {"left": (4, 24), "right": (44, 24), "top": (24, 4), "bottom": (24, 44)}


def _png(where: str, size: int, rng) -> bytes:
    a = rng.integers(0, 40, size=(64, 64), dtype=np.uint8)
    x, y = POSITIONS[where]
    a[y : y + size, x : x + size] = 230
    buf = io.BytesIO()
    Image.fromarray(a, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def write_tiny_pairs(out, n_train: int = 128, shards: int = 2, seed: int = 0) -> None:
    """`n_train` train IR caption pairs (+ rows the warm-up must skip) in `shards` files."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train + 24):
        where = list(POSITIONS)[i % 4]
        size = 8 + 4 * (i % 3)
        kind = i - n_train  # the 24 extra rows: vis band, val split, non-caption task
        band = "vis" if 0 <= kind < 8 else ("lwir", "mwir", "nir", "swir")[i % 4]
        split = "val" if 8 <= kind < 16 else "train"
        task = "scene" if kind >= 16 else "caption"
        caption = f"a thermal image with a {('small', 'medium', 'large')[i % 3]} hot object on the {where}"
        rows.append({
            "sample_id": f"tiny-{i:04d}", "image": _png(where, size, rng), "image_path": None, "band": band,
            "source": "test", "task": task, "split": split,
            "conversations": [{"from": "human", "value": "<image>\nDescribe the image."}, {"from": "gpt", "value": caption}],
            "width": 64, "height": 64, "paired_vis_id": None, "rule": None,
        })
    table = pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)
    step = -(-table.num_rows // shards)
    for s in range(shards):
        write_table(out / f"part-{s:05d}.parquet", table.slice(s * step, step))
    write_manifest(out, {"kind": "dataset", "num_rows": table.num_rows})


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_pairs")
    write_tiny_pairs(out)
    return out


def test_plan_keeps_only_train_infrared_caption_rows(tiny_data):
    plan = plan_rows(tiny_data)
    assert sum(len(p["rows"]) for p in plan) == 128
    assert len(plan) == 2


def test_rank_slices_partition_the_rows_contiguously():
    plan = [{"file": "a", "rows": list(range(5))}, {"file": "b", "rows": [10, 12, 14]}, {"file": "c", "rows": [1]}]
    for world in (1, 2, 3, 4):
        got = [(f, r) for rank in range(world) for f, rows in rank_slice(plan, rank, world) for r in rows]
        assert got == [(p["file"], r) for p in plan for r in p["rows"]]
        sizes = [sum(len(r) for _, r in rank_slice(plan, rank, world)) for rank in range(world)]
        assert max(sizes) - min(sizes) <= 1


def test_schedule_warms_up_then_decays_to_zero():
    """The shared warm-up + cosine schedule (transformers'), as the warm-up uses it."""
    from irgpt.train.clip_job import WARMUP_FRACTION
    from irgpt.train.schedule import warmup_cosine

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, 100, WARMUP_FRACTION)
    lrs = []
    for _ in range(101):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5, abs=0.02) and lrs[100] == pytest.approx(0.0, abs=1e-9)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11])) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_no_weight_decay_on_gains_biases_and_logit_scale():
    model, _, _ = create_clip(seed=0)
    no_decay, decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert "logit_scale" in {names[id(p)] for p in no_decay["params"]}
    assert all(p.ndim >= 2 for p in decay["params"])


@pytest.fixture(scope="module")
def tiny_loaded(tiny_data):
    _, _, tokenizer = create_clip(seed=0)
    return load_rank_pairs(plan_rows(tiny_data), 0, 1, 64, tokenizer, 77)


def _plain_warmup(data: dict, seed: int, epochs: int = 2, batch: int = 16, steps: int = 2) -> str:
    """The worker loop at world_size 1 without Ray (same functions), a few steps."""
    model, preprocess, _ = create_clip(seed=0)
    opt, sched, loss_fn = make_training(model, {"lr": 1e-3, "weight_decay": 0.1}, steps * epochs)
    for epoch in range(epochs):
        order = epoch_order(len(data["ids"]), seed, epoch, 0)
        for s in range(steps):
            idx = np.sort(order[s * batch : (s + 1) * batch])
            assert np.isfinite(train_step(model, model, opt, sched, loss_fn, preprocess, data, idx))
    return weights_hash(model)


def test_one_worker_loop_is_deterministic_for_a_seed(tiny_loaded):
    assert len(tiny_loaded["ids"]) == 128 and tiny_loaded["images"].shape == (128, 64, 64)
    a = _plain_warmup(tiny_loaded, seed=5)
    assert a == _plain_warmup(tiny_loaded, seed=5)
    assert a != _plain_warmup(tiny_loaded, seed=6)


# ------------------------------------------------------------- Ray Train ----
def _cfg(workers: int, epochs: int = 2, batch: int = 32):
    return load_config(None, [
        f"scoring.lesson2.warmup.num_workers={workers}", f"scoring.lesson2.warmup.epochs={epochs}",
        f"scoring.lesson2.warmup.batch_size={batch}", "scoring.lesson2.warmup.seed=3",
    ])


@pytest.mark.slow
def test_ray_warmup_one_worker_same_seed_same_weights(tiny_data, tmp_path, ray_local):
    from irgpt.models.clip import load_clip
    from irgpt.train.clip_job import clip_warmup

    reports = [clip_warmup(_cfg(1), tiny_data, tmp_path / f"run{i}") for i in range(2)]
    a, b = reports
    assert a["weights_hash_after"] == b["weights_hash_after"] != a["weights_hash_before"]
    assert a["losses"] == b["losses"] and len(a["losses"]) == 2
    assert a["steps"] == 2 * (128 // 32) and a["num_pairs"] == 128 and a["world_size"] == 1
    on_disk = json.loads((tmp_path / "run0" / "clip_warmup.json").read_text())
    assert on_disk["weights_hash_after"] == a["weights_hash_after"]
    model, _, _ = load_clip("irgpt-tiny-clip", tmp_path / "run0" / "clip_warmup.pt")
    assert weights_hash(model) == a["weights_hash_after"]
    # the same settings and --out again: resumes from the last checkpoint, nothing retrained
    again = clip_warmup(_cfg(1), tiny_data, tmp_path / "run0")
    assert again["weights_hash_after"] == a["weights_hash_after"] and again["history"] == a["history"]


@pytest.mark.slow
def test_ray_warmup_two_workers_all_gather(tiny_data, tmp_path, ray_local):
    from irgpt.train.clip_job import clip_warmup

    rep = clip_warmup(_cfg(2, epochs=1, batch=32), tiny_data, tmp_path / "w2")
    assert rep["world_size"] == 2 and rep["local_batch_size"] == 16
    assert rep["steps"] == 128 // 2 // 16
    assert np.isfinite(rep["losses"]).all()
    assert rep["weights_hash_after"] != rep["weights_hash_before"]


def _grad_worker(rank: int, world: int, port: int, images, tokens, out):
    import open_clip
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    model, _, _ = create_clip(seed=0)
    model.train()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    loss_fn = open_clip.ClipLoss(local_loss=False, gather_with_grad=True, rank=rank, world_size=world)
    half = images.shape[0] // world
    sl = slice(rank * half, (rank + 1) * half)
    loss = loss_fn(*ddp(images[sl], tokens[sl]))
    loss.backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in model.named_parameters()}, out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_all_gathered_two_rank_gradient_equals_the_one_process_gradient(tmp_path):
    """The batch-arithmetic claim in clip_warmup's docstring."""
    import socket

    import open_clip
    import torch.multiprocessing as mp

    g = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 64, 64, generator=g)
    tokens = torch.randint(1, 1000, (8, 77), generator=g)
    tokens[:, 12:] = 0
    model, _, _ = create_clip(seed=0)
    model.train()
    open_clip.ClipLoss()(*model(images, tokens)).backward()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = str(tmp_path / "grads.pt")
    procs = [ctx.Process(target=_grad_worker, args=(r, 2, port, images, tokens, out)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    grads = torch.load(out, weights_only=True)
    for n, p in model.named_parameters():
        assert torch.allclose(grads[n], p.grad, rtol=1e-4, atol=1e-6), n


@pytest.mark.slow
def test_a_killed_worker_is_survived_with_the_same_losses(tiny_data, tmp_path, ray_local):
    """2 workers, 2 epochs of 4 steps; the last rank dies after step 6: the group restarts
    from the epoch-1 checkpoint and ends with the uninterrupted run's losses and weights."""
    from irgpt.train.clip_job import clip_warmup

    cfg = load_config(None, [
        "scoring.lesson2.warmup.num_workers=2", "scoring.lesson2.warmup.epochs=2",
        "scoring.lesson2.warmup.batch_size=32", "scoring.lesson2.warmup.seed=3",
        "scoring.lesson2.warmup.max_failures=1",
    ])
    reference = clip_warmup(cfg, tiny_data, tmp_path / "ref")
    assert reference["steps"] == 8 and reference["world_size"] == 2
    killed = clip_warmup(cfg, tiny_data, tmp_path / "killed", fail_at_step=6)
    assert (tmp_path / "killed" / "fail_marker").read_text().startswith("killed rank 1 after step 6")
    np.testing.assert_allclose(killed["losses"], reference["losses"], rtol=1e-6)
    assert killed["weights_hash_after"] == reference["weights_hash_after"]
    assert killed["resumed_from_epoch"] == 1
