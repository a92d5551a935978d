"""`irgpt data synth`: the synthetic infrared dataset with known ground truth.

Per scene (`irgpt.data.scene.make_scene`): one `caption` row per configured
band (vis / vis_gray are the visible reference, the infrared rows the
training pool), and for every infrared band 1-2 instruction rows of the
benchmark tasks, made by the rule-based builder (`irgpt.data.builder`) from
the scene graph, plus the scene-type and ReID rules defined here. Columns are
SYNTH_SCHEMA exactly; docs/synth.md describes every rule and column.

Determinism: every random choice comes from an RNG or hash keyed by
(seed, scene index, purpose, band), never from the order of work, so any
number of workers gives identical sample ids and image bytes. Shards are
`shard_scenes` consecutive scenes each (the unit of parallel work).
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pyarrow as pa

from irgpt.config.loader import config_hash, to_dict
from irgpt.config.sections import SynthConfig
from irgpt.data import builder
from irgpt.data.builder import LETTERS, NotApplicable, Sample, conversation, format_options
from irgpt.data.io import (
    base_manifest,
    composition,
    read_table,
    shard_name,
    staged_output,
    write_manifest,
    write_rejects,
    write_table,
)
from irgpt.data.render import RENDERED_BANDS, THERMAL, encode, rasterize, render_band
from irgpt.data.scene import (
    CATEGORIES,
    COUNTING_TASKS,
    SCENE_NAMES,
    Scene,
    make_scene,
    reid_grid,
    scene_kind,
)
from irgpt.data.schema import BANDS, GT_BAND_RANK, INFRARED_BANDS, SYNTH_SCHEMA, stable_hash
from irgpt.errors import CommandError
from irgpt.progress import Progress

SOURCE = "synthetic"
GENERAL_TASKS = ("scene", "recognition", "grounding", "relationship", "reid", "security", "location")
COUNTING_EXTRA_TASKS = ("scene", "recognition", "security")
"""Counting scenes (aerial / crowd) always get their counting task, plus maybe one of these."""

# RNG purposes: default_rng([seed, index, purpose, band code]).
_TEXTURE, _RENDER, _CAPTION, _TASKS, _REID, _REID_TEXTURE, _REID_RENDER, _DONOR = range(1, 9)
_BAND_CODE = {b: i for i, b in enumerate(BANDS)}

SCENE_QUESTIONS = ("What is the scene in the picture?", "Which scene does this image show?")
REID_QUESTION = ("The image is a 2x4 grid of person crops numbered 1-8 (1234 on the top row, 5678 on the "
                 "bottom row). Which crop shows the same person as crop 1 in the top-left corner? "
                 "Answer with its number.")


def _rng(seed: int, index: int, purpose: int, band: str | None = None) -> np.random.Generator:
    return np.random.default_rng([seed, index, purpose, _BAND_CODE.get(band, len(BANDS))])


def _unit(seed: int, index: int, what: str, band: str = "") -> float:
    """A uniform [0, 1) value fixed by (seed, scene, what, band)."""
    return stable_hash(f"synth/{seed}/{index}/{what}/{band}") / float(1 << 63)


def sample_id(seed: int, index: int, band: str, task: str) -> str:
    return f"synth-s{seed}-{index:06d}-{band}-{task}"


def scene_split(cfg: SynthConfig, index: int) -> str:
    u = _unit(cfg.seed, index, "split")
    if u < cfg.benchmark_fraction:
        return "benchmark"
    return "val" if u < cfg.benchmark_fraction + cfg.val_fraction else "train"


def scene_caption(cfg: SynthConfig, index: int, band: str, scene: Scene | None = None) -> Sample:
    """Scene `index`'s own caption in `band` (what its caption row holds unless misaligned)."""
    scene = scene or make_scene(cfg.seed, index, cfg.image_size)
    return builder.build_sample(scene.annotated(band), "caption", _rng(cfg.seed, index, _CAPTION, band),
                                CATEGORIES, band)


def donor_index(cfg: SynthConfig, index: int, band: str) -> int | None:
    """The scene whose caption a misaligned row of scene `index` gets: another scene kind
    when one exists among a bounded number of draws, else any other scene; None if N = 1."""
    n = cfg.num_samples
    if n < 2:
        return None
    rng = _rng(cfg.seed, index, _DONOR, band)
    kind = scene_kind(cfg.seed, index)
    fallback = None
    for _ in range(64):
        j = int(rng.integers(n))
        if j == index:
            continue
        if scene_kind(cfg.seed, j) != kind:
            return j
        fallback = j if fallback is None else fallback
    return fallback if fallback is not None else (index + 1) % n


def rule_scene(scene: Scene, rng: np.random.Generator) -> Sample:
    others = [n for k, n in SCENE_NAMES.items() if k != scene.kind]
    options = [scene.name] + [others[i] for i in rng.choice(len(others), 3, replace=False)]
    options = [options[i] for i in rng.permutation(4)]
    letter = LETTERS[options.index(scene.name)]
    question = SCENE_QUESTIONS[int(rng.integers(len(SCENE_QUESTIONS)))] + "\n" + format_options(options)
    return Sample("scene", "scene.type_choice", question, f"({letter}) {scene.name}", (letter, scene.name))


