"""The family stand-ins in process: specs derived from the files, image inputs, prompts, freezing.

The slow counterpart (tests/train/test_family_training.py) trains, evaluates and
reloads them through the CLI.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from families import BUILDERS
from PIL import Image

from irgpt.errors import CommandError
from irgpt.models.collator import IGNORE_INDEX, VLMCollator, model_inputs
from irgpt.models.freeze import apply_stage, parameter_counts, trainable_parameter_names
from irgpt.models.vlm import load_vlm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _png(seed: int, size=(40, 52)) -> bytes:
    arr = (np.random.default_rng(seed).random(size) * 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _samples(n: int = 2) -> list[dict]:
    return [{"sample_id": f"s{i}", "image": _png(i),
             "conversations": [{"from": "human", "value": "<image>\nHow many cars are there?"},
                               {"from": "gpt", "value": f"<num>{i + 3}</num>"}]} for i in range(n)]


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def family(request, tmp_path_factory):
    return request.param, load_vlm(BUILDERS[request.param](tmp_path_factory.mktemp(request.param)))


EXPECTED = {  # family -> (spec.family, image side, image tokens, block start, block end, pixel_values shape for 2)
    "internvl": ("internvl", 32, 4, "<img>", "</img>", (2, 3, 32, 32)),
    "llava15": ("llava", 32, 16, None, None, (2, 3, 32, 32)),
    "qwen2_vl": ("qwen2_vl", 56, 4, "<|vision_start|>", "<|vision_end|>", (2 * 16, 3 * 2 * 14 * 14)),
    "qwen2_5_vl": ("qwen2_vl", 56, 4, "<|vision_start|>", "<|vision_end|>", (2 * 16, 3 * 2 * 14 * 14)),
}


def test_spec_is_derived_from_the_checkpoint_files(family):
    name, loaded = family
    kind, side, n, start, end, _ = EXPECTED[name]
    spec = loaded.spec
    assert (spec.family, spec.image_size, spec.num_image_tokens, spec.image_start, spec.image_end) == \
        (kind, side, n, start, end)
    assert spec.prompt_format == "chat_template"


def test_batch_runs_forward_and_labels_only_the_answer(family):
    name, loaded = family
    tok = loaded.tokenizer
    collator = VLMCollator(tok, loaded.spec, 256)
    batch = collator(_samples())
    assert tuple(batch["pixel_values"].shape) == EXPECTED[name][5]
    image_id = collator.image_token_id
    assert ((batch["input_ids"] == image_id).sum(dim=1) == loaded.spec.num_image_tokens).all()
    answer = tok.decode([t for t in batch["labels"][0].tolist() if t != IGNORE_INDEX])
    assert answer.lstrip().startswith("<num>3</num>") and tok.eos_token in answer  # eos appended where the template has none
    loaded.model.eval()
    with torch.no_grad():
        logits = loaded.model(**model_inputs(batch)).logits
    assert logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(logits).all()


def test_llava15_template_reads_list_content_only(family):
    name, loaded = family
    collator = VLMCollator(loaded.tokenizer, loaded.spec, 256)
    assert collator.content_as_list is (name == "llava15")
    text = loaded.tokenizer.decode(collator(_samples(1))["input_ids"][0])
    assert "How many cars are there?" in text  # the question is never dropped by the template


def test_a_template_that_renders_no_text_is_refused_at_start(family):
    _, loaded = family
    tok = loaded.tokenizer
    saved = tok.chat_template
    tok.chat_template = "{% for m in messages %}<|turn|>{% endfor %}"
    try:
        with pytest.raises(CommandError, match="renders neither string content nor"):
            VLMCollator(tok, loaded.spec, 256)
    finally:
        tok.chat_template = saved


def test_qwen2_vl_patches_equal_the_image_processor(tmp_path):
    from transformers import Qwen2VLImageProcessor

    loaded = load_vlm(BUILDERS["qwen2_vl"](tmp_path / "q"))
    spec = loaded.spec
    images = [Image.fromarray((np.random.default_rng(s).random((56, 56)) * 255).astype("uint8"), mode="L")
              for s in range(3)]
    ours = spec.image_inputs([spec.image_tensor(im) for im in images])
    ref = Qwen2VLImageProcessor.from_pretrained(tmp_path / "q")([im.convert("RGB") for im in images],
                                                              return_tensors="pt")
    torch.testing.assert_close(ours["pixel_values"], ref["pixel_values"], atol=1e-5, rtol=1e-5)
    assert ours["image_grid_thw"].tolist() == ref["image_grid_thw"].tolist() == [[1, 4, 4]] * 3


def test_qwen2_vl_side_follows_the_processor_pixel_limits(tmp_path):
    import json

    path = BUILDERS["qwen2_vl"](tmp_path / "q")
    cfg = json.loads((path / "preprocessor_config.json").read_text())
    cfg["size"] = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280}  # the released default
    (path / "preprocessor_config.json").write_text(json.dumps(cfg))
    spec = load_vlm(path).spec
    assert (spec.image_size, spec.num_image_tokens) == (448, 256)
    cfg["size"] = {"shortest_edge": 100 * 100, "longest_edge": 100 * 100}  # no multiple of 28 in range
    (path / "preprocessor_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CommandError, match="no square side that is a multiple of 28 fits"):
        load_vlm(path)


def test_stages_train_the_right_parts(family):
    import copy

    from irgpt.models.freeze import vlm_parts

    name, loaded = family
    model = copy.deepcopy(loaded.model)
    parts = vlm_parts(model)
    names = trainable_parameter_names(apply_stage(model, 1))
    assert names and all(n.startswith((parts.vision, parts.projector)) for n in names)
    counts = parameter_counts(model)
    assert counts["projector"] > 0 and counts["vision"] > 0 and counts["llm"] > 0
    peft = apply_stage(model, 2)
    names = trainable_parameter_names(peft)
    assert any("lora_" in n for n in names) and any(".modules_to_save." in n for n in names)
    lora_outside = [n for n in names if "lora_" in n and ".language_model." not in n]
    assert lora_outside == []


def test_a_chatml_turn_end_counts_as_the_end_of_an_answer(tmp_path):
    """A Qwen tokenizer whose eos is <|endoftext|> while turns end with <|im_end|>: no eos appended."""
    loaded = load_vlm(BUILDERS["qwen2_vl"](tmp_path / "q"))
    tok = loaded.tokenizer
    tok.add_tokens(["<|endoftext|>"], special_tokens=True)
    tok.eos_token = "<|endoftext|>"
    collator = VLMCollator(tok, loaded.spec, 256)
    answer = tok.decode([t for t in collator(_samples(1))["labels"][0].tolist() if t != IGNORE_INDEX])
    assert answer == "<num>3</num><|im_end|>\n"
