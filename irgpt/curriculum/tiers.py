"""`irgpt tier`: join samples with their scores, rank, and split into M tiers.

    manifest = build_tiers("runs/demo/data", ["runs/demo/scores_l1", "runs/demo/scores_l2"],
                           "runs/demo/tiers", cfg.curriculum)

docs/method.md "Curriculum schedule": composite rank r = lam * rank_l1 + (1 - lam)
* rank_l2 over normalised ranks (one lesson only: that rank; anti: 1 - r),
ties broken by stable_hash(sample_id) (then the id); M tiers of equal size
(the first n % M get one extra row), tier 0 = easiest. Output layout and
manifest: `tier_write` and docs/curriculum.md.

Engines: `local` (pyarrow, everything in this process) and `ray` (Ray Data,
no rows on the driver: `tier_ray`). `auto` takes `local` only for small
inputs (<= LOCAL_MAX_ROWS sample and score rows); both write identical bytes.
The output is built in a temporary sibling folder and swapped in at the end,
so a failed run never leaves a half-written OUT.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa

from irgpt.config.loader import config_hash, to_dict
from irgpt.curriculum.ranking import tier_sizes
from irgpt.curriculum.tier_inputs import check_inputs, detect_scores, inspect_dataset
from irgpt.curriculum.tier_write import merge_tier_stats, output_schema, summarize_counts
from irgpt.data.io import (
    MANIFEST,
    base_manifest,
    read_manifest,
    swap_in,
    write_manifest,
    write_rejects,
)
from irgpt.errors import CommandError

DEFAULT_ROWS_PER_PART = 8192
"""Rows per output part: bounds the memory of one write task (rows carry images)."""
LOCAL_MAX_ROWS = 50_000
"""`engine="auto"` runs in-process at or below this many sample and score rows."""
VOLATILE_KEYS = ("created_unix", "command", "engine", "engine_notes", "python")
"""Manifest keys that may differ between two runs on the same inputs."""
KIND = "tiers"


def choose_engine(engine: str, data_rows: int, score_rows: int) -> str:
    if engine not in ("auto", "local", "ray"):
        raise CommandError(f"--engine {engine!r}: expected auto, local or ray")
    if engine != "auto":
        return engine
    return "local" if max(data_rows, score_rows) <= LOCAL_MAX_ROWS else "ray"


def build_tiers(
    data_dir: str | Path,
    score_dirs: list[str | Path],
    out_dir: str | Path,
    cfg,
    *,
    split: str | None = "train",
    engine: str = "auto",
    rows_per_part: int = DEFAULT_ROWS_PER_PART,
    reweight=None,
    overwrite: bool = False,
    ray_cfg=None,
) -> dict:
    """Write the tier datasets under `out_dir` and return the manifest.

    cfg: `CurriculumConfig`. split: tier only rows of this split (None: all).
    reweight: a `WeightsConfig` to recompute the Eq. 5 weights from `alpha`
    (whole Lesson 2 table medians) instead of keeping the table's `weight`.
    """
    out = Path(out_dir)
    _check_out(out, overwrite)
    if rows_per_part < 1:
        raise CommandError(f"rows_per_part must be >= 1, got {rows_per_part}")
    data = inspect_dataset(data_dir)
    scores = detect_scores(list(score_dirs))
    check_inputs(data, scores, cfg, split)
    if cfg.m > data.rows:
        raise CommandError(f"curriculum.m={cfg.m} is more tiers than {data.path} has rows ({data.rows}); "
                           "every tier must hold at least one row")
    chosen = choose_engine(engine, data.rows, max((s.rows for s in scores.values()), default=0))

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        kwargs = dict(split=split, rows_per_part=rows_per_part, reweight=reweight)
        if chosen == "local":
            from irgpt.curriculum.tier_local import run_local

            result = run_local(data, scores, tmp, cfg, **kwargs)
        else:
            from irgpt.curriculum.tier_ray import run_ray

            result = run_ray(data, scores, tmp, cfg, ray_cfg=ray_cfg, **kwargs)
        if result.n < cfg.m:
            counts = summarize_counts(result.count_rows)
            raise CommandError(
                f"{result.n} rows were tiered, fewer than curriculum.m={cfg.m} tiers"
                + (f" (split {split!r})" if split else "") + "; row statuses: "
                + ", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, int) and v)
                + "".join(f", orphan Lesson {k[-1]} score rows (ids not in the data) {v}"
                          for k, v in counts["orphan_scores"].items() if v)
                + ". Check that the score tables' sample_id values match the data's")
        manifest = _manifest(data, scores, cfg, result, chosen, split, rows_per_part, reweight)
        write_rejects(tmp, _rejects(result.rejects, data.path))
        write_manifest(tmp, manifest)
        swap_in(tmp, out)  # one atomic exchange: a kill leaves the old tiers or the new
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _manifest(data, scores, cfg, result, engine, split, rows_per_part, reweight) -> dict:
    sizes = tier_sizes(result.n, cfg.m)
    tiers = merge_tier_stats(result.parts, cfg.m)
    if [t["rows"] for t in tiers] != sizes:
        raise RuntimeError(f"tier sizes {[t['rows'] for t in tiers]} != planned {sizes}")
    counts = summarize_counts(result.count_rows)
    if counts["tiered"] != result.n:
        raise RuntimeError(f"tiered count {counts['tiered']} != ranked rows {result.n}")
    counts["orphan_examples"] = result.orphan_examples
    if not (cfg.weights and cfg.use_l2):
        weights = {"source": "constant 1.0 (curriculum.weights is false)" if not cfg.weights else "constant 1.0 (Lesson 2 not used)"}
    elif reweight is not None:
        weights = {"source": "recomputed from alpha (Eq. 5, --reweight)", "config": to_dict(reweight), **(result.weights or {})}
    else:
        weights = {"source": "Lesson 2 table column `weight`"}
    inputs = {"data": data.provenance()}
    for lesson, inp in sorted(scores.items()):
        inputs[f"lesson{lesson}"] = {**inp.provenance(), "used": bool(cfg.use_l1 if lesson == 1 else cfg.use_l2)}
    return base_manifest(
        KIND,
        num_rows=result.n,
        config_hash=config_hash(cfg),
        curriculum=to_dict(cfg),
        num_tiers=cfg.m,
        tier_sizes=sizes,
        rows_per_part=rows_per_part,
        split=split if split is not None else "all",
        engine=engine,
        engine_notes=result.notes,
        weights=weights,
        layout={
            "tier_dirs": "tier=K (K = 0 easiest .. M-1)",
            "files": "part-JJJJJ.parquet, rows_per_part rows each, in order",
            "order": "composite_rank, stable_hash(sample_id), sample_id; ascending",
            "tier_column": "int32 inside the files, equal to the path's K",
        },
        columns=output_schema(data.schema).names,
        counts=counts,
        inputs=inputs,
        tiers=tiers,
    )


def _rejects(table: pa.Table, data_path: Path) -> list[dict]:
    return [
        {"source_file": str(data_path), "line_or_index": None, "sample_id": r["sample_id"], "reason": r["reason"], "stage": "tier"}
        for r in table.to_pylist()
    ]


def _check_out(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise CommandError(f"--out {out}: exists and is not a directory")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise CommandError(f"--out {out}: not empty; pass --overwrite to replace an earlier tier output")
    if not (out / MANIFEST).is_file() or read_manifest(out).get("kind") != KIND:
        raise CommandError(f"--out {out}: not empty and not a tier output (no manifest of kind {KIND!r}); refusing to replace it")


def deterministic_view(manifest: dict) -> dict:
    """The manifest without the keys that legitimately differ between runs."""
    return {k: v for k, v in manifest.items() if k not in VOLATILE_KEYS}
