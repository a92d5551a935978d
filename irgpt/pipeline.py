"""The end-to-end pipeline: every stage in order under one run directory.

    synth -> fe_train -> score_l1 -> clip_warmup -> score_l2 -> tier -> train_stage1 ->
    train_stage2 -> eval -> report

Each stage reads what earlier stages wrote and writes its own outputs under
`RUN_DIR = run.root/run.name`. `RUN_DIR/run.json` lists every stage with its
status, outputs, time and a *key*: a hash of the config sections the stage
depends on and of its input stages' keys. A stage whose outputs exist and
whose key matches is skipped with a message, so re-running the pipeline
after a failure resumes at the failed stage (and a stage that failed half way
resumes its own committed parts / checkpoints); a changed key recomputes that
stage and everything after it; `--force` recomputes all.

`run.root` and `data.dir` may be object-storage URIs (`s3://bucket/prefix`):
the pipeline then works in a node-local mirror of each (`storage.work_dir`),
pulls a stage's inputs from the store before it runs, and publishes its outputs
when it is done, `run.json` last: the store's `run.json` is the marker that says
which stages are complete, so a kill during an upload leaves that stage
"running" and the next run (on any machine) redoes it and overwrites what it
finds. A rerun reads `run.json` from the store, so a new pod resumes where the
last one stopped.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from irgpt import __version__, storage
from irgpt.config import Config, config_hash
from irgpt.data.io import atomic_write_json
from irgpt.errors import CommandError
from irgpt.ray_utils import ensure_ray, log0

RUN_FILE = "run.json"


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: tuple[str, ...]
    """Stages whose outputs this one reads."""
    sections: tuple[str, ...]
    """Dotted config sections that change this stage's result."""
    outputs: tuple[str, ...]
    """Paths under RUN_DIR (data: the data directory)."""
    scratch: tuple[str, ...] = ()
    """Glob patterns under RUN_DIR also removed when the outputs are stale (Ray Train's
    checkpoint folders, named by run and config: `trainer.ray_run_name`)."""
    records: tuple[str, ...] = ()
    """Files under RUN_DIR the stage also writes and later stages read, kept in object
    storage beside its outputs (not checked for existence: outputs say if it ran)."""
    atomic: bool = False
    """The stage swaps its outputs in whole (`io.staged_output` / `io.swap_in`): stale
    outputs stay in place until the new ones replace them, so a kill loses nothing."""


TRAIN_RECORDS = ("train/summary.json", "train/train_args.json")
STAGES = [
    Stage("synth", (), ("data.synth",), ("data",), atomic=True),
    Stage("fe_train", ("synth",), ("scoring.lesson1.extractor", "scoring.lesson1.fe_train"), ("fe",)),
    Stage("score_l1", ("synth", "fe_train"), ("scoring.lesson1",), ("scores_l1",)),
    Stage("clip_warmup", ("synth",), ("scoring.lesson2",), ("clip_warmup",)),
    Stage("score_l2", ("synth", "clip_warmup"), ("scoring.lesson2",), ("scores_l2",)),
    Stage("tier", ("synth", "score_l1", "score_l2"), ("curriculum",), ("tiers",), atomic=True),
    Stage("train_stage1", ("synth", "tier"), ("train", "deepspeed", "curriculum"), ("train/stage1",), ("train/ray/*-stage1-*",),
          TRAIN_RECORDS),
    Stage("train_stage2", ("synth", "train_stage1"), ("train", "deepspeed"), ("train/stage2",), ("train/ray/*-stage2-*",),
          TRAIN_RECORDS),
    Stage("eval", ("synth", "train_stage1", "train_stage2"), ("eval",), ("eval",)),
    Stage("report", (), (), ("report",)),
]
BY_NAME = {s.name: s for s in STAGES}


def _section(cfg_dict: dict, dotted: str):
    node = cfg_dict
    for part in dotted.split("."):
        node = node[part]
    return node


