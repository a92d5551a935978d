"""The report's figures: plain functions from DataFrames / dicts to a matplotlib Figure.

matplotlib is imported inside `_plt()` (Agg backend, no display), so importing
this module is cheap and safe on a headless Ray worker. The caller saves and
closes each figure (`irgpt.report.report.Context.figure`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Band order of the x axes / small multiples: visible first, then by wavelength
# (irgpt.data.schema.BANDS); Lesson 1 plots only the infrared ones.
BAND_ORDER = ("vis", "vis_gray", "nir", "swir", "mwir", "lwir", "unknown")
IR_BANDS = ("nir", "swir", "mwir", "lwir", "unknown")
BAND_COLOURS = {"vis": "#7f7f7f", "vis_gray": "#b0b0b0", "nir": "#1f77b4", "swir": "#2ca02c",
                "mwir": "#ff7f0e", "lwir": "#d62728", "unknown": "#9467bd"}
ALIGNED, MISALIGNED = "#3b75af", "#d1495b"
MAX_SCATTER = 20_000  # points drawn in a scatter (a seeded sample above that)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.grid": True,
                         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def ordered(values, order=BAND_ORDER) -> list:
    """`values` (unique) with the known ones first, in `order`, then the rest sorted."""
    vals = list(dict.fromkeys(str(v) for v in values))
    known = [v for v in dict.fromkeys(order) if v in vals]
    return known + sorted(v for v in vals if v not in order)


def _colour(i: int, name: str | None = None):
    if name in BAND_COLOURS:
        return BAND_COLOURS[name]
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if i < 10 else "tab20"]
    return cmap(i % cmap.N)


def d_by_band(df: pd.DataFrame):
    """Lesson 1: small multiples of d_ir_vis per band on a shared x axis, mean marked."""
    plt = _plt()
    d = pd.to_numeric(df["d_ir_vis"], errors="coerce")
    df = df.assign(d_ir_vis=d)[np.isfinite(d)]
    bands = ordered(df["band"].astype(str), IR_BANDS + BAND_ORDER)
    edges = np.histogram_bin_edges(df["d_ir_vis"].to_numpy(float), bins=40)
    fig, axes = plt.subplots(len(bands), 1, figsize=(10, 1.5 * len(bands) + 1.1), sharex=True,
                             squeeze=False)
    for ax, band in zip(axes[:, 0], bands):
        vals = df.loc[df["band"].astype(str) == band, "d_ir_vis"].to_numpy(float)
        c = _colour(0, band)
        ax.stairs(np.histogram(vals, edges)[0], edges, fill=True, color=c, alpha=0.75)
        mean = float(vals.mean())
        ax.axvline(mean, color="black", lw=1.2, ls="--")
        ax.set_ylabel("samples", fontsize=8)
        ax.set_title(f"{band}:  n = {len(vals):,},  mean d = {mean:.4g}", loc="left", fontsize=9,
                     color=c, fontweight="bold", pad=3)
    axes[-1, 0].set_xlabel("d_i = MMD − p_i  (distance to the visible centroid, kernel feature space; "
                           "lower = closer to visible = easier)")
    fig.suptitle("Lesson 1: IR→VIS distance per band (dashed line = band mean)")
    fig.tight_layout()
    return fig


def l2_scatter(df: pd.DataFrame, seed: int = 0):
    """Lesson 2: loss before vs after warm-up, coloured by gt_misaligned when present."""
    plt = _plt()
    df = df[["loss_before", "loss_after"] + (["gt_misaligned"] if "gt_misaligned" in df else [])].copy()
    for c in ("loss_before", "loss_after"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df = df[np.isfinite(df["loss_before"]) & np.isfinite(df["loss_after"])]
    n_all = len(df)
    if n_all > MAX_SCATTER:
        df = df.sample(MAX_SCATTER, random_state=seed)
    fig, ax = plt.subplots(figsize=(7.5, 6.2))
    if "gt_misaligned" in df:
        bad = df["gt_misaligned"].fillna(False).astype(bool).to_numpy()
        ax.scatter(df["loss_before"][~bad], df["loss_after"][~bad], s=9, alpha=0.55, color=ALIGNED,
                   label=f"aligned (n={int((~bad).sum()):,})", edgecolors="none")
        ax.scatter(df["loss_before"][bad], df["loss_after"][bad], s=12, alpha=0.75, color=MISALIGNED,
                   label=f"misaligned, synthetic GT (n={int(bad.sum()):,})", edgecolors="none")
    else:
        ax.scatter(df["loss_before"], df["loss_after"], s=9, alpha=0.55, color=ALIGNED,
                   label=f"samples (n={len(df):,})", edgecolors="none")
    lo = float(min(df["loss_before"].min(), df["loss_after"].min()))
    hi = float(max(df["loss_before"].max(), df["loss_after"].max()))
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, ls="--", label="y = x (no change; above = α > 0)")
    ax.set_xlabel("l: per-sample contrastive loss before warm-up (nats)")
    ax.set_ylabel("l': per-sample contrastive loss after warm-up (nats)")
    shown = f" ({len(df):,} of {n_all:,} shown)" if n_all > len(df) else ""
    ax.set_title(f"Lesson 2: IR-text loss before vs after CLIP warm-up{shown}")
    ax.legend(loc="upper left", fontsize=9)
    fig.tight_layout()
    return fig


def l2_hists(df: pd.DataFrame):
    """Lesson 2: histogram of alpha (Eq. 4) and of the weight w (Eq. 5)."""
    plt = _plt()
    cols = [c for c in ("alpha", "weight") if c in df]
    fig, axes = plt.subplots(1, len(cols), figsize=(5.6 * len(cols), 4.2), squeeze=False)
    bad = df["gt_misaligned"].fillna(False).astype(bool).to_numpy() if "gt_misaligned" in df else None
    for ax, c in zip(axes[0], cols):
        vals = pd.to_numeric(df[c], errors="coerce").to_numpy(float)
        ok = np.isfinite(vals)
        edges = np.histogram_bin_edges(vals[ok], bins=50)
        if bad is None:
            ax.stairs(np.histogram(vals[ok], edges)[0], edges, fill=True, color=ALIGNED, alpha=0.8,
                      label="all samples")
        else:  # stacked: misaligned on top of aligned
            low = np.histogram(vals[ok & ~bad], edges)[0]
            top = low + np.histogram(vals[ok & bad], edges)[0]
            ax.stairs(low, edges, fill=True, color=ALIGNED, alpha=0.85, label="aligned")
            ax.stairs(top, edges, baseline=low, fill=True, color=MISALIGNED, alpha=0.85,
                      label="misaligned (synthetic GT)")
        if c == "alpha":
            ax.axvline(0, color="black", lw=1, ls="--", label="α = 0")
            ax.set_xlabel("α = (l' − l) / l   (Eq. 4; > 0: alignment got worse)")
            ax.set_title("α per sample")
        else:
            ax.set_xlabel("w (Eq. 5; (0, 0.5) for α > 0, [1.5, 2) for α ≤ 0)")
            ax.set_title("Loss weight w per sample")
        ax.set_ylabel("samples")
        ax.legend(fontsize=9)
    fig.suptitle("Lesson 2: misalignment signal α and stage-1 weight w")
    fig.tight_layout()
    return fig


def tier_composition(comps: dict[str, dict[int, dict[str, int]]], max_values: int = 10):
    """Curriculum: per field (band / task / source), stacked bars of rows per tier."""
    plt = _plt()
    fields = list(comps)
    fig, axes = plt.subplots(1, len(fields), figsize=(5.0 * len(fields), 4.6), squeeze=False)
    for ax, field in zip(axes[0], fields):
        per_tier = comps[field]
        tiers = sorted(per_tier)
        totals: dict[str, int] = {}
        for counts in per_tier.values():
            for k, v in counts.items():
                totals[str(k)] = totals.get(str(k), 0) + int(v)
        values = ordered(totals) if field == "band" else sorted(totals, key=lambda k: -totals[k])
        keep = values[:max_values]
        other = len(values) > max_values
        bottom = np.zeros(len(tiers))
        for i, v in enumerate(keep + (["other"] if other else [])):
            if v == "other":
                h = np.array([sum(int(n) for k, n in per_tier[t].items() if str(k) not in keep) for t in tiers])
            else:
                h = np.array([int(per_tier[t].get(v, 0)) for t in tiers])
            ax.bar([str(t) for t in tiers], h, bottom=bottom, label=v,
                   color=_colour(i, v if field == "band" else None))
            bottom += h
        ax.set_xlabel("tier (0 = easiest)")
        ax.set_ylabel("rows")
        ax.set_title(f"{field} per tier")
        handles, labels = ax.get_legend_handles_labels()  # top of the stack first, as drawn
        ax.legend(handles[::-1], labels[::-1], fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  frameon=False)
    fig.suptitle("Curriculum: tier composition")
    fig.tight_layout()
    return fig


def training_loss(stages: dict[str, tuple[pd.DataFrame, pd.DataFrame]]):
    """Training: loss per global step, one colour per tier, tier changes and val loss marked.

    `stages` maps a stage label to (step rows with `global_step`, `loss`[, `tier`],
    val rows with `global_step`, `val_loss`).
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(stages), figsize=(6.2 * len(stages), 4.6), squeeze=False)
    for ax, (label, (steps, val)) in zip(axes[0], stages.items()):
        steps = steps.sort_values("global_step")
        x = steps["global_step"].to_numpy(float)
        y = pd.to_numeric(steps["loss"], errors="coerce").to_numpy(float)
        if "tier" in steps and steps["tier"].notna().any():
            tier = steps["tier"].ffill().bfill().to_numpy()
            change = np.flatnonzero(tier[1:] != tier[:-1]) + 1
            starts = np.concatenate([[0], change])
            ends = np.concatenate([change, [len(x)]])
            seen = set()
            for s, e in zip(starts, ends):
                t = tier[s]
                lo = max(s - 1, 0)  # join the segments so the curve is continuous
                ax.plot(x[lo:e], y[lo:e], color=_colour(int(t) if _intlike(t) else 0), lw=1.4,
                        label=None if t in seen else f"tier {fmt_tier(t)}")
                seen.add(t)
            for s in change:
                ax.axvline((x[s - 1] + x[s]) / 2, color="#555", lw=0.8, ls=":")
        else:
            ax.plot(x, y, color=_colour(0), lw=1.4, label="train loss")
        if len(val):
            ax.plot(val["global_step"], val["val_loss"], "o-", color="black", ms=5, lw=1,
                    label="validation loss")
        ax.set_xlabel("global step (optimizer steps)")
        ax.set_ylabel("loss (weighted mean token cross-entropy, nats)")
        ax.set_title(f"{label}" + ("   (dotted = tier change)" if "tier" in steps else ""))
        ax.legend(fontsize=8)
    fig.suptitle("Training loss")
    fig.tight_layout()
    return fig


def _intlike(v) -> bool:
    try:
        return float(v) == int(float(v))
    except (TypeError, ValueError):
        return False


def fmt_tier(t) -> str:
    return str(int(float(t))) if _intlike(t) else str(t)


def tune_scatter(df: pd.DataFrame, objective: str, xcols: list[tuple[str, str]], best_index, ylabel: str):
    """Tune: objective vs each searched parameter (M, lambda); the best trial ringed."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(xcols), figsize=(5.4 * len(xcols), 4.2), squeeze=False)
    yv = pd.to_numeric(df[objective], errors="coerce")
    for ax, (col, label) in zip(axes[0], xcols):
        xv = pd.to_numeric(df[col], errors="coerce")
        ax.scatter(xv, yv, s=36, color=ALIGNED, alpha=0.8, label="trial")
        if best_index is not None:
            ax.scatter([xv[best_index]], [yv[best_index]], s=140, facecolors="none", edgecolors=MISALIGNED,
                       lw=2, label="best")
        ax.set_xlabel(label)
        ax.set_ylabel(ylabel)
        ax.set_title(f"objective vs {label}")
        ax.legend(fontsize=8)
    fig.suptitle("Tune: trials")
    fig.tight_layout()
    return fig
