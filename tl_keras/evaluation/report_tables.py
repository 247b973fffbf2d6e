"""The report's tables: per source and set size, the metric's curve, detection.

- ``source_table`` (``table.csv``): per target, source and fine-tuning set size
  the metric's mean and sd over repeats, the lesion-wise precision and F1 of the
  target's detection preset (``catalogue.target_preset``), then the paired
  difference to scratch (``stats.COLUMNS``).
- ``markdown_table`` (``table.md``): the same, one Markdown table per target and
  set size.
- ``curve_table`` (``curve.csv``): the metric against set size per source.
- ``detection_table`` (``detection.csv``): detection rate, lesion-wise precision
  and false-positive components per scan against the cutoffs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tl_keras.evaluation import catalogue, stats

LESION_COLUMNS = ["lesion_preset", "lesion_precision", "lesion_precision_sd", "lesion_f1",
                  "lesion_f1_sd"]
TABLE_COLUMNS = ["target", "metric", "source", "source_domain", "source_task",
                 "train_subjects", "n_runs", "mean", "sd", "mean_sd", *LESION_COLUMNS,
                 *stats.COLUMNS]


def mean_sd(values: pd.Series) -> tuple[float, float]:
    """Mean and sample sd of the finite values (NaN sd with fewer than two)."""
    values = values.dropna().astype(float)
    sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return float(values.mean()) if len(values) else float("nan"), sd


def format_mean_sd(mean: float, sd: float) -> str:
    """"0.612 ± 0.012", "0.612" (one run) or "—" (none)."""
    if np.isnan(mean):
        return "—"
    return f"{mean:.3f}" if np.isnan(sd) else f"{mean:.3f} ± {sd:.3f}"


def _lesion_cells(target, g: pd.DataFrame) -> dict:
    """Lesion-wise precision and F1 of the target's preset over the runs ``g``."""
    preset = catalogue.target_preset(target)
    out = dict.fromkeys(LESION_COLUMNS, np.nan)
    values = {m: g[f"{preset}_{m}"] if f"{preset}_{m}" in g else pd.Series(dtype=float)
              for m in ("precision", "f1")}
    if all(v.isna().all() for v in values.values()):
        return out  # a multi-class target, or results without presets
    out["lesion_preset"] = preset
    for m, v in values.items():
        out[f"lesion_{m}"], out[f"lesion_{m}_sd"] = mean_sd(v)
    return out


