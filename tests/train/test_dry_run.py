"""`dry_run`: the InternVL2-8B config without weights, the demo defaults, memory model, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from irgpt.config import Config, load_config
from irgpt.errors import CommandError
from irgpt.train.dry_run import GIB, dry_run, memory_estimate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def internvl_result():
    return dry_run(load_config(REPO / "configs" / "internvl2-8b.yaml"), file=False)


def test_internvl2_8b_without_weights(internvl_result, capsys):
    r = internvl_result
    assert r["ok"]
    m = r["model"]
    assert m["architecture"] == "InternVLForConditionalGeneration" and "built-in" in m["source"]
    assert 7.9e9 < m["total"] < 8.2e9  # InternVL2-8B: ~8.08B
    assert 2.9e8 < m["vision"] < 3.2e8 and 7.2e9 < m["llm"] < 7.5e9
    assert m["lora_modules"] == 32 * 7 and not m["lora_outside_llm"]
    assert any("does not exist here" in w for w in r["warnings"])
    w = r["world"]
    assert (w["world_size"], w["total_gpus"], w["precision"], w["zero_stage"]) == (8, 8, "bf16", 2)
    s1, s2 = r["stages"]["stage1"], r["stages"]["stage2"]
    assert s1["batch"] == {"global_batch_size": 32, "micro_batch_size": 4, "world_size": 8, "grad_accum_steps": 1}
    assert (s1["lr"], s1["epochs"], s2["lr"], s2["epochs"]) == (1e-3, 1, 2e-5, 5)
    # stage 1 trains vision + projector (~0.34B); ZeRO-2 shards grads + optimizer state over 8 GPUs
    assert s1["trainable_params"] == m["vision"] + m["projector"]
    mem = s1["memory"]
    assert mem["params_gib"] == pytest.approx(m["total"] * 2 / GIB)
    assert mem["grads_gib"] == pytest.approx(s1["trainable_params"] * 6 / 8 / GIB)
    assert mem["optimizer_gib"] == pytest.approx(s1["trainable_params"] * 12 / 8 / GIB)
    assert 14 < mem["total_gib"] < 18
    assert 14 < s2["memory"]["total_gib"] < 18 and s2["trainable_params"] < 1e8  # LoRA: tiny optimizer state
    assert s2["ds_config"]["zero_optimization"]["stage"] == 2 and s2["ds_config"]["bf16"]["enabled"]
    assert s2["ds_config"]["optimizer"]["params"]["lr"] == 2e-5


def test_report_is_printed(tmp_path):
    import io

    buf = io.StringIO()
    # run.root in tmp_path: the data does not exist yet there (a demo run in the working tree
    # must not change what this test sees), so the report warns about it
    dry_run(load_config(REPO / "configs" / "demo.yaml", [f"run.root={tmp_path}"]), file=buf)
    text = buf.getvalue()
    assert "nothing was started" in text and "accumulation 2" in text and "WARNING" in text


def test_demo_defaults():
    r = dry_run(Config(), file=False)
    assert r["ok"] and r["model"]["architecture"] == "LlavaForConditionalGeneration"
    assert r["model"]["total"] < 2e6
    assert r["world"]["precision"] == "fp32" and r["world"]["use_gpu"] is False
    assert r["stages"]["stage1"]["batch"]["grad_accum_steps"] == 2
    assert r["stages"]["stage1"]["ds_config"]["bf16"]["enabled"] is False


def test_memory_model_each_zero_stage():
    p, t, w = 1000 * GIB, 100 * GIB, 4  # in "params"; dividing by GIB gives round numbers
    assert memory_estimate(p, t, 0, w, "bf16") == {"params_gib": 2000, "grads_gib": 600, "optimizer_gib": 1200,
                                                   "total_gib": 3800}
    assert memory_estimate(p, t, 1, w, "bf16")["optimizer_gib"] == 300
    z2 = memory_estimate(p, t, 2, w, "bf16")
    assert (z2["params_gib"], z2["grads_gib"], z2["optimizer_gib"]) == (2000, 150, 300)
    z3 = memory_estimate(p, t, 3, w, "bf16")
    assert (z3["params_gib"], z3["grads_gib"], z3["optimizer_gib"]) == (500, 150, 300)
    f = memory_estimate(p, t, 0, 1, "fp32")
    assert (f["params_gib"], f["grads_gib"], f["optimizer_gib"]) == (4000, 400, 800)


@pytest.mark.parametrize("world", [1, 8])
def test_full_fine_tune_matches_deepspeeds_own_estimator(world):
    """Every parameter trainable, ZeRO-2, bf16: our accounting is DeepSpeed's."""
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    n = 8_000_000_000
    mem = memory_estimate(n, n, 2, world, "bf16")
    _cpu, gpu = estimate_zero2_model_states_mem_needs(n, num_gpus_per_node=world, cpu_offload=False)
    assert mem["deepspeed_gib"] == pytest.approx(gpu / GIB)
    assert mem["total_gib"] == pytest.approx(gpu / GIB, rel=1e-9)
    assert "deepspeed_gib" not in memory_estimate(n, n // 2, 2, world, "bf16")  # frozen parts: ours only


def test_bad_batch_arithmetic_is_an_error():
    cfg = load_config(None, ["train.num_workers=3"])
    with pytest.raises(CommandError, match=r"train.stage1: global_batch_size=32 .*micro_batch_size=8 x world_size=3"):
        dry_run(cfg, file=False)


def test_unknown_missing_model_is_an_error(tmp_path):
    cfg = load_config(None, [f"train.model={tmp_path / 'my-model'}"])
    with pytest.raises(CommandError, match="no such model directory"):
        dry_run(cfg, file=False)


def test_strict_turns_missing_paths_into_errors():
    with pytest.raises(CommandError, match="data.dir .* does not exist"):
        dry_run(load_config(REPO / "configs" / "internvl2-8b.yaml"), strict=True, file=False)


def test_lora_regex_outside_llm_is_an_error():
    cfg = load_config(None, [r"train.lora.target_modules=.*\.(q_proj|v_proj)"])
    with pytest.raises(CommandError, match="outside the LLM"):
        dry_run(cfg, file=False)


def test_existing_model_dir_is_read_from_config_json_only(tmp_path):
    from irgpt.models.vlm import tiny_vlm_config

    d = tmp_path / "ckpt"
    d.mkdir()
    tiny_vlm_config(500, image_token_id=4).save_pretrained(d)  # config.json only, no weights
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"num_rows": 100, "composition": {"task": {"caption": 40,
                                                                                             "scene": 60}}}))
    cfg = load_config(None, [f"train.model={d}", f"data.dir={data}"])
    r = dry_run(cfg, file=False)
    assert r["model"]["source"].endswith("config.json") and not r["warnings"]
    assert r["stages"]["stage1"]["samples"] == 40 and r["stages"]["stage1"]["total_steps"] == 2
    assert r["stages"]["stage2"]["total_steps"] == 2 * 2  # 60 rows / 32 per step = 2, x 2 epochs (defaults)
    assert r["stages"]["stage2"]["ds_config"]["scheduler"]["params"]["total_num_steps"] == 4


def test_training_refuses_a_curriculum_m_the_tiers_do_not_have(tmp_path):
    """`irgpt train --set curriculum.m=6` on 4 tiers fails before any work, naming both numbers."""
    from builders import write_l1_scores, write_l2_scores, write_samples

    from irgpt.config import load_config
    from irgpt.curriculum.tiers import build_tiers
    from irgpt.errors import CommandError
    from irgpt.train.trainer import train

    ids = write_samples(tmp_path / "data", 40, n_val=4)
    write_l1_scores(tmp_path / "l1", ids)
    write_l2_scores(tmp_path / "l2", ids)
    build_tiers(tmp_path / "data", [tmp_path / "l1", tmp_path / "l2"], tmp_path / "tiers", load_config().curriculum,
                overwrite=True)
    with pytest.raises(CommandError, match=r"curriculum.m=6 but .*tiers holds 4 tiers"):
        train(load_config(None, ["curriculum.m=6"]), "1", tmp_path / "data", tmp_path / "tiers", tmp_path / "run")
    assert not (tmp_path / "run" / "base").exists()  # refused before the base model was built
