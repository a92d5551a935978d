"""Report sections 1-5: run overview, data, Lesson 1, Lesson 2, curriculum tiers.

Each `section(ctx) -> html` reads only its own stage's outputs. Raising
`Missing` for the section's main input makes the whole section "not run";
smaller pieces go through `ctx.guard` / `ctx.figure` so one bad file costs
one table or plot, not the section.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from irgpt.report import html as H
from irgpt.report import plots
from irgpt.report.inputs import (
    Corrupt,
    Missing,
    number,
    read_dataset,
    read_json,
    read_manifest,
    read_tier_rows,
)
from irgpt.report.report import Context, seconds


def _scalars(d: dict) -> list[tuple[str, object]]:
    return [(k, v) for k, v in d.items() if not isinstance(v, (dict, list))]


# 1. Run overview -------------------------------------------------------------

def header(ctx: Context) -> str:
    run = ctx.run or {}
    stages = [s for s in run.get("stages") or [] if isinstance(s, dict)]
    total = sum(number(s.get("seconds")) or 0.0 for s in stages)
    starts = [number(s.get("started")) for s in stages if number(s.get("started")) is not None]
    started = dt.datetime.fromtimestamp(min(starts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if starts else None
    info = [("run name", run.get("name")), ("RUN_DIR", str(ctx.run_dir)), ("config hash", run.get("config_hash")),
            ("code version", run.get("code_version")), ("seed", run.get("seed")), ("started", started),
            ("total stage time", seconds(total) if stages else None)]
    out = _headline(ctx) + H.kv_table([(k, v) for k, v in info if v is not None or k == "RUN_DIR"])
    if not stages:
        return out + (H.note("run.json lists no stages.", "notrun") if ctx.run is not None else "")
    rows = []
    for s in stages:
        secs = number(s.get("seconds"))
        outs = s.get("outputs") or []
        outs = outs if isinstance(outs, list) else [outs]
        rows.append([H.esc(s.get("name")), H.badge(s.get("status")),
                     H.esc(seconds(secs)) if secs is not None else "–",
                     H.esc(f"{100 * secs / total:.0f}%") if secs is not None and total else "–",
                     "<br>".join(f"<code>{H.esc(ctx.show(o))}</code>" for o in outs),
                     H.esc(s.get("message") or "")])
    table = H.table(["stage", "status", "time", "share", "outputs", "message"], rows, raw=True, num_cols=(2, 3))
    failed = [s.get("name") for s in stages if s.get("status") == "failed"]
    warn = H.note(f"Failed stage(s): {', '.join(map(str, failed))}.", "error") if failed else ""
    return out + "<h3>Stages</h3>" + warn + table


def _headline(ctx: Context) -> str:
    """The few numbers a reader looks for first (each only when its file reads)."""
    items = []

    def get(rel, *keys):
        try:
            obj = read_json(ctx.path(rel))
        except Exception:  # noqa: BLE001 - the owning section reports the problem
            return None
        for k in keys:
            obj = obj.get(k) if isinstance(obj, dict) else None
        return number(obj)

    for label, rel, keys in [
        ("psum (higher is better)", "eval/metrics.json", ("psum",)),
        ("nsum (lower is better)", "eval/metrics.json", ("nsum",)),
        ("stage 1 final val loss", "train/summary.json", ("stage1", "final_val_loss")),
        ("stage 2 final val loss", "train/summary.json", ("stage2", "final_val_loss")),
        ("L1 Spearman vs band order", "scores_l1/manifest.json", ("summary", "spearman_gt_band_rank")),
        ("L2 AUROC (loss after)", "scores_l2/manifest.json", ("summary", "auroc_loss_after")),
    ]:
        v = get(rel, *keys)
        if v is not None:
            items.append(f"<div>{H.esc(label)}<b>{H.esc(H.fmt(v))}</b></div>")
    return f'<div class="headline">{"".join(items)}</div>' if items else ""


# 2. Data ---------------------------------------------------------------------

def data(ctx: Context) -> str:
    d = ctx.path("data")
    man = read_manifest(d)
    comp = man.get("composition") if isinstance(man.get("composition"), dict) else None
    out = H.kv_table([(k, man.get(k)) for k in ("kind", "num_rows", "rejected", "seed", "config_hash")
                      if k in man])
    if comp is None:
        out += H.note("manifest.json has no composition; counted from the Parquet shards.")
        df = read_dataset(d, ["band", "task", "split", "source"])
        comp = {c: df[c].astype(str).value_counts().to_dict() for c in df.columns}
    tables = []
    for fieldname in ("band", "task", "split", "source"):
        counts = comp.get(fieldname)
        if not isinstance(counts, dict):
            tables.append(f"<div><h3>{fieldname}</h3>{H.note(f'no {fieldname} counts', 'notrun')}</div>")
            continue
        keys = plots.ordered(counts) if fieldname == "band" else sorted(counts, key=lambda k: -(number(counts[k]) or 0))
        tables.append(H.counts_table(fieldname, {k: counts[k] for k in keys}))
    return out + f'<div class="tables">{"".join(tables)}</div>'


# 3. Lesson 1 -----------------------------------------------------------------

def lesson1(ctx: Context) -> str:
    d = ctx.path("scores_l1")
    man = read_manifest(d)
    stats = man.get("stats") if isinstance(man.get("stats"), dict) else {}
    summary = man.get("summary") if isinstance(man.get("summary"), dict) else {}
    out = "<p>Each infrared sample's distance to the visible domain in MAE feature space (docs/method.md, " \
          "Eq. 1-3; d_i = MMD − p_i). Low d = close to visible = easy; the curriculum ranks by d ascending.</p>"
    df = ctx.guard_value("Lesson 1 scores", _l1_rows, d)
    if isinstance(df, str):  # the note saying why there are no rows
        out += df
    else:
        out += ctx.figure("3_lesson1_d_by_band", "d_ir_vis per band", plots.d_by_band, df)
    rho = number(summary.get("spearman_gt_band_rank"))
    if rho is not None:
        out += H.note(f"Spearman ρ(d, synthetic band rank vis_gray < nir < swir < mwir < lwir) = {rho:.3f} "
                      "(1 = distances follow the band order exactly; 0 = no relation).")
    else:
        out += H.note("No Spearman against band order (no gt_band_rank: real data, or not computed).", "notrun")
    out += '<div class="tables">'
    out += "<div><h3>d per band</h3>" + ctx.guard("d per band", _l1_band_table, df, summary) + "</div>"
    out += "<div><h3>Estimator</h3>" + (H.kv_table(_scalars(stats)) if stats else H.note("no stats", "notrun"))
    out += "</div></div>"
    return out


def _l1_rows(d) -> pd.DataFrame:
    df = read_dataset(d, ["band", "d_ir_vis"])
    _need(df, ["band", "d_ir_vis"], d)
    df["d_ir_vis"] = pd.to_numeric(df["d_ir_vis"], errors="coerce")
    df["band"] = df["band"].astype(str)
    return df


def _l1_band_table(df: pd.DataFrame | str, summary: dict) -> str:
    if isinstance(df, str):  # no rows: the manifest's means, when it has them
        means = summary.get("mean_d_by_band")
        if not isinstance(means, dict):
            return H.note("no scores and no mean_d_by_band in the manifest", "notrun")
        rows = [(b, means[b]) for b in plots.ordered(means, plots.IR_BANDS + plots.BAND_ORDER)]
        return H.table(["band", "mean d (manifest)"], rows)
    g = df.groupby("band")["d_ir_vis"]
    rows = []
    for b in plots.ordered(g.groups, plots.IR_BANDS + plots.BAND_ORDER):
        v = g.get_group(b).to_numpy(float)
        rows.append((b, len(v), float(np.nanmean(v)), float(np.nanmedian(v)), float(np.nanstd(v))))
    return H.table(["band", "n", "mean d", "median d", "sd"], rows)


def _need(df: pd.DataFrame, cols: list[str], where) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise Corrupt(where, f"the shards have no column {', '.join(missing)}")


# 4. Lesson 2 -----------------------------------------------------------------

def lesson2(ctx: Context) -> str:
    d = ctx.path("scores_l2")
    man = read_manifest(d)
    summary = man.get("summary") if isinstance(man.get("summary"), dict) else {}
    out = "<p>CLIP contrastive loss of each IR image-text pair before (l) and after (l') a short warm-up. " \
          "α = (l' − l)/l (Eq. 4) &gt; 0 flags a likely misaligned pair, which gets a weight w &lt; 0.5 " \
          "in stage 1 (Eq. 5); well-aligned pairs get w ≥ 1.5.</p>"
    df = ctx.guard_value("Lesson 2 scores", read_dataset, d,
                         ["loss_before", "loss_after", "alpha", "weight", "gt_misaligned"])
    if isinstance(df, str):
        out += df
    else:
        if {"loss_before", "loss_after"} <= set(df.columns):
            out += ctx.figure("4_lesson2_loss_scatter", "loss before vs after warm-up", plots.l2_scatter, df)
        else:
            out += H.note("No loss_before / loss_after columns: scatter skipped.", "notrun")
        if {"alpha", "weight"} & set(df.columns):
            out += ctx.figure("4_lesson2_alpha_weight", "alpha and weight histograms", plots.l2_hists, df)
        else:
            out += H.note("No alpha / weight columns: histograms skipped.", "notrun")
    auroc = [(k, summary[k]) for k in ("auroc_loss_after", "auroc_loss_before", "auroc_alpha") if k in summary]
    if auroc:
        out += H.note("AUROC = how well a score separates the synthetic misaligned pairs from the aligned "
                      "ones (0.5 = chance, 1 = perfect).")
    out += '<div class="tables">'
    out += "<div><h3>Summary</h3>" + (H.kv_table(_scalars(summary)) if summary else H.note("no summary", "notrun"))
    out += "</div>"
    extra = [(k, man[k]) for k in ("num_rows", "rejected", "truncated_captions", "rank_by") if k in man]
    medians = man.get("medians") if isinstance(man.get("medians"), dict) else {}
    extra += [(f"median {k} (Eq. 5)", v) for k, v in medians.items()]
    if extra:
        out += "<div><h3>Scoring</h3>" + H.kv_table(extra) + "</div>"
    return out + "</div>"


# 5. Curriculum ---------------------------------------------------------------

FIELDS = ("band", "task", "source")


def curriculum(ctx: Context) -> str:
    d = ctx.path("tiers")
    man = read_manifest(d)
    tiers = [t for t in man.get("tiers") or [] if isinstance(t, dict) and "tier" in t]
    comps = {f: {t["tier"]: t["composition"][f] for t in tiers
                 if isinstance(t.get("composition"), dict) and isinstance(t["composition"].get(f), dict)}
             for f in FIELDS}
    comps = {f: c for f, c in comps.items() if c}
    out = "<p>Samples ordered by the composite rank r = λ·rank₁ + (1 − λ)·rank₂ and split into M tiers of " \
          "equal size (tier 0 = easiest, trained first).</p>"
    if not tiers or len(comps) < len(FIELDS):
        try:
            rows = read_tier_rows(d, ["tier", *FIELDS, "composite_rank", "weight"])
            tiers = tiers or _tiers_from_rows(rows)
            for f in FIELDS:
                if f not in comps and f in rows:
                    comps[f] = {int(k): g[f].astype(str).value_counts().to_dict() for k, g in rows.groupby("tier")}
        except Missing as exc:
            if not tiers:
                raise
            out += H.note(f"Composition for {', '.join(f for f in FIELDS if f not in comps)} not in the manifest "
                          f"and no tier shards ({ctx.show(exc.path)}).", "notrun")
    if comps:
        out += ctx.figure("5_curriculum_composition", "tier composition", plots.tier_composition, comps)
    total = sum(number(t.get("size", t.get("rows"))) or 0 for t in tiers)
    rows = []
    for t in sorted(tiers, key=lambda t: number(t["tier"]) or 0):
        cr = t.get("composite_rank") if isinstance(t.get("composite_rank"), dict) else {}
        size = number(t.get("size", t.get("rows")))
        rows.append([t["tier"], t.get("size", t.get("rows")), f"{100 * size / total:.1f}%" if size is not None and total else "–",
                     cr.get("min"), cr.get("max")]
                    + [t.get(k) for k in _extra_keys(tiers)])
    out += "<h3>Tiers</h3>" + H.table(["tier", "size", "share", "composite rank min", "composite rank max",
                                      *_extra_keys(tiers)], rows, num_cols=(2,))
    cfg = man.get("config") if isinstance(man.get("config"), dict) else {}
    if cfg:
        out += "<h3>Curriculum config</h3>" + H.kv_table(_scalars(cfg))
    return out


def _extra_keys(tiers: list[dict]) -> list[str]:
    skip = {"tier", "size", "rows", "files", "dir", "composition", "composite_rank"}
    keys = []
    for t in tiers:
        keys += [k for k, v in t.items() if k not in skip and k not in keys and not isinstance(v, (dict, list))]
    return keys


def _tiers_from_rows(rows: pd.DataFrame) -> list[dict]:
    out = []
    for k, g in rows.groupby("tier"):
        t = {"tier": int(k), "size": len(g)}
        if "composite_rank" in g:
            cr = pd.to_numeric(g["composite_rank"], errors="coerce")
            t["composite_rank"] = {"min": float(cr.min()), "max": float(cr.max())}
        if "weight" in g:
            t["mean_weight"] = float(pd.to_numeric(g["weight"], errors="coerce").mean())
        out.append(t)
    return out
