"""`irgpt pipeline --dry-run`: every stage checked before any work, real-scale inputs on tiny stand-ins."""

from __future__ import annotations

import argparse
import json

import pytest

from irgpt.cli import main
from irgpt.config import load_config
from irgpt.pipeline_check import check_pipeline


def _by_what(result: dict) -> dict:
    return {(r["stage"], r["what"]): r for r in result["checks"]}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """A Qwen2-VL stand-in, a random-init InfMAE base checkpoint (the release's layout), a HF CLIP dir."""
    import torch
    from families import build_qwen2_vl, make_hf_clip_dir

    from irgpt.models.infmae import InfMAE, InfMAEConfig

    root = tmp_path_factory.mktemp("dry")
    torch.manual_seed(0)
    infmae = InfMAE(InfMAEConfig(img_size=64, embed_dim=(32, 48, 64), depth=(1, 1, 2), num_heads=1,
                                 decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=1))
    torch.save({"model": infmae.state_dict(), "args": argparse.Namespace(model="infmae"), "epoch": 0},
               root / "checkpoint-0.pth")
    make_hf_clip_dir(root / "clip")
    return {"vlm": build_qwen2_vl(root / "qwen2vl"), "infmae": root / "checkpoint-0.pth", "clip": root / "clip",
            "root": root}


def _real_scale(inputs, *extra) -> list[str]:
    return [f"train.model={inputs['vlm']}", f"scoring.lesson1.extractor={inputs['infmae']}",
            f"scoring.lesson2.model={inputs['clip']}", f"run.root={inputs['root'] / 'runs'}", "train.num_workers=2",
            "train.stage1.micro_batch_size=4", "train.stage1.global_batch_size=32", *extra]


def test_a_real_scale_config_passes_and_every_stage_is_described(inputs):
    result = check_pipeline(load_config(None, _real_scale(inputs)))
    assert result["ok"], [r for r in result["checks"] if r["status"] == "error"]
    rows = _by_what(result)
    assert "kind infmae" in rows[("score_l1", "scoring.lesson1.extractor")]["detail"]
    assert "embed_dim (32, 48, 64)" in rows[("score_l1", "scoring.lesson1.extractor")]["detail"]
    assert rows[("score_l2", "scoring.lesson2.model")]["detail"].startswith("Hugging Face CLIP: vision 32 px")
    vlm = rows[("train", "train.model")]["detail"]
    assert "Qwen2VLForConditionalGeneration (family qwen2_vl): 4 image tokens at 56 px" in vlm
    assert "<|vision_start|> <|image_pad|> <|vision_end|>" in vlm and "eos <|im_end|>" in vlm
    s1 = rows[("train_stage1", "batch and memory")]["detail"]
    assert s1.startswith("global 32 = micro 4 x accumulation 4 x 2 rank(s)") and "GiB per GPU" in s1
    assert {r["stage"] for r in result["checks"]} >= {"run", "synth", "score_l1", "score_l2", "train",
                                                       "train_stage1", "train_stage2"}


def test_every_problem_is_listed_and_the_command_exits_2(inputs, tmp_path, capsys):
    (tmp_path / "vlm").mkdir()
    (tmp_path / "vlm" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    args = _real_scale(inputs, f"train.model={tmp_path / 'vlm'}", f"scoring.lesson1.extractor={tmp_path / 'none.pth'}",
                       "train.stage1.global_batch_size=30", f"eval.bench_dir={tmp_path / 'nobench'}")
    rc = main(["pipeline", "--dry-run", *[a for item in args for a in ("--set", item)]])
    out, err = capsys.readouterr()
    assert rc == 2 and "nothing was run" in err
    errors = [line for line in out.splitlines() if "  error  " in line]
    assert len(errors) == 4, out
    assert any("scoring.lesson1.extractor" in e and "none.pth" in e for e in errors)
    assert any("train.model" in e and "bert" in e for e in errors)
    assert any("global_batch_size" in e or "30" in e for e in errors)
    assert any("eval.bench_dir" in e and "nobench" in e for e in errors)
    assert not (inputs["root"] / "runs").exists()  # nothing was made


def test_the_default_config_passes_with_warnings_for_random_init_models(tmp_path):
    result = check_pipeline(load_config(None, [f"run.root={tmp_path}"]))
    assert result["ok"]
    warned = {r["what"] for r in result["checks"] if r["status"] == "warning"}
    assert {"scoring.lesson1.extractor", "scoring.lesson2.model", "train.model"} <= warned


def test_a_config_in_object_storage_is_checked_without_fetching_weights(inputs, s3_bucket, tmp_path, monkeypatch):
    """Models, dataset and run root in a bucket: every check passes, the VLM's weights are
    not downloaded (its config, tokenizer and templates are), a missing bucket is named."""
    from irgpt import storage

    monkeypatch.setenv("IRGPT_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("vlm", "clip"):
        storage.publish(inputs[name], f"{s3_bucket}/models/{name}")
    storage.write_bytes(f"{s3_bucket}/models/infmae.pth", inputs["infmae"].read_bytes())
    args = _real_scale(inputs, f"train.model={s3_bucket}/models/vlm", f"scoring.lesson2.model={s3_bucket}/models/clip",
                       f"scoring.lesson1.extractor={s3_bucket}/models/infmae.pth", f"run.root={s3_bucket}/runs")
    result = check_pipeline(load_config(None, args))
    assert result["ok"], [r for r in result["checks"] if r["status"] == "error"]
    rows = _by_what(result)
    assert rows[("run", "run directory")]["detail"] == f"{s3_bucket}/runs/demo (object storage; a new run)"
    assert "Qwen2VLForConditionalGeneration (family qwen2_vl)" in rows[("train", "train.model")]["detail"]
    assert "kind infmae" in rows[("score_l1", "scoring.lesson1.extractor")]["detail"]
    fetched = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert {"config.json", "tokenizer_config.json", "preprocessor_config.json"} <= {p.name for p in fetched}
    assert [p.name for p in fetched if p.suffix == ".safetensors"] == []  # neither the VLM's nor CLIP's weights
    assert sorted(p.name for p in fetched if p.suffix == ".pth") == ["infmae.pth"]  # read for its tensor shapes

    result = check_pipeline(load_config(None, [*args, "run.root=s3://no-such-bucket-irgpt/runs"]))
    assert not result["ok"]
    assert _by_what(result)[("run", "run directory")]["detail"] == (
        "run.root s3://no-such-bucket-irgpt/runs: no bucket 'no-such-bucket-irgpt' (create it first)")
