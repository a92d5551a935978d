"""`irgpt train --dry-run`: check a training config and estimate per-GPU memory, start nothing.

`dry_run(cfg)` validates the batch arithmetic and the DeepSpeed config of
both stages, counts the model's parameters from its CONFIG (built on the
`meta` device: no weights are read or allocated), checks that the LoRA regex
hits only the LLM, checks the paths the run will read, prints a report and
returns it as a dict. It raises CommandError on anything that would make the
real run fail. Missing paths are WARNINGs (the data may not be made yet, the
weights may live on the cluster); `strict=True` makes them errors. A missing
model directory whose name is a known architecture (InternVL2-8B) is
estimated from a built-in description of that architecture.

Memory model per GPU (weights and optimizer only; activations, buffers and
the CUDA context are NOT included):
    bf16 mixed precision: params 2 B each (frozen ones too), grads 6 B (bf16
        grads + their fp32 accumulation) and optimizer state 12 B (fp32 master
        copy + Adam m and v) per TRAINABLE param: DeepSpeed's own accounting
        (`estimate_zero2_model_states_mem_needs`), which this model equals when
        every parameter trains (ZeRO-1/2, checked in `memory_estimate` and the tests)
        and extends to frozen parameters;
    fp32: params 4 B, grads 4 B, optimizer 8 B (m, v) per trainable param.
    ZeRO-1 divides the optimizer state by the world size, ZeRO-2 also the
    grads, ZeRO-3 also the params. Stage 2 trains LoRA (r x (in + out) per
    targeted linear) and a copy of the projector (peft modules_to_save).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from irgpt.config import Config, LoraConfig
from irgpt.errors import CommandError
from irgpt.train.ds_config import (
    batch_arithmetic,
    build_ds_config,
    data_parallel_world_size,
    resolve_precision,
    total_optimizer_steps,
)

GIB = 1024**3
PLACEHOLDER_STEPS = 1000
"""Total steps put in the reported DeepSpeed config when the dataset size is unknown."""


def _internvl2_8b_config():
    """InternVL2-8B: InternViT-300M-448px + MLP projector + InternLM2-7B-chat (as a Llama config).

    Values from the public model card / config of OpenGVLab/InternVL2-8B;
    transformers' native InternVL classes describe the same shapes.
    """
    from transformers import InternVLConfig, InternVLVisionConfig, LlamaConfig

    vision = InternVLVisionConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                  intermediate_size=4096, image_size=448, patch_size=14, attention_bias=True,
                                  norm_type="layer_norm", use_mean_pooling=False)
    text = LlamaConfig(vocab_size=92553, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                       rope_theta=1_000_000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)
    return InternVLConfig(vision_config=vision, text_config=text, image_token_id=92546, image_seq_length=256,
                          downsample_ratio=0.5, projector_hidden_act="gelu", vision_feature_layer=-1,
                          vision_feature_select_strategy="default", tie_word_embeddings=False)


BUILTIN_ARCHITECTURES = {"internvl2-8b": _internvl2_8b_config}
"""Lower-cased directory names the dry run can estimate without the weights."""


def model_config_for(cfg: Config, warnings: list[str]):
    """(transformers config, source) for `train.model`, reading only config.json."""
    name = cfg.train.model
    if name == "tiny":
        from irgpt.models.vlm import TINY_VOCAB_SIZE, tiny_vlm_config

        return tiny_vlm_config(TINY_VOCAB_SIZE, image_token_id=4), "tiny (random init, built from configs)"
    from irgpt import storage

    # A model in object storage: its config only (no weights are fetched for a dry run).
    path = storage.fetch(name, without=storage.WEIGHT_SUFFIXES) if storage.is_uri(name) else Path(name)
    if (path / "config.json").is_file():
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(str(path), local_files_only=True,
                                                trust_remote_code=cfg.train.trust_remote_code)
        except ValueError as exc:
            raise CommandError(f"train.model {name}: cannot read config.json ({exc}); a checkpoint that ships "
                               f"its own code needs train.trust_remote_code: true") from exc
        return config, f"{path}/config.json"
    builtin = BUILTIN_ARCHITECTURES.get(path.name.lower())
    if builtin is None:
        raise CommandError(f"train.model {name}: no such model directory (or no config.json in it); "
                           f"built-in estimates exist for {sorted(BUILTIN_ARCHITECTURES)}")
    warnings.append(f"train.model {name} does not exist here: memory estimated from the built-in "
                    f"{path.name} architecture; the real run needs the weights at that path")
    return builtin(), f"built-in {path.name} description"


def count_parameters(config, lora_cfg: LoraConfig, trust_remote_code: bool = False) -> dict:
    """Parameter counts of `config`'s model built on the meta device, plus the stage-2 LoRA size."""
    import torch
    from transformers import AutoModel, AutoModelForImageTextToText

    from irgpt.models.freeze import parameter_counts, vlm_parts

    with torch.device("meta"):
        try:
            model = AutoModelForImageTextToText.from_config(config, trust_remote_code=trust_remote_code)
        except ValueError:
            model = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    counts = parameter_counts(model)
    parts = vlm_parts(model)
    pattern = re.compile(lora_cfg.target_modules)
    hits = [(n, m) for n, m in model.named_modules() if pattern.fullmatch(n)]
    outside = [n for n, _ in hits if not (n.startswith(parts.llm + "."))]
    lora = sum(lora_cfg.r * (m.in_features + m.out_features) for _, m in hits if hasattr(m, "in_features"))
    return {
        "architecture": type(model).__name__,
        **{k: counts[k] for k in ("total", "vision", "projector", "llm", "other")},
        "lora": lora,
        "lora_modules": len(hits),
        "lora_outside_llm": outside[:4],
    }


