"""Stage-1 step time: Ray Train + DeepSpeed vs the plain PyTorch loop, same model, data and cores.

    .venv/bin/python benchmarks/bench_train.py [--epochs 4] [--skip 4]

Data: 40 synthetic scenes (104 infrared caption train rows, 4 tiers), the
tiny LLaVA (0.63M parameters), global batch 16 (micro 4), `--epochs` epochs
of 8 optimizer steps. Runs, interleaved so that a change in the machine's
load hits every kind:
  plain             `irgpt.train.reference.run_reference` in a fresh child process
                    (no Ray in it), torch.set_num_threads(1): a Ray worker holds
                    1 CPU and runs 1 torch thread (recorded)
  ds (no Ray)       the loop's step on a DeepSpeed ZeRO-0 engine in a fresh child process
                    (gloo group of 1, 1 thread, no Ray): tells DeepSpeed's share of the
                    overhead from Ray Train's
  ray 1w ZeRO-0     `train(stage="1")`, train.num_workers=1 (accumulation 4)
  plain             again
  ray 2w ZeRO-2     train.num_workers=2 (accumulation 2 per worker), the same 2 cores
  plain             again
Step time on the Ray side: rank 0's per-step metrics records carry `time`
(`time.time()`), `cpu_s` (`time.process_time()`) and `threads`, so a step
is the gap between consecutive records:
batch fetch, collation, the N all-reduce, GAS forward/backward, the DeepSpeed
step and the loss all-reduce. The plain loop times the same span per step.
Both wall time and the process's CPU time per step are reported: on a
machine loaded far beyond its 2 cores the wall time mostly measures the
scheduler, CPU time is the work each side did (the Ray side's includes its
worker's own background threads). Steady state = the steps after the first
`--skip`; medians (and means) reported. No checkpoint falls inside the timed
steps (train.checkpoint_every > steps); start-up (Ray worker group,
DeepSpeed initialise, first val) is reported apart (fit seconds). Target:
ray 1w / plain <= 1.1 (median step time). Writes benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/builders.py: hand-made inputs

RESULTS = Path(__file__).resolve().parent / "results" / "train.json"


def make_data(root: Path) -> dict:
    from builders import synthetic_tiers

    return synthetic_tiers(root, num_samples=40, seed=7)


def stats(seconds: list[float], cpu: list[float], skip: int) -> dict:
    steady, steady_cpu = seconds[skip:], cpu[skip:]
    return {"steps_timed": len(steady), "median_s": round(statistics.median(steady), 4),
            "mean_s": round(statistics.fmean(steady), 4), "min_s": round(min(steady), 4),
            "median_cpu_s": round(statistics.median(steady_cpu), 4),
            "mean_cpu_s": round(statistics.fmean(steady_cpu), 4),
            "first_steps_s": [round(s, 3) for s in seconds[:skip]]}


def cfg_for(workers: int, zero: int, epochs: int):
    from irgpt.config import load_config

    return load_config(None, [
        f"train.num_workers={workers}", f"deepspeed.zero_stage={zero}",
        "train.stage1.micro_batch_size=4", "train.stage1.global_batch_size=16", f"train.stage1.epochs={epochs}",
        "train.checkpoint_every=100000", "train.log_every=100000", "ray.num_cpus=2",
    ])


def plain_child(args) -> int:
    """`--plain-child DIR BASE`: one plain run in this (fresh) process; JSON on stdout's last line."""
    from irgpt.train.reference import run_reference

    root, base = Path(args.plain_child[0]), Path(args.plain_child[1])
    out = run_reference(cfg_for(1, 0, args.epochs), root / "S", root / "T", base, 10**9, num_threads=1)
    print(json.dumps(out))
    return 0


