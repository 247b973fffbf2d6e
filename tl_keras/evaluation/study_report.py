"""Collect evaluation results of many runs into the paper's tables and figures.

Inputs are any mix of:
- an ``evaluate`` output directory (``summary.csv``, ``detection.csv``,
  ``examples.npz``), or a directory tree holding several of them;
- a CSV: detection rows (``overlap_cutoff``, ``volume_cutoff_ml``,
  ``detection_rate`` ...) or run rows with ``dice`` or ``miou`` (an evaluate
  ``summary.csv`` or a sweep's merged CSV).

Every row is attributed to a *source* (its recorded ``source_label``, else
``source_domain`` + ``source_task``, or the ``init`` for scratch / ImageNet runs);
each Taskonomy task (``source_task`` ``taskonomy:<task>``) is a source of its own.
The comparison with scratch (paired differences, bootstrap CI, Wilcoxon) is
``stats``; the sentences of ``summary.md`` are ``summary``.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys

import numpy as np
import pandas as pd

from tl_keras.evaluation import plots, stats, summary
from tl_keras.evaluation.tables import MODE_COLUMNS
from tl_common.io import write_csv_atomic, write_text_atomic
from tl_keras.weights.load_report import WeightLoadError
from tl_keras.weights.spec import InitSpec, mode_suffix, source_label as spec_source_label
from tl_common.records import RecordError
from tl_common.cli import MissingFileError

GROUP_COLUMNS = ("target", "source", "source_domain", "source_task")


@dataclasses.dataclass
class Results:
    """Everything the report draws from.

    Attributes:
      runs: one row per run with ``metric`` (dice / miou) and ``value``.
      detection: pooled detection rows per run, with the run metadata.
      examples: paths of ``examples.npz`` files.
    """

    runs: pd.DataFrame
    detection: pd.DataFrame
    examples: list[str]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value == ""


def source_label(row) -> str:
    """Human-readable source of a run: "t1 segmentation", "Taskonomy autoencoder",
    "ImageNet", "scratch".

    A run's recorded ``source_label`` wins; otherwise it is built from ``source_task`` /
    ``source_domain`` and the kind of ``init`` (or ``init_from``) by the same rule
    (:func:`tl_keras.weights.spec.source_label`), with the fine-tuning mode of the row's
    ``freeze_encoder`` ... columns appended (:func:`tl_keras.weights.spec.mode_suffix`: a
    frozen encoder is a source of its own), so evaluate outputs and sweep CSVs agree;
    a row with none of them keeps its own ``source`` name (a sweep cell name).
    """
    if not _missing(row.get("source_label")):
        return str(row["source_label"])
    task, domain = row.get("source_task"), row.get("source_domain")
    init = row.get("init")
    init = row.get("init_from") if _missing(init) else init
    if _missing(task) and _missing(domain) and _missing(init) and not _missing(
            row.get("source")):
        return str(row["source"])
    try:
        kind = None if _missing(init) else InitSpec.parse(str(init)).kind
    except WeightLoadError:  # an init this version does not know: go by the task
        kind = None
    return spec_source_label(None if _missing(task) else task,
                             None if _missing(domain) else domain, kind) + mode_suffix(
        *(row.get(k) for k in MODE_COLUMNS))


def _with_source(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for col in ("target", "source_domain", "source_task", "init", "train_subjects", "repeat"):
        if col not in frame:
            frame[col] = np.nan
    frame["source"] = [source_label(r) for r in frame.to_dict("records")]
    frame["target"] = frame["target"].fillna("target")
    return frame


def _metric_rows(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Give run rows a ``metric`` name and its ``value`` (dice or miou)."""
    frame = frame.copy()
    for m in ("dice", "miou"):  # a sweep's merged CSV prefixes evaluate's columns
        if m not in frame and f"test_{m}" in frame:
            frame[m] = frame[f"test_{m}"]
    if "metric" not in frame:
        has = [m for m in ("dice", "miou") if m in frame]
        if not has:
            raise RecordError(f"{where}: no 'dice' or 'miou' column "
                             f"(columns: {', '.join(map(str, frame.columns))})")
        frame["metric"] = [next((m for m in has if pd.notna(r[m])), has[0])
                           for r in frame.to_dict("records")]
    frame["value"] = [r[r["metric"]] for r in frame.to_dict("records")]
    return frame


def _dedupe(runs: pd.DataFrame) -> pd.DataFrame:
    """Drop repeated runs (a sweep directory and its merged CSV given together).

    A run is identified by its ``model_dir`` (evaluate) or ``run_dir`` (sweep
    CSV); rows with neither are kept.
    """
    key = pd.Series([None] * len(runs), index=runs.index, dtype=object)
    for col in ("run_dir", "model_dir"):
        if col in runs:
            key = runs[col].where(runs[col].notna(), key)
    key = key.map(lambda k: os.path.normpath(os.path.abspath(str(k))) if pd.notna(k) else k)
    keep = key.isna() | ~key.duplicated()
    return runs[keep.to_numpy()].reset_index(drop=True)