class _SceneRows:
    """Builds every row of one scene; images are rendered once and shared by its rows."""

    def __init__(self, cfg: SynthConfig, index: int):
        self.cfg, self.index = cfg, index
        self.scene = make_scene(cfg.seed, index, cfg.image_size)
        self.layers = rasterize(self.scene.regions, self.scene.objects, cfg.image_size, cfg.image_size,
                                _rng(cfg.seed, index, _TEXTURE))
        self.split = scene_split(cfg, index)
        ref = next((b for b in ("vis", "vis_gray") if b in cfg.bands), None)
        self.vis_id = sample_id(cfg.seed, index, ref, "caption") if ref else None
        self._grid = None

    def black_hot(self, band: str) -> bool:
        return band in THERMAL and _unit(self.cfg.seed, self.index, "black_hot", band) < self.cfg.black_hot_fraction

    def image(self, band: str) -> bytes:
        # vis_gray shares vis's noise draws, so it is exactly the luma of vis before rounding.
        rng = _rng(self.cfg.seed, self.index, _RENDER, "vis" if band == "vis_gray" else band)
        return encode(render_band(self.layers, band, rng, self.scene.illumination, self.black_hot(band)))

    def reid(self, band: str) -> tuple[Sample, bytes]:
        if self._grid is None:
            regions, objects, answer = reid_grid(self.scene, _rng(self.cfg.seed, self.index, _REID))
            S = self.cfg.image_size
            layers = rasterize(regions, objects, S, S, _rng(self.cfg.seed, self.index, _REID_TEXTURE))
            self._grid = (layers, answer)
        layers, answer = self._grid
        rng = _rng(self.cfg.seed, self.index, _REID_RENDER, band)
        data = encode(render_band(layers, band, rng, self.scene.illumination, self.black_hot(band)))
        return Sample("reid", "reid.grid_2x4", REID_QUESTION, str(answer), answer), data

    def row(self, band: str, sample: Sample, image: bytes, misaligned: bool = False) -> dict:
        cfg, sid = self.cfg, sample_id(self.cfg.seed, self.index, band, sample.task)
        paired = None
        # ReID rows show a crop grid, not the scene: no visible pair.
        if band in INFRARED_BANDS and sample.task != "reid" and _unit(cfg.seed, self.index, "paired", f"{band}/{sample.task}") < cfg.paired_vis_fraction:
            paired = self.vis_id
        return {"sample_id": sid, "image": image, "image_path": None, "band": band, "source": SOURCE,
                "task": sample.task, "split": self.split,
                "conversations": conversation(sample.question, sample.answer),
                "width": cfg.image_size, "height": cfg.image_size, "paired_vis_id": paired,
                "rule": sample.rule, "scene_id": self.scene.scene_id, "gt_band_rank": GT_BAND_RANK.get(band),
                "gt_misaligned": misaligned}

    def caption_row(self, band: str, image: bytes) -> dict:
        cfg, own = self.cfg, scene_caption(self.cfg, self.index, band, self.scene)
        if band in INFRARED_BANDS and _unit(cfg.seed, self.index, "misaligned", band) < cfg.misaligned_fraction:
            j = donor_index(cfg, self.index, band)
            if j is not None:
                donor = scene_caption(cfg, j, band)
                # Keep this row's question; the donor's rule name (the rule column must not
                # reveal the swap: only gt_misaligned does).
                return self.row(band, Sample("caption", donor.rule, own.question, donor.answer), image, True)
        return self.row(band, own, image)

    def task_rows(self, band: str, image: bytes) -> list[dict]:
        rng = _rng(self.cfg.seed, self.index, _TASKS, band)
        want = 1 + int(rng.random() < 0.5)
        counting = COUNTING_TASKS.get(self.scene.kind)
        if counting:
            extra = [COUNTING_EXTRA_TASKS[i] for i in rng.permutation(len(COUNTING_EXTRA_TASKS))]
            order = [counting, *extra]
        else:
            order = [GENERAL_TASKS[i] for i in rng.permutation(len(GENERAL_TASKS))]
        ann = self.scene.annotated(band)
        rows = []
        for task in order:
            if len(rows) == want:
                break
            if task == "scene":
                rows.append(self.row(band, rule_scene(self.scene, rng), image))
            elif task == "reid":
                if any(o.identity is not None for o in self.scene.objects):
                    sample, grid = self.reid(band)
                    rows.append(self.row(band, sample, grid))
            else:
                try:
                    rows.append(self.row(band, builder.build_sample(ann, task, rng, CATEGORIES, band), image))
                except NotApplicable:
                    continue
        return rows

    def rows(self) -> list[dict]:
        out, tasks = [], []
        for band in self.cfg.bands:
            image = self.image(band)
            out.append(self.caption_row(band, image))
            if band in INFRARED_BANDS:
                tasks += self.task_rows(band, image)
        return out + tasks