def memory_estimate(n_params: int, n_trainable: int, zero_stage: int, world_size: int, precision: str) -> dict:
    """Bytes per GPU for params, grads and optimizer state (module doc), in GiB.

    Where DeepSpeed's own estimator fits (every parameter trains, ZeRO-2, bf16)
    its figure is returned too (`deepspeed_gib`) and must agree with ours.
    """
    p_bytes, g_bytes, o_bytes = (2, 6, 12) if precision == "bf16" else (4, 4, 8)
    params = n_params * p_bytes / (world_size if zero_stage >= 3 else 1)
    grads = n_trainable * g_bytes / (world_size if zero_stage >= 2 else 1)
    optim = n_trainable * o_bytes / (world_size if zero_stage >= 1 else 1)
    out = {"params_gib": params / GIB, "grads_gib": grads / GIB, "optimizer_gib": optim / GIB,
           "total_gib": (params + grads + optim) / GIB}
    if n_trainable == n_params and zero_stage == 2 and precision == "bf16":
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        _cpu, gpu = estimate_zero2_model_states_mem_needs(n_params, num_gpus_per_node=world_size, cpu_offload=False)
        out["deepspeed_gib"] = gpu / GIB
    return out


def _dataset_sizes(data_dir: str | Path) -> dict | None:
    """Rows for stage 1 (caption) and stage 2 (other tasks) from the manifest, all splits (an estimate)."""
    import json

    from irgpt import storage

    manifest = storage.join(str(data_dir), "manifest.json")
    if not storage.is_file(manifest):
        return None
    try:
        data = json.loads(storage.read_bytes(manifest))
    except json.JSONDecodeError:
        return None
    tasks = (data.get("composition") or {}).get("task") or {}
    total = int(data.get("num_rows") or sum(tasks.values()) or 0)
    captions = int(tasks.get("caption", 0))
    return {"stage1": captions, "stage2": max(0, total - captions)} if total else None


def _check_paths(cfg: Config) -> list[dict]:
    from irgpt import storage

    checks = []
    if cfg.train.model != "tiny":
        checks.append(("train.model", cfg.train.model, "a local model directory"))
    checks.append(("data.dir", cfg.data_location, "made by `irgpt data synth` / `irgpt data import`"))
    lesson1 = cfg.scoring.lesson1
    if lesson1.extractor != "tiny":
        checks.append(("scoring.lesson1.extractor", lesson1.extractor, "a local ViTMAE directory"))
    if lesson1.visible_data:
        checks.append(("scoring.lesson1.visible_data", lesson1.visible_data, "a dataset directory"))
    if cfg.scoring.lesson2.pretrained:
        checks.append(("scoring.lesson2.pretrained", cfg.scoring.lesson2.pretrained, "a CLIP checkpoint file"))
    if cfg.eval.bench_dir:
        checks.append(("eval.bench_dir", cfg.eval.bench_dir, "a dataset directory"))
    return [{"key": k, "path": p, "exists": storage.exists(p), "what": w} for k, p, w in checks]