def load_results(paths) -> Results:
    """Read result directories / CSVs (see module docstring).

    Raises:
      FileNotFoundError: a path does not exist or holds no results.
      ValueError: a CSV has neither run nor detection columns.
    """
    runs, detection, examples = [], [], []
    for path in paths:
        if os.path.isdir(path):
            summaries = sorted(glob.glob(os.path.join(path, "**", "summary.csv"), recursive=True))
            if not summaries:
                raise MissingFileError(f"{path}: no summary.csv below this directory; "
                                        f"is it an evaluate --out_dir?")
            for s in summaries:
                d = os.path.dirname(s)
                runs.append(_metric_rows(pd.read_csv(s), s))
                if os.path.exists(os.path.join(d, "detection.csv")):
                    detection.append(pd.read_csv(os.path.join(d, "detection.csv")))
                if os.path.exists(os.path.join(d, "examples.npz")):
                    examples.append(os.path.join(d, "examples.npz"))
        elif os.path.isfile(path):
            frame = pd.read_csv(path)
            if {"overlap_cutoff", "volume_cutoff_ml", "detection_rate"} <= set(frame.columns):
                detection.append(frame)
            else:
                runs.append(_metric_rows(frame, path))
        else:
            raise MissingFileError(f"{path}: no such results directory or CSV")
    run_frame = (_with_source(_dedupe(pd.concat(runs, ignore_index=True))) if runs
                 else pd.DataFrame())
    det_frame = (_with_source(pd.concat(detection, ignore_index=True)) if detection
                 else pd.DataFrame())
    return Results(run_frame, det_frame, examples)


def _mean_sd(values: pd.Series) -> tuple[float, float]:
    values = values.dropna().astype(float)
    sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return float(values.mean()) if len(values) else float("nan"), sd


def _fmt(mean: float, sd: float) -> str:
    return f"{mean:.3f}" if np.isnan(sd) else f"{mean:.3f} ± {sd:.3f}"


TABLE_COLUMNS = ["target", "metric", "source", "source_domain", "source_task",
                 "train_subjects", "n_runs", "mean", "sd", "mean_sd", *stats.COLUMNS]


