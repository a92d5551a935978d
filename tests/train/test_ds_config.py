"""DeepSpeed config: batch arithmetic, each ZeRO stage, errors; slow: a real engine on CPU."""

from __future__ import annotations

import io
import os
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from irgpt.config import DeepSpeedConfig, StageConfig, TrainConfig
from irgpt.errors import CommandError
from irgpt.train.ds_config import (
    batch_arithmetic,
    build_ds_config,
    data_parallel_world_size,
    resolve_precision,
    steps_per_epoch,
    total_optimizer_steps,
    warmup_steps,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """2 shared cores: several intra-op threads spin against each other (10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _build(zero=2, world=2, total=1000, use_gpu=False, stage=None, **ds):
    return build_ds_config(TrainConfig(), stage or StageConfig(), DeepSpeedConfig(zero_stage=zero, **ds), world,
                           total, use_gpu)


def test_batch_arithmetic():
    a = batch_arithmetic(32, 8, 2)
    assert (a.global_batch_size, a.micro_batch_size, a.world_size, a.grad_accum_steps) == (32, 8, 2, 2)
    assert batch_arithmetic(32, 4, 8).grad_accum_steps == 1
    assert batch_arithmetic(32, 1, 1).grad_accum_steps == 32


def test_batch_arithmetic_errors_name_the_three_numbers():
    with pytest.raises(CommandError, match=r"global_batch_size=32 .*micro_batch_size=3 x world_size=2 \(= 6\)") as err:
        batch_arithmetic(32, 3, 2)
    assert "[1, 2, 4, 8, 16]" in str(err.value)  # the micro sizes that would fit
    with pytest.raises(CommandError, match="no micro_batch_size fits"):
        batch_arithmetic(32, 1, 3)
    with pytest.raises(CommandError, match="micro_batch_size must be >= 1"):
        batch_arithmetic(32, 0, 2)
    with pytest.raises(CommandError, match="num_workers must be >= 1"):
        data_parallel_world_size(TrainConfig(num_workers=0))


@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_each_zero_stage(zero):
    cfg = _build(zero=zero)
    assert cfg["zero_optimization"]["stage"] == zero
    assert cfg["train_batch_size"] == 32 and cfg["train_micro_batch_size_per_gpu"] == 8
    assert cfg["gradient_accumulation_steps"] == 2
    assert cfg["train_batch_size"] == (cfg["train_micro_batch_size_per_gpu"] * cfg["gradient_accumulation_steps"] * 2)
    if zero == 3:
        assert cfg["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_optimizer_scheduler_precision_clipping():
    stage = StageConfig(lr=2e-5, weight_decay=0.01, warmup_ratio=0.03)
    cfg = _build(stage=stage, total=1000, gradient_clipping=0.5)
    opt = cfg["optimizer"]
    assert opt["type"] == "AdamW" and opt["params"]["lr"] == 2e-5 and opt["params"]["weight_decay"] == 0.01
    assert opt["params"]["betas"] == [0.9, 0.999] and opt["params"]["torch_adam"] is True
    sched = cfg["scheduler"]
    assert sched["type"] == "WarmupCosineLR"
    assert sched["params"] == {"total_num_steps": 1000, "warmup_num_steps": 30, "warmup_min_ratio": 0.0,
                               "warmup_type": "linear", "cos_min_ratio": 0.0}
    assert cfg["gradient_clipping"] == 0.5
    assert cfg["bf16"] == {"enabled": False}  # auto on CPU = fp32
    assert _build(use_gpu=True)["bf16"] == {"enabled": True}  # auto on GPU = bf16
    assert "torch_adam" not in _build(torch_adam=False)["optimizer"]["params"]
    assert resolve_precision(DeepSpeedConfig(precision="fp32"), True) == "fp32"
    assert warmup_steps(10, 0.0) == 1 and warmup_steps(1000, 0.03) == 30


def test_steps():
    assert steps_per_epoch(100, 32) == 4  # the partial last batch is padded, not dropped
    assert total_optimizer_steps(100, StageConfig(epochs=5)) == 20
    assert total_optimizer_steps(100, StageConfig(epochs=5, max_steps=7)) == 7


def test_config_errors():
    with pytest.raises(CommandError, match="total optimizer steps"):
        _build(total=0)
    with pytest.raises(CommandError, match="warmup_ratio"):
        _build(stage=StageConfig(warmup_ratio=1.0))
    with pytest.raises(CommandError, match="not a multiple"):
        _build(world=3)


@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_deepspeed_parses_the_config(zero):
    """DeepSpeed's own validation (its pydantic models reject unknown or bad keys); world size 1."""
    from deepspeed.runtime.config import DeepSpeedConfig as DSConfig

    built = _build(zero=zero, world=1, stage=StageConfig(micro_batch_size=8, global_batch_size=32))
    parsed = DSConfig(built)
    assert parsed.train_batch_size == 32 and parsed.gradient_accumulation_steps == 4
    assert parsed.zero_optimization_stage == zero
    assert parsed.optimizer_name == "adamw" and parsed.scheduler_name == "WarmupCosineLR"


# ------------------------------------------------------ slow: real engine ----
@pytest.fixture(scope="module")
def ds_single_process():
    """DeepSpeed on CPU, one process: gloo, world size 1 (docs/training.md).

    The first run on a machine JIT-compiles DeepSpeed's CPU comm op (minutes);
    later runs reuse ~/.cache/torch_extensions (or TORCH_EXTENSIONS_DIR).
    """
    import deepspeed
    import torch.distributed as dist

    if not dist.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1",
                     "LOCAL_RANK": "0"}.items():
            os.environ.setdefault(k, v)
        deepspeed.init_distributed(dist_backend="gloo")
        yield deepspeed
        dist.destroy_process_group()
    else:
        yield deepspeed


