"""Lesson 2 on Ray: `irgpt score ir-text` (docs/method.md "Lesson 2", Eq. 4-5).

1. Pool: K + 1 infrared caption pairs chosen by a hash of (seed, sample_id)
   (`clip_loss.select_pool`), the same for l and l'.
2. `before` pass (resumable, actor pool): l_i = symmetric InfoNCE of pair i
   against the pool, with CLIP before warm-up -> `OUT/_before/`.
3. Warm-up: given (`irgpt clip-warmup`, a Ray Train job: the pipeline's
   `clip_warmup` stage, or `irgpt score ir-text`, which runs it into `OUT/warmup/`).
4. `after` pass: l'_i with the warmed CLIP; each part joins the committed
   `before` part of the same index (the plans are identical) and writes
   loss_before, loss_after and alpha (Eq. 4) -> `OUT/_after/`.
5. Medians of the two alpha branches by a distributed aggregate over the
   `after` parts, then Eq. 5 weights (a pure function of alpha and the
   `weights` options, so tiering and Tune can recompute them) and rank_l2.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from irgpt import storage
from irgpt.config import Config, config_hash
from irgpt.data.io import (
    base_manifest,
    read_manifest,
    shard_name,
    shard_paths,
    write_manifest,
    write_rejects,
)
from irgpt.data.schema import answer_text, ir_caption_filter, is_ir_caption
from irgpt.errors import CommandError
from irgpt.ray_utils import ensure_ray, warn_untrained
from irgpt.scoring.base import Scorer
from irgpt.scoring.pipeline import (
    attach_data_column,
    part_nodes,
    read_rejects_parts,
    run_pass,
    write_score_parts,
)
from irgpt.scoring.ranks import normalized_rank

SCORER_VERSION = "ir_text/1"
INPUT_COLUMNS = ("sample_id", "image", "band", "task", "split", "conversations")


class LossScorer(Scorer):
    """Per-sample pool loss of the infrared caption pairs of one part."""

    name = "clip-pool-loss"
    input_columns = INPUT_COLUMNS

    def __init__(self, model: str, pretrained: str | None, checkpoint: str | None, seed: int,
                 context_length: int, pool: dict, k: int, before_dir: str | None = None):
        from irgpt.models.clip import create_clip, load_clip
        from irgpt.scoring.clip_loss import PoolLoss

        if checkpoint:
            self.model, self.preprocess, self.tokenizer = load_clip(model, checkpoint)
        else:
            self.model, self.preprocess, self.tokenizer = create_clip(model, pretrained, seed)
        self.context_length = context_length
        self.before_dir = Path(before_dir) if before_dir else None
        images = self._decode(pool["image"])
        tokens, _ = self._tokenize(pool["caption"])
        self.pool = PoolLoss(self.model, images, tokens, pool["sample_id"], k=k, preprocess=self.preprocess)

    def _decode(self, blobs) -> np.ndarray:
        from irgpt.data.images import decode_to_array
        from irgpt.models.clip import image_size

        return np.stack([decode_to_array(b, size=image_size(self.model), mode="L") for b in blobs])

    def _tokenize(self, captions):
        from irgpt.models.clip import tokenize_with_truncation

        return tokenize_with_truncation(self.tokenizer, captions, self.context_length)

    def score(self, table, part):
        from irgpt.data.images import ImageRejected, decode_to_array
        from irgpt.models.clip import image_size

        ids = table.column("sample_id").to_pylist()
        bands, tasks = table.column("band").to_pylist(), table.column("task").to_pylist()
        convs = table.column("conversations").to_pylist()
        rows, images, captions, rejects = [], [], [], []
        size = image_size(self.model)
        for i in range(table.num_rows):
            if not is_ir_caption(bands[i], tasks[i]):
                continue
            caption = answer_text(convs[i] or []).strip()
            if not caption:
                rejects.append({"sample_id": ids[i], "reason": "empty caption (no gpt answer text)", "stage": "score_l2"})
                continue
            try:
                images.append(decode_to_array(table.column("image")[i].as_py(), size=size, mode="L"))
            except ImageRejected as exc:
                rejects.append({"sample_id": ids[i], "reason": f"cannot decode image: {exc.reason}", "stage": "score_l2"})
                continue
            rows.append(i)
            captions.append(caption)
        out = table.select(["sample_id", "band", "split"]).take(pa.array(rows, pa.int64()))
        if rows:
            tokens, truncated = self._tokenize(captions)
            loss = self.pool.losses(np.stack(images), tokens, [ids[i] for i in rows])
        else:
            truncated, loss = np.zeros(0, bool), np.zeros(0, np.float32)
        out = out.append_column("truncated", pa.array(truncated, pa.bool_()))
        if self.before_dir is None:
            return out.append_column("loss_before", pa.array(loss, pa.float32())), rejects
        before = pq.read_table(storage.fetch(self.before_dir / shard_name(part["part"])),
                               columns=["sample_id", "loss_before"])
        lookup = dict(zip(before.column("sample_id").to_pylist(), before.column("loss_before").to_pylist()))
        l_before = np.array([lookup[s] for s in out.column("sample_id").to_pylist()], np.float32)
        out = out.append_column("loss_before", pa.array(l_before, pa.float32()))
        out = out.append_column("loss_after", pa.array(loss, pa.float32()))
        from irgpt.scoring.weights import alpha

        return out.append_column("alpha", pa.array(alpha(l_before, loss).astype(np.float32))), rejects


def _pool_rows(data_dir: Path, k: int, seed: int, context_length: int) -> dict:
    """The K + 1 pool pairs (ids, image bytes, captions), skipping unusable rows."""
    from irgpt.data.images import ImageRejected, decode_to_array
    from irgpt.scoring.clip_loss import select_pool

    meta = pa.concat_tables(pq.read_table(p, columns=["sample_id", "band", "task"]) for p in shard_paths(data_dir))
    candidates = meta.filter(ir_caption_filter()).column("sample_id").to_pylist()
    if len(candidates) < 2:
        raise CommandError(f"{data_dir}: Lesson 2 needs at least 2 infrared caption pairs, found {len(candidates)}")
    order = select_pool(candidates, k=len(candidates), seed=seed)  # full hash order; take the first usable
    wanted = set(order[: min(len(order), 2 * (k + 1))])
    rows = {}
    for p in shard_paths(data_dir):
        t = pq.read_table(p, columns=["sample_id", "image", "conversations"])
        t = t.filter(pc.is_in(t.column("sample_id"), pa.array(sorted(wanted))))
        for r in t.to_pylist():
            rows[r["sample_id"]] = r
    pool = {"sample_id": [], "image": [], "caption": []}
    for sid in order:
        if len(pool["sample_id"]) == k + 1:
            break
        r = rows.get(sid)
        if r is None:
            continue
        caption = answer_text(r["conversations"] or []).strip()
        try:
            decode_to_array(r["image"])
        except ImageRejected:
            continue
        if caption:
            pool["sample_id"].append(sid)
            pool["image"].append(r["image"])
            pool["caption"].append(caption)
    return pool


def score_ir_text(cfg: Config, data_dir: str | Path, out_dir: str | Path, *,
                  warmup: str | Path) -> dict:
    """Score every infrared caption pair of `data_dir` with the CLIP before and after
    the warm-up checkpoint `warmup` (`irgpt.train.clip_job.ensure_clip_warmup`, which
    `irgpt score ir-text` and the pipeline's `clip_warmup` stage run); returns the manifest."""
    from irgpt.scoring.weights import distributed_medians, weights_from_config

    t_start = time.perf_counter()
    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir).resolve()  # actors have another cwd
    l2 = cfg.scoring.lesson2
    data_manifest = read_manifest(data_dir)
    from irgpt.models.hf_clip import is_hf_clip_dir

    untrained = l2.pretrained is None and not is_hf_clip_dir(l2.model)  # a HF directory holds its weights
    if untrained:
        warn_untrained("the Lesson 2 CLIP (before its warm-up)", "scoring.lesson2.pretrained", None)
    if not Path(warmup).is_file():  # before any pass runs
        raise CommandError(f"warm-up checkpoint not found: {warmup}")
    warmup = str(Path(warmup).resolve())  # actors run in another directory
    ensure_ray(cfg.ray)
    pool = _pool_rows(data_dir, l2.pool_size, l2.seed, l2.context_length)
    data_key = {"dir": storage.readable(data_dir.resolve()), "config_hash": data_manifest.get("config_hash"),
                "created": data_manifest.get("created_unix")}
    common = {"model": l2.model, "pretrained": l2.pretrained, "seed": l2.seed,
              "context_length": l2.context_length, "pool": pool, "k": l2.pool_size}
    key = {"model": l2.model, "pretrained": l2.pretrained, "seed": l2.seed, "k": l2.pool_size,
           "pool": pool["sample_id"], "data": data_key}
    run_pass(name="score_l2:before", input_dir=data_dir, out_dir=out_dir / "_before", scorer_factory=LossScorer,
             scorer_kwargs={**common, "checkpoint": None}, pool=l2.pool, key=key, columns=list(INPUT_COLUMNS))

    from irgpt.models.clip import load_clip, weights_hash

    warm_hash = weights_hash(load_clip(l2.model, warmup)[0])
    run_pass(name="score_l2:after", input_dir=data_dir, out_dir=out_dir / "_after", scorer_factory=LossScorer,
             scorer_kwargs={**common, "checkpoint": warmup, "before_dir": str(out_dir / "_before")},
             pool=l2.pool, key={**key, "warmup_weights": warm_hash}, columns=list(INPUT_COLUMNS))

    import ray

    after_ds = ray.data.read_parquet(storage.readable(out_dir / "_after"), columns=["alpha"])
    medians = distributed_medians(after_ds, "alpha")
    table = pa.concat_tables(pq.read_table(p) for p in shard_paths(out_dir / "_after")).sort_by("sample_id")
    alpha_values = table.column("alpha").to_numpy().astype(np.float64)
    w = l2.weights
    weight = weights_from_config(alpha_values, w, medians)  # a NaN alpha: NaN weight, a tier reject
    rank_source = table.column(l2.rank_by).to_numpy().astype(np.float64)
    rank = normalized_rank(rank_source, table.column("sample_id").to_pylist())
    table = table.append_column("weight", pa.array(weight.astype(np.float32)))
    table = table.append_column("rank_l2", pa.array(rank.astype(np.float32)))
    table = table.append_column("scorer_version", pa.array([SCORER_VERSION] * table.num_rows))
    table = attach_data_column(table, data_dir, "gt_misaligned")
    write_score_parts(out_dir, table, l2.pool.part_rows)
    rejects = read_rejects_parts([out_dir / "_before"])
    write_rejects(out_dir, rejects)
    manifest = base_manifest(
        "scores",
        lesson="l2",
        num_rows=table.num_rows,
        rejected=rejects.num_rows,
        untrained=untrained,
        truncated_captions=int(pc.sum(table.column("truncated")).as_py() or 0),
        columns=table.column_names,
        data={"dir": str(data_dir), "config_hash": data_manifest.get("config_hash")},
        provenance={"scorer": SCORER_VERSION, "model": l2.model, "pretrained": l2.pretrained,
                    "warmup_checkpoint": warmup, "warmup_weights_hash": warm_hash,
                    "config_hash": config_hash(l2), "seed": l2.seed, "pool_size": l2.pool_size,
                    "pool_ids_hash": config_hash(pool["sample_id"])},
        medians={"alpha_pos": medians[0], "neg_alpha_nonpos": medians[1]},
        weights=cfg.to_dict()["scoring"]["lesson2"]["weights"],
        rank_by=l2.rank_by,
        ray_nodes=part_nodes(out_dir / "_before", out_dir / "_after"),
        config=cfg.to_dict()["scoring"]["lesson2"],
        summary=summarize(table),
        seconds=round(time.perf_counter() - t_start, 2),
    )
    write_manifest(out_dir, manifest)
    return manifest


def summarize(table: pa.Table) -> dict:
    """Means, and with synthetic ground truth the misalignment AUROCs."""
    from irgpt.scoring.clip_loss import auroc

    summary = {c: float(pc.mean(table.column(c)).as_py()) for c in ("loss_before", "loss_after", "alpha", "weight")}
    summary["alpha_positive_fraction"] = float(np.mean(table.column("alpha").to_numpy() > 0))
    if "gt_misaligned" in table.column_names:
        bad = np.asarray(table.column("gt_misaligned").fill_null(False).to_pylist(), bool)
        weight = table.column("weight").to_numpy()
        summary.update(
            auroc_loss_after=float(auroc(table.column("loss_after").to_numpy(), bad)),
            auroc_loss_before=float(auroc(table.column("loss_before").to_numpy(), bad)),
            auroc_alpha=float(auroc(table.column("alpha").to_numpy(), bad)),
            mean_weight_misaligned=float(weight[bad].mean()) if bad.any() else None,
            mean_weight_aligned=float(weight[~bad].mean()) if (~bad).any() else None,
            misaligned=int(bad.sum()),
        )
    return summary
