"""Which parameters train in each stage (docs/method.md "Model and two training stages").

- Stage 1 (incremental pre-training): vision encoder + projector train; the
  LLM, its embeddings and `lm_head` are frozen.
- Stage 2 (instruction fine-tuning): projector + LoRA adapters on the LLM's
  linear layers train; vision encoder and all base LLM weights are frozen.

Stage 2 uses `peft.get_peft_model` with the projector in `modules_to_save`:
peft then keeps a trainable copy of the projector and writes it into the
adapter checkpoint, so `model.save_pretrained(dir)` saves everything stage 2
changed (LoRA A/B + projector) and `merge_and_unload()` gives a plain model.
The LoRA target is a regex on module names (`LoraConfig.target_modules`,
matched with `re.fullmatch` by peft) that must hit only the LLM: the vision
tower has `q_proj`/`v_proj` too (docs/stack.md).

Module names (transformers 5.x): LLaVA and native InternVL keep
`model.model.{vision_tower, multi_modal_projector, language_model}` and
`model.lm_head`; remote-code InternVL (`internvl_chat`) has `vision_model`,
`mlp1`, `language_model` (its head lives inside `language_model`);
Qwen2-VL keeps its projector inside the vision tower
(`model.visual.merger`), so the projector is matched before the vision part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from irgpt.config import LoraConfig
from irgpt.errors import CommandError


@dataclass(frozen=True)
class VLMParts:
    """Dotted module names (relative to the model) of the three parts."""

    vision: str
    projector: str
    llm: str


_LAYOUTS = (
    VLMParts("model.vision_tower", "model.multi_modal_projector", "model.language_model"),  # LLaVA, InternVL (HF)
    VLMParts("vision_model", "mlp1", "language_model"),  # InternVL remote code
    VLMParts("model.visual", "model.visual.merger", "model.language_model"),  # Qwen2-VL, Qwen2.5-VL
)


def _base(model):
    """The transformers model under a peft wrapper (or the model itself)."""
    from irgpt.models.vlm import is_peft_model

    return model.get_base_model() if is_peft_model(model) else model


def vlm_parts(model) -> VLMParts:
    """Find the vision / projector / LLM modules of a supported VLM."""
    modules = dict(_base(model).named_modules())
    for layout in _LAYOUTS:
        if all(name in modules for name in (layout.vision, layout.projector, layout.llm)):
            return layout
    raise CommandError(f"{type(_base(model)).__name__}: cannot find vision tower / projector / language model "
                       f"modules (supported layouts: {[layout.__dict__ for layout in _LAYOUTS]})")


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def apply_stage(model, stage: int, lora_cfg: LoraConfig | None = None, train_llm: bool = False):
    """Set `requires_grad` for `stage` (1 or 2) and return the model to train.

    `train_llm` (stage 1 only, `train.stage1.train_llm`): the LLM and its output
    head train too, a deviation from the method for stand-in models whose LLM
    cannot read visual tokens (docs/experiments.md says why).

    Stage 1 returns `model` itself; stage 2 returns a `peft.PeftModel`
    wrapping it (LoRA on the modules `lora_cfg.target_modules` matches, the
    projector in `modules_to_save`). Raises CommandError when the regex hits
    nothing or hits a module outside the LLM.
    """
    if stage not in (1, 2):
        raise CommandError(f"training stage must be 1 or 2, got {stage!r}")
    parts = vlm_parts(model)
    if stage == 1:
        head = {id(p) for p in model.get_output_embeddings().parameters()} if train_llm else set()
        for name, param in model.named_parameters():
            param.requires_grad_(_under(name, parts.vision) or _under(name, parts.projector)
                                 or (train_llm and (_under(name, parts.llm) or id(param) in head)))
        return model
    if train_llm:
        raise CommandError("train_llm applies to stage 1 only (stage 2 trains LoRA adapters on the LLM)")

    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    lora_cfg = lora_cfg or LoraConfig()
    pattern = re.compile(lora_cfg.target_modules)
    hits = [n for n, _ in model.named_modules() if pattern.fullmatch(n)]
    if not hits:
        llm_linear = [n for n, m in model.named_modules()
                      if _under(n, parts.llm) and type(m).__name__ == "Linear"][:6]
        raise CommandError(f"train.lora.target_modules {lora_cfg.target_modules!r} matches no module; "
                           f"LLM linear layers look like {llm_linear}")
    outside = [n for n in hits if not _under(n, parts.llm)]
    if outside:
        raise CommandError(f"train.lora.target_modules {lora_cfg.target_modules!r} also matches modules outside "
                           f"the LLM ({parts.llm}): {outside[:4]}; anchor it on the language model")
    for param in model.parameters():
        param.requires_grad_(False)
    peft_cfg = PeftLoraConfig(r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                              target_modules=lora_cfg.target_modules,
                              modules_to_save=[parts.projector.rsplit(".", 1)[-1]], bias="none")
    return get_peft_model(model, peft_cfg)


def trainable_parameter_names(model) -> list[str]:
    """Names of the parameters with requires_grad, in module order."""
    return [name for name, param in model.named_parameters() if param.requires_grad]


def parameter_counts(model) -> dict[str, int]:
    """Parameter counts: total, trainable, and per part (vision/projector/llm/other).

    Under a peft wrapper the projector's frozen original and trainable copy
    both count (they both occupy memory).
    """
    parts = vlm_parts(model)
    prefix = "base_model.model." if _base(model) is not model else ""
    counts = {"total": 0, "trainable": 0, "vision": 0, "projector": 0, "llm": 0, "other": 0}
    for name, param in model.named_parameters():
        n = param.numel()
        counts["total"] += n
        counts["trainable"] += n if param.requires_grad else 0
        rel = name[len(prefix):] if name.startswith(prefix) else name
        key = next((k for k, p in (("projector", parts.projector), ("vision", parts.vision), ("llm", parts.llm))
                    if _under(rel, p)), "other")
        counts[key] += n
    return counts