def _png(v):
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 30), v, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _samples(n=4):
    return [{"sample_id": f"s{i}", "image": _png(40 * i), "weight": 0.5 + i / 2, "tier": 0,
             "conversations": [{"from": "human", "value": "<image>\nHow many cars?"},
                               {"from": "gpt", "value": f"<num>{i * 7}</num>"}]} for i in range(n)]


@pytest.fixture(scope="module")
def tiny_parts():
    from irgpt.models.collator import VLMCollator
    from irgpt.models.tokenizer import synthetic_corpus, train_tokenizer
    from irgpt.models.vlm import build_tiny_vlm

    tok = train_tokenizer(synthetic_corpus(100))
    _, spec = build_tiny_vlm(tok)
    return tok, VLMCollator(tok, spec, max_length=128)


def _run_step(engine, collator, micro_batches, n_global):
    from irgpt.models.collator import model_inputs
    from irgpt.train.loss import backward_scale, eq6_loss

    total = 0.0
    for mb in micro_batches:
        b = collator(mb)
        out = engine(**model_inputs(b))
        loss, _ = eq6_loss(out.logits, b["labels"], b["weights"], b["pad_mask"], n_global)
        engine.backward(loss * backward_scale(1, engine.gradient_accumulation_steps()))
        engine.step()
        total += float(loss.detach())
    return total


@pytest.mark.slow
@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_deepspeed_initialize_and_step_tiny_vlm_on_cpu(ds_single_process, tiny_parts, zero):
    from irgpt.models.freeze import apply_stage
    from irgpt.models.vlm import build_tiny_vlm

    tok, col = tiny_parts
    model = apply_stage(build_tiny_vlm(tok, seed=0)[0], 1)
    stage = StageConfig(lr=1e-2, micro_batch_size=2, global_batch_size=4, warmup_ratio=0.0)
    cfg = build_ds_config(TrainConfig(), stage, DeepSpeedConfig(zero_stage=zero), 1, 5, False)
    engine, _, _, sched = ds_single_process.initialize(
        model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=cfg)
    assert engine.gradient_accumulation_steps() == 2
    samples = _samples()
    losses = [_run_step(engine, col, [samples[:2], samples[2:]], 4) for _ in range(4)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert engine.global_steps == 4 and sched.get_last_lr()[0] < 1e-2  # cosine decays after warm-up


@pytest.mark.slow
@pytest.mark.parametrize("zero", [0, 2])
def test_deepspeed_gas_scaling_matches_one_big_batch(ds_single_process, tiny_parts, zero):
    """engine.backward divides by GAS; with backward_scale the update equals the full batch's (SGD)."""
    from irgpt.models.freeze import apply_stage
    from irgpt.models.vlm import build_tiny_vlm

    tok, col = tiny_parts
    samples = _samples()
    updates = []
    for micro in (4, 2, 1):  # GAS 1, 2, 4
        model = apply_stage(build_tiny_vlm(tok, seed=0)[0], 1)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        params = [p for p in model.parameters() if p.requires_grad]
        cfg = build_ds_config(TrainConfig(), StageConfig(micro_batch_size=micro, global_batch_size=4),
                              DeepSpeedConfig(zero_stage=zero, gradient_clipping=0.0), 1, 5, False)
        del cfg["optimizer"], cfg["scheduler"]
        cfg["zero_allow_untested_optimizer"] = True  # plain SGD: the update is linear in the gradient
        engine, *_ = ds_single_process.initialize(model=model, optimizer=torch.optim.SGD(params, lr=1.0),
                                                  model_parameters=params, config=cfg)
        engine.eval()  # no dropout; DeepSpeed still trains
        _run_step(engine, col, [samples[i:i + micro] for i in range(0, 4, micro)], 4)
        updates.append({n: p.detach() - before[n] for n, p in model.named_parameters() if n in before})
    for other in updates[1:]:
        for n, delta in updates[0].items():
            torch.testing.assert_close(other[n], delta, atol=1e-5, rtol=1e-4)
