"""The results of an experiment: `OUT/trials.csv`, `OUT/trials.parquet`, `OUT/best.yaml`.

One row per trial: `trial_id`, the searched keys (dotted, one column each;
encoded choices as their JSON text), `objective`, `psum`, `nsum`,
`final_val_loss`, `seconds`, `evals`, `status`, `error`. A trial's numbers
come from its last evaluation report (a row of its result history with an
`objective`), not from the last report of any kind: the Train loop's
forwarded reports carry no objective.

status: `done` (every planned evaluation reported), `stopped` (fewer: ASHA
stopped it after stage 1, or the experiment was stopped), `error` (raised;
`error` holds the first line), `pending` (never reported).

`best.yaml` is the full config of the best `done` trial (falling back to
any trial with a finite objective): the base config with that trial's
values, `data.dir` pointing at the data the experiment used. It begins with
the `irgpt train` command that trains it on the trial's own tiers.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

from irgpt.config import Config
from irgpt.data.io import atomic_write_bytes
from irgpt.tune.space import Space, apply_overrides

METRIC_COLUMNS = ["objective", "objective_ci_low", "objective_ci_high", "seeds", "psum", "nsum", "nsum_median",
                  "final_val_loss", "seconds", "evals", "status", "error"]
"""objective_ci_*: the 95% t-interval of the mean objective over `--seeds` (empty for one seed)."""
_TRIAL_ID = re.compile(r"_([0-9a-f]{5}_\d{5}|[0-9a-f]{8})_\d+_")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _trial_id(result) -> str:
    tid = (result.metrics or {}).get("trial_id")
    if tid:
        return str(tid)
    m = _TRIAL_ID.search(Path(result.path).name)
    return m.group(1) if m else Path(result.path).name


def _last_eval(result) -> dict:
    df = result.metrics_dataframe
    if df is None or "objective" not in df.columns:
        return {}
    rows = df[df["objective"].notna()] if "evals" not in df.columns else df[df["evals"].notna()]
    return {} if rows.empty else rows.iloc[-1].to_dict()


def _number(value):
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _error_line(error: BaseException) -> str:
    """The exception's own line (Ray wraps it in a traceback that starts with the actor's repr)."""
    lines = [_ANSI.sub("", line).strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    return (lines[-1] if lines else type(error).__name__)[:300]


def trial_rows(results, space: Space, planned_evals: int) -> list[dict]:
    """One dict per trial of a Tune `ResultGrid` (see module doc)."""
    rows = []
    for result in results:
        last = _last_eval(result)
        evals = int(last["evals"]) if _number(last.get("evals")) is not None else 0
        if result.error is not None:
            status = "error"
        elif evals >= planned_evals:
            status = "done"
        else:
            ran = result.metrics_dataframe is not None and not result.metrics_dataframe.empty
            status = "stopped" if evals or ran else "pending"
        row = {"trial_id": _trial_id(result)}
        config = result.config or {}
        row.update({k: config.get(k) for k in space.keys})
        row.update({k: _number(last.get(k)) for k in ("objective", "objective_ci_low", "objective_ci_high", "seeds",
                                                        "psum", "nsum", "nsum_median", "final_val_loss", "seconds")})
        error = _error_line(result.error) if result.error is not None else None
        row.update({"evals": evals, "status": status, "error": error})
        rows.append(row)
    rows.sort(key=lambda r: r["trial_id"])
    return rows


def best_row(rows: list[dict], mode: str) -> dict | None:
    """The best finished trial (mode `max` / `min`), else the best with any objective.

    Ties (common at tiny scale, where every answer may be unparseable) go to
    the lower final validation loss, then the earlier trial id."""
    sign = -1.0 if mode == "max" else 1.0
    for pool in ([r for r in rows if r["status"] == "done"], rows):
        scored = [r for r in pool if r["objective"] is not None]
        if scored:
            inf = float("inf")
            return min(scored, key=lambda r: (sign * r["objective"], r["final_val_loss"] if r["final_val_loss"] is not None else inf, r["trial_id"]))
    return None


def write_table(out_dir: Path, rows: list[dict], space: Space) -> list[Path]:
    """trials.csv + trials.parquet (same columns, same order)."""
    import pandas as pd

    columns = ["trial_id", *space.keys, *METRIC_COLUMNS]
    df = pd.DataFrame(rows, columns=columns)
    csv, parquet = out_dir / "trials.csv", out_dir / "trials.parquet"
    atomic_write_bytes(csv, df.to_csv(index=False).encode("utf-8"))
    tmp = parquet.with_suffix(".parquet.tmp")
    # Mixed-type columns (an encoded choice next to null) are stored as text in Parquet.
    df.astype({c: "string" for c in space.keys if df[c].map(type).nunique() > 1}).to_parquet(tmp, index=False)
    tmp.replace(parquet)
    return [csv, parquet]


def best_config(base: Config, row: dict, space: Space, data_dir: Path) -> Config:
    """The base config with the best trial's values and the experiment's data dir."""
    cfg = apply_overrides(base, {k: row[k] for k in space.keys}, space.encoded, source=f"trial {row['trial_id']}")
    return apply_overrides(cfg, {"data.dir": str(data_dir)})


def write_best_yaml(path: Path, cfg: Config, row: dict, trials_dir: Path, objective: str, mode: str,
                    n_trials: int) -> None:
    """best.yaml: the full config, beginning with its `irgpt train` command (see module doc)."""
    tiers = trials_dir / row["trial_id"] / "tiers"
    sampled = ", ".join(f"{k}={row[k]}" for k in row if k not in ("trial_id", *METRIC_COLUMNS))
    header = [
        f"# irgpt train --config {path} --stage all --data {cfg.data.dir} --tiers {tiers} --out runs/{cfg.run.name}-best",
        f"# Best of {n_trials} Tune trial(s): trial {row['trial_id']}, objective ({objective}, "
        f"{'higher' if mode == 'max' else 'lower'} is better) = {row['objective']:.6g}; "
        f"psum {row['psum']}, nsum {row['nsum']}, final val loss {row['final_val_loss']}.",
        f"# Sampled: {sampled}",
        f"# The tiers above were built with this config; to re-tier: irgpt tier --config {path} "
        f"--scores L1 --scores L2 --out TIERS --reweight",
    ]
    body = yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)
    atomic_write_bytes(path, ("\n".join(header) + "\n" + body).encode("utf-8"))