def versions() -> dict:
    import importlib.metadata as md

    out = {"irgpt": __version__, "python": platform.python_version()}
    for pkg in ("ray", "torch", "transformers", "peft", "deepspeed", "open_clip_torch", "pyarrow", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def wanted_stages(cfg: Config) -> list[str]:
    """`run.stages`, checked, in pipeline order (`clip_warmup` added before `score_l2`
    for configs written before it was a stage)."""
    wanted = list(cfg.run.stages)
    if "score_l2" in wanted and "clip_warmup" not in wanted:
        wanted.insert(wanted.index("score_l2"), "clip_warmup")
    unknown = [s for s in wanted if s not in BY_NAME]
    if unknown:
        raise CommandError(f"run.stages: unknown stage(s) {unknown}; stages are {list(BY_NAME)}")
    return [s.name for s in STAGES if s.name in wanted]


class Pipeline:
    def __init__(self, cfg: Config, force: bool = False):
        self.cfg = cfg
        self.force = force
        # Object-storage locations (None: a local or shared path, used in place).
        self.run_loc = storage.join(cfg.run.root, cfg.run.name) if storage.is_uri(cfg.run.root) else None
        self.data_loc = (cfg.data.dir if storage.is_uri(cfg.data.dir)
                         else storage.join(self.run_loc, "data") if self.run_loc and not cfg.data.dir else None)
        # workers do not share the driver's cwd: absolute paths
        self.run_dir = storage.work_dir(self.run_loc) if self.run_loc else cfg.run_dir.resolve()
        self.data_dir = (storage.work_dir(self.data_loc) if self.data_loc and cfg.data.dir
                         else self.run_dir / "data" if self.data_loc else cfg.data_dir.resolve())
        self.cfg_dict = cfg.to_dict()
        self.keys: dict[str, str] = {}
        if self.run_loc:
            remote = storage.join(self.run_loc, RUN_FILE)
            previous = storage.read_json(remote) if storage.is_file(remote) else {}
        else:
            path = self.run_dir / RUN_FILE
            previous = json.loads(path.read_text()) if path.is_file() else {}
        self.previous = {s["name"]: s for s in previous.get("stages", [])}
        self.record = {
            "name": cfg.run.name, "config": self.cfg_dict, "config_hash": cfg.hash(),
            "code_version": __version__, "seed": cfg.run.seed, "versions": versions(),
            "run_dir": self.run_loc or str(self.run_dir), "stages": [],
        }
        if self.run_loc:
            self.record["work_dir"] = str(self.run_dir)

    # -------------------------------------------------------------- paths --
    def path(self, output: str) -> Path:
        return self.data_dir if output == "data" else self.run_dir / output

    def location(self, output: str) -> str | None:
        """Where `output` is kept in object storage (None: it lives at `path(output)`)."""
        if output == "data":
            return self.data_loc
        return storage.join(self.run_loc, output) if self.run_loc else None

    def exists(self, output: str) -> bool:
        loc = self.location(output)
        return storage.exists(loc) if loc else self.path(output).exists()

    def _pull(self, outputs) -> None:
        """Bring the store's copy of finished stages' outputs into the local mirror."""
        for output in outputs:
            loc = self.location(output)
            if loc and storage.is_file(loc):
                self.path(output).parent.mkdir(parents=True, exist_ok=True)
                self.path(output).write_bytes(storage.read_bytes(loc))
            elif loc and storage.exists(loc):
                n = storage.pull(loc, self.path(output), skip=("ray",))  # Ray reads its checkpoints itself
                if n:
                    log0(f"[pipeline] fetched {n} file(s) of {output} from {loc}")

    def _publish(self, outputs) -> None:
        """Upload a finished stage's outputs (a dataset's manifest last); run.json follows."""
        for output in outputs:
            loc, local = self.location(output), self.path(output)
            if loc and local.exists():
                n = storage.upload(local, loc)
                log0(f"[pipeline] {output}: {n} file(s) written to {loc}")

    def key(self, stage: Stage) -> str:
        parts = {s: _section(self.cfg_dict, s) for s in stage.sections}
        parts["inputs"] = {i: self.keys.get(i) for i in stage.inputs}
        if stage.name == "synth":
            parts["data_dir"] = self.data_loc or str(self.data_dir)
        return config_hash(parts)

    # ---------------------------------------------------------------- run --
    def run(self) -> dict:
        wanted = wanted_stages(self.cfg)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ensure_ray(self.cfg.ray)
        t_all = time.perf_counter()
        for stage in STAGES:
            if stage.name not in wanted:
                continue
            self._run_stage(stage)
        self.record["seconds"] = round(time.perf_counter() - t_all, 2)
        self._save()
        log0(f"[pipeline] done in {self.record['seconds']:.0f}s: {storage.join(self.run_loc or self.run_dir, RUN_FILE)}")
        return self.record

    def _run_stage(self, stage: Stage) -> None:
        key = self.key(stage)
        self.keys[stage.name] = key
        prev = self.previous.get(stage.name, {})
        outputs = [self.path(o) for o in stage.outputs]
        entry = {"name": stage.name, "key": key, "outputs": [str(p) for p in outputs], "started": time.time()}
        up_to_date = prev.get("status") in ("done", "skipped") and prev.get("key") == key and all(map(self.exists, stage.outputs))
        if up_to_date and not self.force and stage.name != "report":
            where = [self.location(o) or str(self.path(o)) for o in stage.outputs]
            log0(f"[pipeline] {stage.name}: outputs up to date, skipped ({', '.join(where)})")
            self.record["stages"].append({**prev, "status": "skipped", "skipped_seconds": prev.get("seconds")})
            self._save()
            return
        stale = self.force or (prev.get("key") not in (None, key))
        if stale:  # outputs of another config (or --force): recompute from scratch
            for p in ([] if stage.atomic else outputs) + [q for pattern in stage.scratch for q in self.run_dir.glob(pattern)]:
                if p.exists():
                    shutil.rmtree(p)
            for output in [] if stage.atomic else stage.outputs:  # and the store's copy
                if self.location(output):
                    storage.delete(self.location(output))
        resume = prev.get("key") == key and prev.get("status") in ("failed", "running")
        needs = [o for i in stage.inputs for o in BY_NAME[i].outputs + BY_NAME[i].records]
        if stage.name == "report":  # reads every finished stage's outputs (not the dataset)
            needs = [o for s in STAGES if s.name not in ("report", "synth") for o in s.outputs + s.records]
        self._pull(needs)
        log0(f"[pipeline] {stage.name}: running" + (" (resuming)" if resume else ""))
        entry["status"] = "running"
        self.record["stages"].append(entry)
        self._save()
        t0 = time.perf_counter()
        try:
            entry["result"] = getattr(self, f"_do_{stage.name}")(resume)
            self._publish(stage.outputs + stage.records)
            entry["status"] = "done"
        except BaseException as exc:
            entry["status"] = "failed"
            entry["message"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = traceback.format_exc(limit=8)
            raise
        finally:
            entry["seconds"] = round(time.perf_counter() - t0, 2)
            self._save()
        log0(f"[pipeline] {stage.name}: done in {entry['seconds']:.1f}s")

    def _save(self) -> None:
        atomic_write_json(self.run_dir / RUN_FILE, self.record)
        if self.run_loc:
            storage.write_json(storage.join(self.run_loc, RUN_FILE), self.record)

    # ------------------------------------------------------------- stages --
    def _do_synth(self, resume: bool) -> dict:
        from irgpt.data.synth import synthesize

        manifest = synthesize(self.cfg.data.synth, self.data_dir, overwrite=True)  # swapped in whole
        return {"num_rows": manifest.get("num_rows"), "composition": manifest.get("composition")}

    def _do_fe_train(self, resume: bool) -> dict:
        from irgpt.train.mae_job import fe_train

        report = fe_train(self.cfg, self.data_dir, self.path("fe"))
        return {k: report.get(k) for k in ("epochs", "seconds", "samples_per_s", "losses")}

    def _do_score_l1(self, resume: bool) -> dict:
        from irgpt.scoring.ir_vis import score_ir_vis

        m = score_ir_vis(self.cfg, self.data_dir, self.path("scores_l1"), extractor=str(self.path("fe")))
        return {"rows": m["num_rows"], "rejected": m["rejected"], **m["summary"], "estimator": m["stats"]["estimator"]}

    def _do_clip_warmup(self, resume: bool) -> dict:
        from irgpt.train.clip_job import ensure_clip_warmup

        ensure_clip_warmup(self.cfg, self.data_dir, self.path("clip_warmup"))
        report = json.loads((self.path("clip_warmup") / "clip_warmup.json").read_text())
        return {k: report.get(k) for k in ("epochs", "steps", "losses", "seconds", "samples_per_s")}

    def _do_score_l2(self, resume: bool) -> dict:
        from irgpt.scoring.ir_text import score_ir_text

        m = score_ir_text(self.cfg, self.data_dir, self.path("scores_l2"),
                          warmup=self.path("clip_warmup") / "clip_warmup.pt")
        return {"rows": m["num_rows"], "rejected": m["rejected"], **m["summary"]}

    def _do_tier(self, resume: bool) -> dict:
        from irgpt.curriculum.tiers import build_tiers

        m = build_tiers(self.data_dir, [self.path("scores_l1"), self.path("scores_l2")], self.path("tiers"),
                        self.cfg.curriculum, overwrite=True, ray_cfg=self.cfg.ray)
        return {"tier_sizes": m["tier_sizes"], "num_rows": m["num_rows"]}

    def _do_train_stage1(self, resume: bool) -> dict:
        return self._train("1", resume)

    def _do_train_stage2(self, resume: bool) -> dict:
        return self._train("2", resume)

    def _train(self, stage: str, resume: bool) -> dict:
        from irgpt.train.trainer import train

        summary = train(self.cfg, stage, self.data_dir, self.path("tiers"), self.path("train"), resume=resume)
        s = summary[f"stage{stage}"]
        return {k: s[k] for k in ("initial_val_loss", "final_val_loss", "steps", "samples_per_s", "model")}

    def _final_model(self) -> Path:
        from irgpt.train.trainer import stage_model

        summary = json.loads((self.path("train") / "summary.json").read_text())
        for stage in (2, 1):
            model = stage_model(self.path("train"), summary, stage)
            if model is not None:
                return model
        raise CommandError(f"no trained model in {self.path('train')}")

    def _do_eval(self, resume: bool) -> dict:
        from irgpt.eval.run import run_benchmark

        report = run_benchmark(self.cfg, self._final_model(), self.cfg.eval.bench_dir or self.data_dir,
                               self.path("eval"), limit=self.cfg.eval.limit)
        return {"psum": report.get("psum"), "nsum": report.get("nsum")}

    def _do_report(self, resume: bool) -> dict:
        from irgpt.report import write_report

        self._save()
        return {"html": str(write_report(self.run_dir))}


def run_pipeline(cfg: Config, force: bool = False) -> dict:
    return Pipeline(cfg, force=force).run()