def source_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 2.1 / 2.2 style, per target, source and fine-tuning set size: the
    metric's mean and sd over repeats, the lesion-wise precision and F1 (the
    target's preset), then the paired difference to scratch (``stats.COLUMNS``:
    pairs, mean difference, its 95 % bootstrap CI, raw and Holm-adjusted
    Wilcoxon p, verdict)."""
    rows = []
    for (target, metric, source, n), g in runs.groupby(
            ["target", "metric", "source", "train_subjects"], dropna=False, sort=True):
        mean, sd = mean_sd(g["value"])
        rows.append({"target": target, "metric": metric, "source": source,
                     "source_domain": g["source_domain"].iloc[0],
                     "source_task": g["source_task"].iloc[0],
                     "train_subjects": n, "n_runs": len(g),
                     "mean": mean, "sd": sd, "mean_sd": format_mean_sd(mean, sd),
                     **_lesion_cells(target, g)})
    first = TABLE_COLUMNS[:-len(stats.COLUMNS)]
    table = pd.DataFrame(rows, columns=first)
    if table.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    # merge on the keys' values, NaN set sizes included (pandas matches NaN keys)
    table = table.merge(stats.compare_to_scratch(runs), on=stats.KEYS, how="left")
    return table[TABLE_COLUMNS]


def _diff_cells(r) -> list[str]:
    """Difference (with its CI only from ``stats.MIN_PAIRS`` pairs), pairs, raw p,
    Holm-adjusted p, verdict."""
    if r["verdict"] in (stats.IS_REFERENCE, stats.NO_SCRATCH, stats.NO_MATCH):
        return ["—", "—", "—", "—", r["verdict"]]
    low, high = (stats.format_diff(r[c]) for c in ("diff_ci_low", "diff_ci_high"))
    ci = "" if pd.isna(r["diff_ci_low"]) else f" ({low} to {high})"
    adjusted = ("—" if pd.isna(r["p_holm"]) else
                stats.format_p(r["p_holm"], int(r["n_pairs"])))
    return [f"{stats.format_diff(r['diff_mean'])}{ci}", str(r["n_pairs"]), r["wilcoxon"],
            adjusted, r["verdict"]]


def markdown_table(table: pd.DataFrame) -> str:
    """One Markdown table per target and set size, largest first (rows:
    sources, best mean in bold, lesion-wise precision and F1 when the runs have
    them, then the paired difference to scratch)."""
    parts = []
    for (target, metric), frame in table.groupby(["target", "metric"], sort=True):
        name = catalogue.display_name(metric)
        lesion = frame["lesion_precision"].notna().any() or frame["lesion_f1"].notna().any()
        preset = catalogue.target_preset(target)
        sizes = sorted(frame["train_subjects"].dropna().unique(), reverse=True)
        for n in sizes + ([np.nan] if frame["train_subjects"].isna().any() else []):
            at = frame[frame["train_subjects"].isna() if pd.isna(n)
                       else frame["train_subjects"] == n]
            best = at["mean"].max()
            size = "" if pd.isna(n) else f", {int(n)} fine-tuning subjects"
            extra = ([f"lesion precision ({preset})", f"lesion F1 ({preset})"] if lesion
                     else [])
            head = [f"{name} (mean ± sd)", "runs", *extra,
                    "difference to scratch (95 % CI)", "pairs", "Wilcoxon p", "Holm-adjusted p",
                    "verdict"]
            lines = [f"### {target}: {name} per source{size}", "",
                     "| source | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
            for r in at.sort_values("mean", ascending=False).to_dict("records"):
                value = f"**{r['mean_sd']}**" if r["mean"] == best else r["mean_sd"]
                lesions = [format_mean_sd(r[f"lesion_{m}"], r[f"lesion_{m}_sd"])
                           for m in ("precision", "f1")] if lesion else []
                cells = [r["source"], value, str(r["n_runs"]), *lesions, *_diff_cells(r)]
                lines.append("| " + " | ".join(cells) + " |")
            parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def curve_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Metric against fine-tuning set size per source: mean and sd over repeats,
    and the 95 % bootstrap confidence interval of the mean (``ci_low``,
    ``ci_high``; NaN with fewer than ``stats.MIN_PAIRS`` runs)."""
    frame = runs.dropna(subset=["train_subjects"])
    rows = []
    for (target, metric, source, n), g in frame.groupby(
            ["target", "metric", "source", "train_subjects"], sort=True):
        mean, sd = mean_sd(g["value"])
        low, high = stats.bootstrap_ci(g["value"])
        rows.append({"target": target, "metric": metric, "source": source,
                     "train_subjects": n, "n_runs": len(g), "mean": mean, "sd": sd,
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["target", "metric", "source", "train_subjects",
                                       "n_runs", "mean", "sd", "ci_low", "ci_high"])


DETECTION_COLUMNS = ["target", "source", "overlap_cutoff", "volume_cutoff_ml", "n_runs",
                     "mean", "sd", "precision", "precision_sd", "fp_per_scan",
                     "fp_per_scan_sd"]


def _per_run_precision(c: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Lesion-wise precision (1 - false-positive / predicted components; 1 with no
    predicted component) and false-positive components per scan of each run row
    (NaN where the rows predate those columns)."""
    nan = pd.Series(np.nan, index=c.index)
    fp = c["fp_components"].astype(float) if "fp_components" in c else nan
    pred = c["n_pred_components"].astype(float) if "n_pred_components" in c else nan
    scans = c["n_subjects"].astype(float) if "n_subjects" in c else nan
    precision = (1.0 - fp / pred.where(pred > 0)).where(~(pred == 0), 1.0)
    return precision, fp / scans.where(scans > 0)


def detection_table(detection: pd.DataFrame) -> pd.DataFrame:
    """Per source and cutoff pair: detection rate (``mean``, ``sd``), lesion-wise
    precision and false-positive components per scan, from each source's runs at
    its largest fine-tuning set (the paper analyses the model fine-tuned on 100
    scans)."""
    if detection.empty:
        return pd.DataFrame(columns=DETECTION_COLUMNS)
    rows = []
    for (target, source), g in detection.groupby(["target", "source"], sort=True):
        sizes = g["train_subjects"].dropna()
        if len(sizes):
            g = g[g["train_subjects"] == sizes.max()]
        for (o, v), c in g.groupby(["overlap_cutoff", "volume_cutoff_ml"], sort=True):
            precision, fp = _per_run_precision(c)
            rows.append(dict(zip(DETECTION_COLUMNS, [
                target, source, o, v, len(c), *mean_sd(c["detection_rate"]),
                *mean_sd(precision), *mean_sd(fp)])))
    return pd.DataFrame(rows, columns=DETECTION_COLUMNS)