def source_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 2.1 / 2.2 style, per target, source and fine-tuning set size: the
    metric's mean and sd over repeats, then the paired difference to scratch
    (``stats.COLUMNS``: pairs, mean difference, its 95 % bootstrap CI,
    Wilcoxon p, verdict)."""
    rows = []
    for (target, metric, source, n), g in runs.groupby(
            ["target", "metric", "source", "train_subjects"], dropna=False, sort=True):
        mean, sd = _mean_sd(g["value"])
        rows.append({"target": target, "metric": metric, "source": source,
                     "source_domain": g["source_domain"].iloc[0],
                     "source_task": g["source_task"].iloc[0],
                     "train_subjects": n, "n_runs": len(g),
                     "mean": mean, "sd": sd, "mean_sd": _fmt(mean, sd)})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS[:10])
    if table.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    # merge on the keys' values, NaN set sizes included (pandas matches NaN keys)
    table = table.merge(stats.compare_to_scratch(runs), on=stats.KEYS, how="left")
    return table[TABLE_COLUMNS]


def _diff_cells(r) -> list[str]:
    if r["verdict"] in (stats.IS_REFERENCE, stats.NO_SCRATCH, stats.NO_MATCH):
        return ["—", "—", "—", r["verdict"]]
    low, high = (stats.format_diff(r[c]) for c in ("diff_ci_low", "diff_ci_high"))
    ci = "" if pd.isna(r["diff_ci_low"]) else f" ({low} to {high})"
    return [f"{stats.format_diff(r['diff_mean'])}{ci}", str(r["n_pairs"]), r["wilcoxon"],
            r["verdict"]]


def markdown_table(table: pd.DataFrame) -> str:
    """One Markdown table per target and set size, largest first (rows:
    sources, best mean in bold, then the paired difference to scratch)."""
    parts = []
    for (target, metric), frame in table.groupby(["target", "metric"], sort=True):
        name = {"dice": "Dice", "miou": "mIoU"}.get(metric, metric)
        sizes = sorted(frame["train_subjects"].dropna().unique(), reverse=True)
        for n in sizes + ([np.nan] if frame["train_subjects"].isna().any() else []):
            at = frame[frame["train_subjects"].isna() if pd.isna(n)
                       else frame["train_subjects"] == n]
            best = at["mean"].max()
            size = "" if pd.isna(n) else f", {int(n)} fine-tuning subjects"
            lines = [f"### {target}: {name} per source{size}", "",
                     f"| source | {name} (mean ± sd) | runs | difference to scratch "
                     f"(95 % CI) | pairs | Wilcoxon | verdict |", "|---|---|---|---|---|---|---|"]
            for r in at.sort_values("mean", ascending=False).to_dict("records"):
                value = f"**{r['mean_sd']}**" if r["mean"] == best else r["mean_sd"]
                cells = [r["source"], value, str(r["n_runs"]), *_diff_cells(r)]
                lines.append("| " + " | ".join(cells) + " |")
            parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def curve_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Metric against fine-tuning set size per source: mean and sd over repeats,
    and the 95 % bootstrap confidence interval of the mean (``ci_low``,
    ``ci_high``; NaN with a single run)."""
    frame = runs.dropna(subset=["train_subjects"])
    rows = []
    for (target, metric, source, n), g in frame.groupby(
            ["target", "metric", "source", "train_subjects"], sort=True):
        mean, sd = _mean_sd(g["value"])
        low, high = stats.bootstrap_ci(g["value"])
        rows.append({"target": target, "metric": metric, "source": source,
                     "train_subjects": n, "n_runs": len(g), "mean": mean, "sd": sd,
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["target", "metric", "source", "train_subjects",
                                       "n_runs", "mean", "sd", "ci_low", "ci_high"])


def detection_table(detection: pd.DataFrame) -> pd.DataFrame:
    """Detection rate per source and cutoff pair, from each source's runs at its
    largest fine-tuning set (the paper analyses the model fine-tuned on 100 scans)."""
    if detection.empty:
        return pd.DataFrame(columns=["target", "source", "overlap_cutoff", "volume_cutoff_ml",
                                     "n_runs", "mean", "sd"])
    rows = []
    for (target, source), g in detection.groupby(["target", "source"], sort=True):
        sizes = g["train_subjects"].dropna()
        if len(sizes):
            g = g[g["train_subjects"] == sizes.max()]
        for (o, v), c in g.groupby(["overlap_cutoff", "volume_cutoff_ml"], sort=True):
            mean, sd = _mean_sd(c["detection_rate"])
            rows.append({"target": target, "source": source, "overlap_cutoff": o,
                         "volume_cutoff_ml": v, "n_runs": len(c), "mean": mean, "sd": sd})
    return pd.DataFrame(rows)


def load_examples(paths) -> dict:
    """examples.npz per source (first run of each source, sorted by path)."""
    by_source = {}
    for path in sorted(paths):
        with np.load(path) as z:
            run = json.loads(str(z["run"]))
            data = {k: z[k] for k in ("subject_id", "slice_index", "image", "gt", "pred")}
            data["num_classes"] = int(z["num_classes"]) if "num_classes" in z else 2
            data["class_names"] = (z["class_names"].tolist() if "class_names" in z else
                                   [f"class {k}" for k in range(data["num_classes"])])
        by_source.setdefault(source_label(run), data)
    return by_source


def write_report(results: Results, out_dir: str, verbose: bool = True) -> dict[str, str]:
    """Write tables (CSV + Markdown) and figures (PNG) into ``out_dir``.

    Returns:
      Output name -> path of what was written (figures lacking data are skipped
      with a note).
    """
    os.makedirs(out_dir, exist_ok=True)
    written = {}

    def note(msg):
        if verbose:
            print(f"report: {msg}")

    if not results.runs.empty:
        table = source_table(results.runs)
        curve = curve_table(results.runs)
        for name, frame in (("runs", results.runs), ("table", table), ("curve", curve)):
            written[name] = os.path.join(out_dir, f"{name}.csv")
            write_csv_atomic(written[name], frame)
        written["table_md"] = os.path.join(out_dir, "table.md")
        write_text_atomic(written["table_md"], markdown_table(table))
        written["summary_md"] = os.path.join(out_dir, "summary.md")
        write_text_atomic(written["summary_md"], summary.summary_markdown(table))
        for line in stats.problems(table):  # a warning, printed even when not verbose
            print(f"report: {line}", file=sys.stderr)
        if curve.groupby(["target", "source"])["train_subjects"].nunique().max() > 1:
            written["curve_png"] = plots.plot_curves(curve, os.path.join(out_dir, "curve.png"),
                                                     table)
        else:
            note("one fine-tuning set size only: no curve figure")
    if not results.detection.empty:
        det = detection_table(results.detection)
        written["detection"] = os.path.join(out_dir, "detection.csv")
        write_csv_atomic(written["detection"], det)
        written["detection_png"] = plots.plot_detection(det,
                                                        os.path.join(out_dir, "detection.png"))
    if results.examples:
        written["examples_png"] = plots.plot_examples(load_examples(results.examples),
                                                      os.path.join(out_dir, "examples.png"))
    for name, path in written.items():
        note(f"wrote {name}: {path}")
    return written
