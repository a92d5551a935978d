"""Report sections 6-9: training, benchmark, tune, provenance (see sections.py)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd

from irgpt.report import benchmark as B
from irgpt.report import html as H
from irgpt.report import plots
from irgpt.report.inputs import (
    Corrupt,
    Missing,
    number,
    read_csv,
    read_json,
    read_jsonl,
    read_manifest,
    read_text,
)
from irgpt.report.report import Context

STAGES = {1: "Stage 1 (pre-training, curriculum)", 2: "Stage 2 (instruction fine-tuning)"}


# 6. Training -----------------------------------------------------------------

def training(ctx: Context) -> str:
    tdir = ctx.path("train")
    if not tdir.is_dir():
        raise Missing(tdir / "summary.json")
    out = "<p>Stage 1 trains the vision encoder + projector on IR captions with the curriculum (tiers in " \
          "order, Eq. 6 weights); stage 2 fine-tunes projector + LLM LoRA on instructions.</p>"
    curves, tier_rows = {}, []
    for k, label in STAGES.items():
        got = ctx.guard_value(f"{label} metrics", _metrics, ctx, tdir / f"stage{k}" / "metrics.jsonl")
        if isinstance(got, str):
            out += got
            continue
        curves[label] = got
        tier_rows += _tier_segments(k, got[0])
    if curves:
        out += ctx.figure("6_training_loss", "training loss per step", plots.training_loss, curves)
    if tier_rows:
        out += "<h3>Tiers seen during training</h3>" + H.table(
            ["stage", "tier", "first step", "last step", "logged steps", "mean loss", "last loss"], tier_rows)
    out += "<h3>Summary</h3>" + ctx.guard("train/summary.json", _summary_table, tdir / "summary.json")
    return out


def _metrics(ctx: Context, path) -> tuple[pd.DataFrame, pd.DataFrame]:
    records, bad = read_jsonl(path)
    if bad:
        ctx.warn(f"{ctx.show(path)}: {bad} unreadable line(s) skipped")
    df = pd.DataFrame(records)
    if "global_step" not in df:
        raise Corrupt(path, "no record has a global_step")
    df["global_step"] = pd.to_numeric(df["global_step"], errors="coerce")
    steps = df[df["global_step"].notna() & pd.to_numeric(df.get("loss"), errors="coerce").notna()] \
        if "loss" in df else df.iloc[:0]
    val = df[df["global_step"].notna() & pd.to_numeric(df["val_loss"], errors="coerce").notna()] \
        if "val_loss" in df else df.iloc[:0]
    if steps.empty and val.empty:
        raise Corrupt(path, "no record with a loss or val_loss")
    steps = steps.assign(loss=pd.to_numeric(steps["loss"])).sort_values("global_step")
    val = val.assign(val_loss=pd.to_numeric(val["val_loss"])).sort_values("global_step")
    return steps, val


def _tier_segments(stage: int, steps: pd.DataFrame) -> list[list]:
    if "tier" not in steps or steps.empty or steps["tier"].isna().all():
        return []
    tier = steps["tier"].ffill().bfill().to_numpy()
    cut = np.flatnonzero(tier[1:] != tier[:-1]) + 1
    rows = []
    for s, e in zip(np.concatenate([[0], cut]), np.concatenate([cut, [len(tier)]])):
        seg = steps.iloc[s:e]
        rows.append([stage, plots.fmt_tier(tier[s]), int(seg["global_step"].iloc[0]),
                     int(seg["global_step"].iloc[-1]), len(seg), float(seg["loss"].mean()),
                     float(seg["loss"].iloc[-1])])
    return rows


SUMMARY_KEYS = ("initial_val_loss", "final_val_loss", "steps", "samples_per_s", "model", "checkpoint")


def _summary_table(path) -> str:
    summary = read_json(path)
    stages = {k: v for k, v in summary.items() if isinstance(v, dict)}
    if not stages:
        raise Corrupt(path, "no per-stage objects (expected keys stage1, stage2)")
    extra = []
    for v in stages.values():
        extra += [k for k, x in v.items() if k not in SUMMARY_KEYS and k not in extra
                  and not isinstance(x, (dict, list))]
    rows = []
    for name, v in stages.items():
        a, b = number(v.get("initial_val_loss")), number(v.get("final_val_loss"))
        change = f"{100 * (b - a) / a:+.1f}%" if a and b is not None else "–"
        rows.append([name, v.get("initial_val_loss"), v.get("final_val_loss"), change,
                     *[v.get(k) for k in SUMMARY_KEYS[2:]], *[v.get(k) for k in extra]])
    headers = ["stage", "initial val loss", "final val loss", "change", "steps", "samples/s", "model",
               "checkpoint", *extra]
    return H.scroll(H.table(headers, rows, num_cols=(3,)))


# 7. Benchmark ----------------------------------------------------------------

def benchmark(ctx: Context) -> str:
    from irgpt.data import contracts
    from irgpt.data.io import atomic_write_bytes
    from irgpt.errors import CommandError

    path = ctx.path("eval", "metrics.json")
    metrics = read_json(path)
    try:
        contracts.parse(contracts.EvalManifest, metrics, str(path))
    except CommandError as exc:
        raise Corrupt(path, str(exc)) from None
    md_path = ctx.out_dir / "benchmark.md"
    atomic_write_bytes(md_path, B.markdown(metrics).encode("utf-8"))
    sums = {i + 1 for i, c in enumerate(B.COLUMNS) if c in ("psum", "nsum")}
    body = [[label, *[B.cell(v) for v in cells]] for label, cells in B.rows(metrics)]
    out = H.scroll(H.table(["", *B.HEADERS], body, num_cols=range(1, len(B.COLUMNS) + 1),
                           row_classes=["", "", "", "ref"], col_classes={i: "sum" for i in sums}))
    out += H.note(B.PAPER_NOTE)
    for n in B.coverage_notes(metrics):
        out += H.note(n, "warn")
    out += H.note("Scene … Sec.: accuracy % (higher is better), psum = their sum. Loc.: mean point error; "
                  "A.C., P.C.: mean absolute count error (lower is better), nsum = their sum. An unparseable "
                  "answer counts as wrong. "
                  f"Also written as {ctx.show(md_path)}.")
    tasks = metrics.get("tasks") if isinstance(metrics.get("tasks"), dict) else {}
    keys = []
    for t in tasks.values():
        if isinstance(t, dict):
            keys += [k for k, v in t.items() if k not in keys and not isinstance(v, (dict, list))]
    if tasks:
        order = [t for t in B.COLUMNS if t in tasks] + sorted(t for t in tasks if t not in B.COLUMNS)
        rows = [[t, *[(tasks[t] or {}).get(k) if isinstance(tasks[t], dict) else None for k in keys]]
                for t in order]
        out += H.details("Per-task details", H.scroll(H.table(["task", *keys], rows)))
    return out


# 8. Tune ---------------------------------------------------------------------

def tune(ctx: Context) -> str:
    path = ctx.path("tune", "trials.csv")
    df = read_csv(path)
    if "objective" not in df.columns:
        raise Corrupt(path, f"no 'objective' column (columns: {', '.join(map(str, df.columns))})")
    mode = (((ctx.run or {}).get("config") or {}).get("tune") or {}).get("objective", "benchmark_robust")
    lower = mode == "val_loss"
    df["objective"] = pd.to_numeric(df["objective"], errors="coerce")
    df = df.sort_values("objective", ascending=lower, na_position="last", kind="stable").reset_index(drop=True)
    best = 0 if len(df) and pd.notna(df["objective"].iloc[0]) else None
    out = H.note(f"{len(df)} trial(s); objective = {mode} ({'lower' if lower else 'higher'} is better; "
                 "benchmark = psum − nsum, benchmark_robust = psum − nsum_median on the validation split). "
                 "Sorted best first.")
    shown = df.head(50)
    rows = [[None if isinstance(v, float) and np.isnan(v) else v for v in r] for r in shown.itertuples(index=False)]
    out += H.scroll(H.table([str(c) for c in df.columns], rows,
                            row_classes=["best" if i == best else "" for i in range(len(rows))]))
    if len(df) > len(shown):
        out += H.note(f"First {len(shown)} of {len(df)} trials shown.")
    xcols = [(c, label) for suffix, label in (("curriculum.m", "M (number of tiers)"),
                                              ("curriculum.lam", "λ (weight of Lesson 1 rank)"))
             for c in [_column(df, suffix)] if c is not None]
    if xcols and best is not None:
        out += ctx.figure("8_tune_objective", "objective vs M and lambda", plots.tune_scatter, df, "objective",
                          xcols, best, f"objective: {'validation loss' if lower else 'psum − nsum (validation)'}")
    elif not xcols:
        out += H.note("No curriculum.m / curriculum.lam column in trials.csv: scatter skipped.", "notrun")
    if best is not None:
        out += "<h3>Best trial</h3>" + H.kv_table(
            [(c, v) for c, v in df.iloc[best].items() if not (isinstance(v, float) and np.isnan(v))])
    out += "<h3>best.yaml</h3>" + ctx.guard("best.yaml", lambda: H.pre(read_text(ctx.path("tune", "best.yaml"))))
    return out


def _column(df: pd.DataFrame, suffix: str) -> str | None:
    for c in df.columns:
        if str(c) == suffix or str(c).endswith("/" + suffix) or str(c).endswith("." + suffix):
            return c
    return None


# 9. Provenance ---------------------------------------------------------------

def provenance(ctx: Context) -> str:
    out = ctx.guard("run.json", _run_provenance, ctx)
    out += "<h3>Stage outputs (manifests)</h3>"
    for rel in ("data", "scores_l1", "scores_l2", "tiers"):
        out += ctx.guard(rel, _manifest_block, ctx, rel)
    return out


def _run_provenance(ctx: Context) -> str:
    run = ctx.run
    if run is None:
        if ctx.path("run.json").is_file():
            return H.note("run.json could not be read (see the note under Run overview).", "error")
        raise Missing(ctx.path("run.json"))
    out = H.kv_table([("run name", run.get("name")), ("config hash", run.get("config_hash")),
                      ("code version", run.get("code_version")), ("seed", run.get("seed"))])
    cfg = run.get("config")
    if isinstance(cfg, dict):
        seeds = list(_find(cfg, "seed"))
        if seeds:
            out += "<h3>Seeds in the config</h3>" + H.table(["key", "seed"], seeds)
        out += H.details("Full config (YAML)", H.pre(_yaml(cfg)))
    else:
        out += H.note("run.json has no config.", "notrun")
    versions = run.get("versions")
    if isinstance(versions, dict) and versions:
        out += "<h3>Versions</h3>" + H.table(["package", "version"], sorted(versions.items()))
    return out


def _manifest_block(ctx: Context, rel: str) -> str:
    man = read_manifest(ctx.path(rel))
    pairs = [(k, man.get(k)) for k in ("kind", "lesson", "code_version", "schema_version", "config_hash", "seed",
                                        "command", "python", "seconds") if k in man]
    if number(man.get("created_unix")) is not None:
        created = dt.datetime.fromtimestamp(number(man["created_unix"]), dt.UTC)
        pairs.append(("created", created.strftime("%Y-%m-%d %H:%M:%S UTC")))
    if isinstance(man.get("data"), dict):
        pairs += [(f"input {k}", v) for k, v in man["data"].items() if not isinstance(v, (dict, list))]
    if isinstance(man.get("provenance"), dict):
        pairs += [(f"provenance {k}", v) for k, v in man["provenance"].items()]
    return H.details(f"RUN_DIR/{rel}/manifest.json", H.kv_table(pairs), open_=True)


def _find(obj, key: str, prefix: str = ""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if k == key and not isinstance(v, (dict, list)):
                yield path, v
            else:
                yield from _find(v, key, path)


def _yaml(obj) -> str:
    try:
        import yaml

        return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True)
    except Exception:  # noqa: BLE001 - YAML is a nicety; JSON always works
        return json.dumps(obj, indent=2, default=str)
