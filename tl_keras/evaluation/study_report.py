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
The comparison with scratch (paired differences, bootstrap CI, Wilcoxon, Holm) is
``stats``; the tables are ``report_tables``; the sentences of ``summary.md`` are
``summary``; the figures ``plots``.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys

import numpy as np
import pandas as pd

from tl_keras.evaluation import catalogue, plots, stats, summary
from tl_keras.evaluation.report_tables import (  # noqa: F401  (part of this module's API)
    TABLE_COLUMNS, curve_table, detection_table, markdown_table, source_table)
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
    """Give run rows a ``metric`` name and its ``value`` (one of ``catalogue.METRICS``)."""
    frame = frame.copy()
    lesion = [f"{p}_{m}" for p in catalogue.DETECTION_PRESETS for m in catalogue.LESION_METRICS]
    for m in [*catalogue.METRICS, *lesion]:  # a sweep's merged CSV prefixes evaluate's columns
        if m not in frame and f"test_{m}" in frame:
            frame[m] = frame[f"test_{m}"]
    if "metric" not in frame:
        has = [m for m in catalogue.METRICS if m in frame]
        if not has:
            names = " or ".join(f"'{m}'" for m in catalogue.METRICS)
            raise RecordError(f"{where}: no {names} column "
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


def load_examples(paths) -> dict[str, dict]:
    """examples.npz per target and source: ``{target: {source: contents}}`` (first
    run of each source, sorted by path; a run without a target is "target")."""
    by_target = {}
    for path in sorted(paths):
        with np.load(path) as z:
            run = json.loads(str(z["run"]))
            data = {k: z[k] for k in ("subject_id", "slice_index", "image", "gt", "pred")}
            data["num_classes"] = int(z["num_classes"]) if "num_classes" in z else 2
            data["class_names"] = (z["class_names"].tolist() if "class_names" in z else
                                   [f"class {k}" for k in range(data["num_classes"])])
        target = "target" if _missing(run.get("target")) else str(run["target"])
        by_target.setdefault(target, {}).setdefault(source_label(run), data)
    return by_target


def _file_part(name: str) -> str:
    """``name`` made safe for a file name ("ms lesion" -> "ms_lesion")."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _write_examples(paths, out_dir: str, written: dict) -> None:
    """One examples figure per target (examples.png, or examples_<target>.png for each
    of several targets); a target whose sources share no slice is skipped with a line
    on stderr."""
    by_target = load_examples(paths)
    for target, by_source in sorted(by_target.items()):
        if not plots.shared_slices(by_source):
            print(f"report: {target}: the examples.npz files of its sources share no slice "
                  f"(different test sets?); no examples figure", file=sys.stderr)
            continue
        several = len(by_target) > 1
        name = f"examples_{_file_part(target)}" if several else "examples"
        written[f"{name}_png"] = plots.plot_examples(
            by_source, os.path.join(out_dir, f"{name}.png"),
            title=target if several else None)


def write_report(results: Results, out_dir: str, verbose: bool = True,
                 preamble: str | None = None) -> dict[str, str]:
    """Write tables (CSV + Markdown) and figures (PNG) into ``out_dir``.

    ``preamble``: a paragraph put at the top of ``summary.md`` (the quickstart says
    there that its data are synthetic).

    Every source has the same colour and marker in the curve and detection figures.

    Returns:
      Output name -> path of what was written (figures lacking data are skipped
      with a note).
    """
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    style = plots.source_style({*results.runs.get("source", []),
                                *results.detection.get("source", [])})

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
        write_text_atomic(written["summary_md"], summary.summary_markdown(table, preamble))
        for line in stats.problems(table):  # a warning, printed even when not verbose
            print(f"report: {line}", file=sys.stderr)
        several = curve.groupby(["target", "source"])["train_subjects"].nunique().max() > 1
        if several or table["diff_mean"].notna().any():
            written["curve_png"] = plots.plot_curves(curve, os.path.join(out_dir, "curve.png"),
                                                     table, style)
        else:
            note("one fine-tuning set size and no paired difference: no curve figure")
    if not results.detection.empty:
        det = detection_table(results.detection)
        written["detection"] = os.path.join(out_dir, "detection.csv")
        write_csv_atomic(written["detection"], det)
        written["detection_png"] = plots.plot_detection(
            det, os.path.join(out_dir, "detection.png"), style=style)
    if results.examples:
        _write_examples(results.examples, out_dir, written)
    for name, path in written.items():
        note(f"wrote {name}: {path}")
    return written