def dry_run(cfg: Config, strict: bool = False, file=None) -> dict:
    """Check `cfg` for training; print the report to `file` (default stdout; False = don't print)."""
    warnings: list[str] = []
    errors: list[str] = []
    train = cfg.train
    world = data_parallel_world_size(train)
    use_gpu = train.use_gpu
    if use_gpu and train.gpus_per_worker == 0:
        warnings.append("train.use_gpu is true with gpus_per_worker 0: Ray Train's default of 1 GPU per worker applies")
    if train.gpus_per_worker > 1:
        warnings.append(f"train.gpus_per_worker={train.gpus_per_worker}: each Ray Train worker is one data-parallel "
                        f"rank on one GPU; use num_workers = number of GPUs and gpus_per_worker 1")
    if not use_gpu and train.gpus_per_worker > 0:
        warnings.append("train.gpus_per_worker is ignored because train.use_gpu is false")
    precision = resolve_precision(cfg.deepspeed, use_gpu)

    config, source = model_config_for(cfg, warnings)
    counts = count_parameters(config, train.lora, train.trust_remote_code)
    wants_stage2 = "train_stage2" in cfg.run.stages
    if counts["lora_outside_llm"]:
        errors.append(f"train.lora.target_modules also matches modules outside the LLM: {counts['lora_outside_llm']}")
    if counts["lora_modules"] == 0:
        (errors if wants_stage2 else warnings).append(
            f"train.lora.target_modules {train.lora.target_modules!r} matches no module of {counts['architecture']}")

    sizes = _dataset_sizes(cfg.data_location)
    stages: dict = {}
    for key, stage_cfg in (("stage1", train.stage1), ("stage2", train.stage2)):
        try:
            arith = batch_arithmetic(stage_cfg.global_batch_size, stage_cfg.micro_batch_size, world)
        except CommandError as exc:
            errors.append(f"train.{key}: {exc}")
            continue
        if key == "stage1":
            n_params, trainable = counts["total"], counts["vision"] + counts["projector"]
            if stage_cfg.train_llm:  # the LLM and its head (counted under "other") train too
                trainable = counts["total"]
        else:  # LoRA + the trainable projector copy (the frozen original stays in memory)
            n_params = counts["total"] + counts["lora"] + counts["projector"]
            trainable = counts["lora"] + counts["projector"]
        steps = total_optimizer_steps(sizes[key], stage_cfg) if sizes and sizes[key] else stage_cfg.max_steps
        ds = build_ds_config(train, stage_cfg, cfg.deepspeed, world, steps or PLACEHOLDER_STEPS, use_gpu)
        stages[key] = {
            "batch": arith.to_dict(),
            "lr": stage_cfg.lr,
            "epochs": stage_cfg.epochs,
            "params": n_params,
            "trainable_params": trainable,
            "samples": sizes[key] if sizes else None,
            "total_steps": steps,
            "memory": memory_estimate(n_params, trainable, cfg.deepspeed.zero_stage, world, precision),
            "ds_config": ds,
        }
    paths = _check_paths(cfg)
    for p in paths:
        if not p["exists"] and p["key"] != "train.model":  # the model was reported above
            (errors if strict else warnings).append(f"{p['key']} {p['path']} does not exist ({p['what']})")
    if strict and "built-in" in source:
        errors.append(f"train.model {train.model} does not exist")
    if errors:
        raise CommandError("dry run found problems:\n  - " + "\n  - ".join(errors))

    result = {
        "ok": True,
        "config_hash": cfg.hash(),
        "model": {"name": train.model, "source": source, **counts},
        "world": {"num_workers": train.num_workers, "gpus_per_worker": train.gpus_per_worker, "use_gpu": use_gpu,
                  "world_size": world, "total_gpus": train.num_workers * max(1, train.gpus_per_worker) if use_gpu else 0,
                  "precision": precision, "zero_stage": cfg.deepspeed.zero_stage},
        "stages": stages,
        "paths": paths,
        "warnings": warnings,
    }
    if file is not False:
        print(format_report(result), file=file or sys.stdout)
    return result


def _b(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"


def _mem(gib: float) -> str:
    return f"{gib:.2f} GiB" if gib >= 0.1 else f"{gib * 1024:.1f} MiB"


def format_report(result: dict) -> str:
    m, w = result["model"], result["world"]
    lines = [
        "irgpt train --dry-run: the config is valid; nothing was started.",
        f"model       {m['name']}  [{m['source']}]  {m['architecture']}",
        f"parameters  total {_b(m['total'])} = vision {_b(m['vision'])} + projector {_b(m['projector'])} "
        f"+ llm {_b(m['llm'])} + lm_head/other {_b(m['other'])}; stage-2 LoRA "
        f"{_b(m['lora'])} on {m['lora_modules']} modules",
        f"world       {w['world_size']} data-parallel rank(s) (train.num_workers), "
        f"{'GPU' if w['use_gpu'] else 'CPU'}, {w['precision']}, ZeRO-{w['zero_stage']}",
    ]
    unit = "GPU" if w["use_gpu"] else "worker"
    for key, s in result["stages"].items():
        b, mem = s["batch"], s["memory"]
        steps = s["total_steps"] if s["total_steps"] else f"unknown (no dataset yet; {PLACEHOLDER_STEPS} in ds config)"
        lines += [
            f"{key}      lr {s['lr']:g}, {s['epochs']} epoch(s), global batch {b['global_batch_size']} = micro "
            f"{b['micro_batch_size']} x world {b['world_size']} x accumulation {b['grad_accum_steps']}; steps {steps}",
            f"            trainable {_b(s['trainable_params'])} of {_b(s['params'])}; per {unit}: params "
            f"{_mem(mem['params_gib'])} + grads {_mem(mem['grads_gib'])} + optimizer {_mem(mem['optimizer_gib'])}"
            f" = {_mem(mem['total_gib'])} (activations not included)",
        ]
    for p in result["paths"]:
        lines.append(f"path        {p['key']}: {p['path']} [{'ok' if p['exists'] else 'missing'}]")
    lines += [f"WARNING     {msg}" for msg in result["warnings"]]
    return "\n".join(lines)
