"""Real VLM families on tiny stand-ins: train both stages, evaluate, reload (slow).

For each of transformers-native InternVL (Qwen2 text, ChatML), LLaVA-1.5
(CLIP vision + Llama, a list-content chat template without eos) and
Qwen2-VL (patch sequences, M-RoPE): a random-init checkpoint saved with
`save_pretrained` (tests/families.py), then exactly what a user runs:
`irgpt train --stage all --set train.model=DIR`, `irgpt eval run` on the
stage-2 model, the merged model reloaded with `from_pretrained`, and the
stage-2 adapter reloaded with peft onto stage 1's model (where stage 2
started), which must give the merged model's logits.
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

TRAIN_SETS = ["train.num_workers=1",
              "train.stage1.micro_batch_size=4", "train.stage1.global_batch_size=8",
              "train.stage2.micro_batch_size=4", "train.stage2.global_batch_size=8", "train.stage2.epochs=1",
              "train.max_length=256"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    from builders import synthetic_tiers

    return synthetic_tiers(tmp_path_factory.mktemp("families"), num_samples=16, seed=3)


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def _logits(model, batch):
    import torch

    from irgpt.models.collator import model_inputs

    model.eval()
    with torch.no_grad():
        return model(**model_inputs(batch)).logits


@pytest.mark.parametrize("family", ["internvl", "llava15", "qwen2_vl"])
def test_family_trains_evaluates_and_reloads(family, data, ray_local, tmp_path):
    import torch
    from families import BUILDERS
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from irgpt.cli import main
    from irgpt.data.io import read_table
    from irgpt.eval.run import benchmark_rows
    from irgpt.models.collator import VLMCollator
    from irgpt.models.vlm import ADAPTER_DIR, load_vlm

    base = BUILDERS[family](tmp_path / "base")
    run = tmp_path / "run"
    rc = main(["train", "--stage", "all", "--data", str(data["samples"]), "--tiers", str(data["tiers"]),
               "--out", str(run), *_sets(TRAIN_SETS + [f"train.model={base}"])])
    assert rc == 0
    summary = json.loads((run / "summary.json").read_text())
    for stage in (1, 2):
        st = summary[f"stage{stage}"]
        assert st["steps"] == st["planned_steps"] > 0, st
        assert st["final_val_loss"] < st["initial_val_loss"], st
    model_dir = run / "stage2" / "model"

    rc = main(["eval", "run", "--model", str(model_dir), "--bench", str(data["samples"]), "--out", str(tmp_path / "ev"),
               *_sets(["eval.max_new_tokens=6", "eval.concurrency=1", "eval.batch_size=4"])])
    assert rc == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] == len(benchmark_rows(data["samples"])) > 0
    errors = [r for r in map(json.loads, (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()) if r.get("error")]
    assert errors == []

    loaded = load_vlm(model_dir)
    original = load_vlm(base)
    assert loaded.spec == original.spec  # the family's input contract survives training
    merged = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True)
    assert type(merged).__name__ == type(original.model).__name__
    rows = read_table(data["samples"], ["sample_id", "image", "conversations", "split"]).to_pylist()[:3]
    batch = VLMCollator(loaded.tokenizer, loaded.spec, 256)(rows)
    want = _logits(merged, batch)
    assert not torch.allclose(want, _logits(original.model, batch))  # training changed the model
    adapted = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(run / "stage1" / "model",
                                                                                    local_files_only=True),
                                        model_dir / ADAPTER_DIR)
    torch.testing.assert_close(_logits(adapted, batch), want, atol=2e-4, rtol=1e-4)