def ds_child(args) -> int:
    """`--ds-child DIR BASE`: the loop's optimizer step (irgpt/train/vlm_job.py) on a DeepSpeed
    engine, one process, no Ray; JSON on stdout's last line."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1",
                       "LOCAL_RANK": "0"})
    import deepspeed
    import torch
    import torch.distributed as dist

    from irgpt.models.collator import VLMCollator, model_inputs
    from irgpt.models.freeze import apply_stage
    from irgpt.models.vlm import load_vlm
    from irgpt.train.data import make_iterator
    from irgpt.train.ds_config import batch_arithmetic, build_ds_config
    from irgpt.train.loss import (
        answer_token_counts,
        backward_scale,
        count_contributing,
        eq6_loss,
        global_count,
    )
    from irgpt.train.trainer import iterator_kwargs
    from irgpt.train.vlm_job import _samples, _seed_everything

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=0, world_size=1)
    root, base = Path(args.ds_child[0]), Path(args.ds_child[1])
    cfg = cfg_for(1, 0, args.epochs)
    arith = batch_arithmetic(cfg.train.stage1.global_batch_size, cfg.train.stage1.micro_batch_size, 1)
    _seed_everything(cfg.train.seed + 1000)
    loaded = load_vlm(base)
    model = apply_stage(loaded.model, 1, cfg.train.lora)
    collator = VLMCollator(loaded.tokenizer, loaded.spec, cfg.train.max_length, use_weights=cfg.curriculum.weights)
    iterator = make_iterator(iterator_kwargs(cfg, 1, root / "S", root / "T"), 0, 1, arith.micro_batch_size,
                             arith.grad_accum_steps)
    total = iterator.steps_per_epoch // arith.grad_accum_steps * args.epochs
    ds = build_ds_config(cfg.train, cfg.train.stage1, cfg.deepspeed, 1, total, False)
    engine, _, _, _ = deepspeed.initialize(model=model, config=ds,
                                           model_parameters=[p for p in model.parameters() if p.requires_grad])
    gas = engine.gradient_accumulation_steps()
    batches, losses, seconds, cpu = iter(iterator), [], [], []
    for _ in range(total):
        t0, c0 = time.perf_counter(), time.process_time()
        encoded = [collator(_samples(next(batches))) for _ in range(gas)]
        n_global = global_count(sum(count_contributing(answer_token_counts(b["labels"]), b["pad_mask"])
                                    for b in encoded), 1, engine.device)
        step_loss = 0.0
        for b in encoded:
            out = engine(**model_inputs(b))
            loss, _ = eq6_loss(out.logits, b["labels"], b["weights"], b["pad_mask"], n_global)
            engine.backward(loss * backward_scale(1, gas))
            engine.step()
            step_loss += float(loss.detach())
        losses.append(step_loss)
        seconds.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    iterator.close()
    print(json.dumps({"losses": losses, "step_seconds": seconds, "step_cpu_seconds": cpu}))
    return 0


def run_child(kind: str, root: Path, base: Path, epochs: int, skip: int) -> dict:
    """A plain or a DeepSpeed-only run in a fresh process (no Ray threads in it)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--epochs", str(epochs), f"--{kind}-child", str(root), str(base)],
                          check=True, capture_output=True, text=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"kind": {"plain": "plain", "ds": "ds (no Ray)"}[kind], "torch_threads": 1,
            "wall_s": round(time.perf_counter() - t0, 2), "steps": len(out["losses"]),
            **stats(out["step_seconds"], out["step_cpu_seconds"], skip), "losses": out["losses"]}