def scene_rows(cfg: SynthConfig, index: int) -> list[dict]:
    """Every row of scene `index` (caption rows first, in `cfg.bands` order)."""
    return _SceneRows(cfg, index).rows()


def num_shards(cfg: SynthConfig) -> int:
    return math.ceil(cfg.num_samples / cfg.shard_scenes)


def make_shard(cfg: SynthConfig, shard: int) -> pa.Table:
    lo, hi = shard * cfg.shard_scenes, min(cfg.num_samples, (shard + 1) * cfg.shard_scenes)
    rows = [r for i in range(lo, hi) for r in scene_rows(cfg, i)]
    return pa.Table.from_pylist(rows, schema=SYNTH_SCHEMA)


def _shard_job(cfg: SynthConfig, shard: int, out_dir: str) -> dict:
    t0 = time.perf_counter()
    table = make_shard(cfg, shard)
    write_table(Path(out_dir) / shard_name(shard), table)
    scenes = min(cfg.num_samples, (shard + 1) * cfg.shard_scenes) - shard * cfg.shard_scenes
    return {"shard": shard, "rows": table.num_rows, "scenes": scenes, "seconds": time.perf_counter() - t0}


def check_config(cfg: SynthConfig) -> None:
    bad = [b for b in cfg.bands if b not in RENDERED_BANDS]
    if bad or not cfg.bands or len(set(cfg.bands)) != len(cfg.bands):
        raise CommandError(f"data.synth.bands: {cfg.bands!r}: need distinct bands among {list(RENDERED_BANDS)}")
    if cfg.shard_scenes < 1:
        raise CommandError(f"data.synth.shard_scenes must be >= 1, got {cfg.shard_scenes}")
    if cfg.num_workers < 1:
        raise CommandError(f"data.synth.num_workers must be >= 1, got {cfg.num_workers}")
    if cfg.benchmark_fraction + cfg.val_fraction > 1:
        raise CommandError("data.synth: benchmark_fraction + val_fraction must be <= 1")


def synthesize(cfg: SynthConfig, out_dir: str | Path, progress: bool = True, overwrite: bool = False) -> dict:
    """Generate the dataset into `out_dir` (shards, manifest, empty rejects); returns the manifest.

    The dataset is written into a staging directory beside `out_dir` and swapped
    in whole at the end (`io.staged_output`): a kill leaves the old dataset or the
    new one, never a mix. An existing dataset is replaced only with `overwrite`.
    """
    check_config(cfg)
    out = Path(out_dir)
    with staged_output(out, overwrite=overwrite) as stage:
        manifest = _synthesize_into(cfg, stage, progress)
    return manifest


def _synthesize_into(cfg: SynthConfig, out: Path, progress: bool) -> dict:
    n, t0, done = num_shards(cfg), time.perf_counter(), 0

    bar = Progress(cfg.num_samples, "synth", "scene", enabled=progress)

    def report(stats: dict) -> None:
        nonlocal done
        done += stats["scenes"]
        rate = done / max(time.perf_counter() - t0, 1e-9)
        bar.update(stats["scenes"], f"synth: {shard_name(stats['shard'])} ({stats['shard'] + 1}/{n}): "
                   f"{stats['rows']} rows, {stats['scenes']} scenes in {stats['seconds']:.2f}s; "
                   f"{done}/{cfg.num_samples} scenes, {rate:.1f} scenes/s")

    workers = min(cfg.num_workers, n)
    with bar:
        if workers <= 1:
            for k in range(n):
                report(_shard_job(cfg, k, str(out)))
        else:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for fut in as_completed([pool.submit(_shard_job, cfg, k, str(out)) for k in range(n)]):
                    report(fut.result())
    written = {shard_name(k) for k in range(n)}
    elapsed = time.perf_counter() - t0
    table = read_table(out, columns=["band", "task", "source", "split", "gt_misaligned"])
    band_task = Counter(zip(table.column("band").to_pylist(), table.column("task").to_pylist()))
    manifest = base_manifest(
        "dataset", source=SOURCE, schema="synth", num_rows=table.num_rows, num_scenes=cfg.num_samples,
        seed=cfg.seed, image_size=cfg.image_size, bands=list(cfg.bands), config=to_dict(cfg),
        config_hash=config_hash(cfg), num_misaligned=sum(bool(v) for v in table.column("gt_misaligned").to_pylist()),
        shards=sorted(written), composition=composition(table),
        band_task={f"{b}/{t}": c for (b, t), c in sorted(band_task.items())},
        elapsed_s=round(elapsed, 3), scenes_per_s=round(cfg.num_samples / max(elapsed, 1e-9), 1))
    write_rejects(out, [])
    write_manifest(out, manifest)
    return manifest