def run_ray(data: dict, root: Path, workers: int, zero: int, epochs: int, skip: int) -> dict:
    import irgpt.train.trainer as trainer
    from irgpt.train.metrics import read_metrics

    cfg = cfg_for(workers, zero, epochs)
    run = root / f"ray_{workers}w_z{zero}"
    t0 = time.perf_counter()
    summary = trainer.train(cfg, "1", data["samples"], data["tiers"], run)
    wall = time.perf_counter() - t0
    records = [r for r in read_metrics(run / "stage1" / "metrics.jsonl") if "loss" in r]
    # step 1's span (from the end of the first val pass) is not stamped: the gaps start at step 2
    gaps = [b["time"] - a["time"] for a, b in zip(records, records[1:])]
    cpu = [b["cpu_s"] - a["cpu_s"] for a, b in zip(records, records[1:])]
    return {"kind": f"ray {workers}w ZeRO-{zero}", "workers": workers, "zero_stage": zero,
            "worker_torch_threads": records[0]["threads"], "wall_s": round(wall, 2),
            "fit_s": summary["stage1"]["seconds"], "steps": len(records), **stats(gaps, cpu, max(0, skip - 1)),
            "losses": [r["loss"] for r in records]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4, help="8 optimizer steps each")
    p.add_argument("--skip", type=int, default=4, help="steps left out of the steady state")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--plain-child", nargs=2, metavar=("DATA_ROOT", "BASE"), help=argparse.SUPPRESS)
    p.add_argument("--ds-child", nargs=2, metavar=("DATA_ROOT", "BASE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.plain_child:
        return plain_child(args)
    if args.ds_child:
        return ds_child(args)

    import ray

    from irgpt.config import RayConfig
    from irgpt.ray_utils import ensure_ray
    from irgpt.train.trainer import prepare_base_model

    root = Path(tempfile.mkdtemp(prefix="bench_train_"))
    data = make_data(root)
    base = prepare_base_model(cfg_for(1, 0, args.epochs), data["samples"], root / "base")
    t0 = time.perf_counter()
    ensure_ray(RayConfig(address=None, num_cpus=2))
    ray_start = time.perf_counter() - t0

    loads = [os.getloadavg()]
    runs = []
    try:
        for step in ("plain", "ds", (1, 0), "plain", (2, 2), "plain"):
            runs.append(run_child(step, root, base, args.epochs, args.skip) if isinstance(step, str)
                        else run_ray(data, root, *step, args.epochs, args.skip))
            loads.append(os.getloadavg())
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)

    plain = [r for r in runs if r["kind"] == "plain"]
    plain_wall = statistics.median([r["median_s"] for r in plain])
    plain_cpu = statistics.median([r["median_cpu_s"] for r in plain])
    ds1, ray1, ray2 = runs[1], runs[2], runs[4]
    same_losses = max(abs(a - b) / abs(b) for r in (ray1, ds1) for a, b in zip(r["losses"], plain[0]["losses"]))
    result = {
        "benchmark": "train",
        "what": "stage-1 optimizer step time (steady state), Ray Train + DeepSpeed vs the plain PyTorch loop; "
                "tiny LLaVA 0.63M params, global batch 16 (micro 4), 104 IR caption rows in 4 tiers",
        "epochs": args.epochs, "skip_steps": args.skip,
        "ratios": {
            "wall_ray_1w_zero0_over_plain": round(ray1["median_s"] / plain_wall, 3),
            "wall_ray_2w_zero2_over_plain": round(ray2["median_s"] / plain_wall, 3),
            "wall_ds_no_ray_over_plain": round(ds1["median_s"] / plain_wall, 3),
            "cpu_ds_no_ray_over_plain": round(ds1["median_cpu_s"] / plain_cpu, 3),
            "cpu_ray_1w_zero0_over_plain": round(ray1["median_cpu_s"] / plain_cpu, 3),
            "cpu_rank0_ray_2w_zero2_over_plain": round(ray2["median_cpu_s"] / plain_cpu, 3),
            "target_ray_1w_over_plain": 1.1,
            "of": "median steady-state step times; plain = the median of the 3 plain runs' medians",
        },
        "ray_1w_and_ds_vs_plain_max_rel_loss_diff": same_losses,
        "ray_start_s": round(ray_start, 2),
        "runs": [{k: v for k, v in r.items() if k != "losses"} for r in runs],
        "machine": {"cpus": os.cpu_count(), "load_avg_1_5_15_before_each_run_and_at_end":
                    [[round(x, 2) for x in load] for load in loads], "python": platform.python_version(),
                    "note": "a shared 2-core machine: other engineers' jobs ran at the same time"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("ratios", "machine")}, indent=2))
    for r in result["runs"]:
        print(f"{r['kind']:>14}: median {r['median_s']:.3f} s/step (cpu {r['median_cpu_s']:.3f}), "
              f"mean {r['mean_s']:.3f} (n={r['steps_timed']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
