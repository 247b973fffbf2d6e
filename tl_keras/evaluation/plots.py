"""Figures of the report (matplotlib, Agg backend, written atomically as PNG).

- ``plot_curves``: metric against fine-tuning set size, mean over repeats with
  its 95 % bootstrap confidence band, one line per source (paper Fig. 2.3, left),
  and below it each source's paired difference to scratch with its 95 % CI
  (no CI below ``stats.MIN_PAIRS`` pairs).
- ``plot_detection``: detection rate and lesion-wise precision against
  lesion-volume cutoff at 0 % and 20 % overlap, one line per source (Figs. 2.3
  right, 2.4), a row of panels per target.
- ``plot_examples``: scan, ground truth and each source's prediction on the
  same slices (Fig. 2.5), one figure per target.

Every source keeps one colour and one marker (``source_style``) in every figure.
"""
from __future__ import annotations

import numpy as np

from tl_keras.evaluation import catalogue, stats
from tl_common.io import atomic_path
from tl_common.records import RecordError

# 20 colours (matplotlib's tab10 and, after it, tab20's light shades) and 15 markers:
# up to 15 sources get a colour and a marker of their own; more reuse markers.
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
            "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")
_MARKERS = "osD^vP*Xh<>pd8H"


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def source_style(sources) -> dict:
    """Source -> (colour, marker), in sorted order: up to ``len(_COLOURS)`` sources a
    distinct colour, up to ``len(_MARKERS)`` a distinct marker as well."""
    return {s: (_COLOURS[i % len(_COLOURS)], _MARKERS[i % len(_MARKERS)])
            for i, s in enumerate(sorted(map(str, sources)))}


def _legend(ax, entries: int, loc: str = "best") -> None:
    """Inside the panel for a few sources, beside it (right) for many."""
    if entries > 6:
        ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.legend(fontsize=8, frameon=False, loc=loc)


def _metric_name(metric) -> str:
    return catalogue.display_name(metric)


def _dodge(frame):
    """Sideways offsets per source, 2.5 % of the set-size range each (of 1 subject with
    one set size), so that sources at one set size do not hide each other."""
    sources = sorted(frame["source"].unique())
    span = float(np.ptp(frame["train_subjects"])) if len(frame) else 0.0
    return {s: 0.025 * (span or 1.0) * (i - (len(sources) - 1) / 2)
            for i, s in enumerate(sources)}


def _curve_panel(ax, frame, style) -> None:
    """Mean over repeats per source with its 95 % bootstrap CI: a band along the set sizes,
    or error bars when there is one set size."""
    single = frame["train_subjects"].nunique() == 1
    offset = _dodge(frame) if single else {}  # several sizes: bands, not dodged
    for source, g in frame.groupby("source", sort=True):
        g = g.sort_values("train_subjects")
        colour, marker = style[source]
        x, m = g["train_subjects"] + offset.get(source, 0.0), g["mean"]
        ax.plot(x, m, marker=marker, color=colour, label=source, lw=1.6, ms=5)
        if single:  # NaN (fewer than MIN_PAIRS runs): no bar
            ax.errorbar(x, m, yerr=[m - g["ci_low"], g["ci_high"] - m], color=colour,
                        capsize=3, lw=1.2, ls="none")
        else:  # NaN where fewer than MIN_PAIRS runs: no band there (matplotlib leaves a gap)
            ax.fill_between(x, g["ci_low"], g["ci_high"], color=colour, alpha=0.12, lw=0)
    name = _metric_name(frame["metric"].iloc[0])
    ax.set_ylabel(f"{name}\n(mean, 95 % bootstrap CI over repeats)")
    what = "per source" if single else "against fine-tuning set size"
    ax.set_title(f"{frame['target'].iloc[0]}: {name} {what}")
    ax.grid(alpha=0.3)
    _legend(ax, frame["source"].nunique())


def difference_points(table):
    """What the difference panel draws, one row per source and set size.

    Columns ``source, train_subjects, x`` (dodged sideways by 2.5 % of the set-size
    range per source so that bars at one set size do not hide each other),
    ``diff_mean``, ``err_low`` / ``err_high`` (distances to the 95 % CI; NaN, so no
    bar, below ``stats.MIN_PAIRS`` pairs) and ``too_few`` (drawn as an open marker).
    """
    offset = _dodge(table.dropna(subset=["train_subjects"]))  # scratch too: as in the curve
    frame = table.dropna(subset=["diff_mean", "train_subjects"]).copy()
    frame["x"] = frame["train_subjects"] + frame["source"].map(offset)
    frame["too_few"] = frame["verdict"] == stats.TOO_FEW
    few = frame["too_few"].to_numpy()
    frame["err_low"] = (frame["diff_mean"] - frame["diff_ci_low"]).mask(few)
    frame["err_high"] = (frame["diff_ci_high"] - frame["diff_mean"]).mask(few)
    return frame[["source", "train_subjects", "x", "diff_mean", "err_low", "err_high",
                  "too_few"]].sort_values(["source", "train_subjects"]).reset_index(drop=True)


def _difference_panel(ax, frame, style) -> None:
    """Paired difference to scratch per source with its 95 % CI as error bars;
    open markers without a bar: fewer than ``stats.MIN_PAIRS`` pairs, no CI."""
    metric = _metric_name(frame["metric"].iloc[0])
    ax.set_ylabel(f"{metric} minus scratch\n(same subjects, 95 % CI)")
    ax.grid(alpha=0.3)
    points = difference_points(frame)
    if points.empty:
        ax.text(0.5, 0.5, "no paired difference to scratch:\nno scratch run on the same "
                "training subjects\n(see summary.md)", transform=ax.transAxes, ha="center",
                va="center", fontsize=9, color="0.3")
        ax.set_yticks([])
        return
    ax.axhline(0.0, color="0.3", lw=1.0)
    for source, g in points.groupby("source", sort=True):
        colour, marker = style[source]
        ax.plot(g["x"], g["diff_mean"], color=colour, lw=1.0, alpha=0.6)
        bars = g[g["err_low"].notna()]
        ax.errorbar(bars["x"], bars["diff_mean"], yerr=[bars["err_low"], bars["err_high"]],
                    color=colour, capsize=3, lw=1.2, ls="none")
        few = g["too_few"].to_numpy()
        for chosen, face in ((~few, colour), (few, "white")):
            ax.plot(g["x"][chosen], g["diff_mean"][chosen], ls="none", marker=marker, ms=5,
                    mec=colour, mfc=face, zorder=3)
    few = (f" (open markers: fewer than {stats.MIN_PAIRS} pairs: no CI, no verdict)"
           if points["too_few"].any() else "")
    ax.set_title(f"paired difference to scratch{few}", fontsize=9)


def plot_curves(curve, path: str, table=None, style=None) -> str:
    """Metric against fine-tuning set size (or per source, with one set size), one
    column of panels per target.

    Top: mean over repeats per source and its 95 % bootstrap CI band
    (``curve``'s ``ci_low`` / ``ci_high``; no band with fewer than
    ``stats.MIN_PAIRS`` runs). Bottom, when ``table`` (the report table with
    ``stats.COLUMNS``) holds paired differences: each source minus scratch on the
    same training subjects, with its 95 % CI. Pairing removes the between-subset
    spread that widens the top bands, so a source can clearly beat scratch
    although the bands overlap. ``style``: ``source_style`` of the report.
    """
    plt = _pyplot()
    targets = sorted(curve["target"].unique())
    style = style or source_style(curve["source"].unique())
    has_diff = table is not None and table["diff_mean"].notna().any()
    rows = 2 if has_diff else 1
    fig, axes = plt.subplots(rows, len(targets), figsize=(6.4 * len(targets), 4.4 + 3 * has_diff),
                             squeeze=False, sharex="col",
                             gridspec_kw={"height_ratios": [3, 2][:rows]})
    for c, target in enumerate(targets):
        frame = curve[curve["target"] == target]
        _curve_panel(axes[0][c], frame, style)
        if has_diff:
            _difference_panel(axes[1][c], table[table["target"] == target], style)
        ticks = sorted(frame["train_subjects"].unique())
        axes[-1][c].set_xticks(ticks, [f"{t:g}" for t in ticks])
        axes[-1][c].set_xlabel("fine-tuning set size (subjects)")
    fig.tight_layout()
    return _save(fig, path)


# The rows of the detection figure: (detection_table column, its sd, y label).
_DETECTION_ROWS = (("mean", "sd", "detection rate"),
                   ("precision", "precision_sd",
                    "lesion-wise precision\n(1 - false-positive / predicted components)"))


def plot_detection(det, path: str, overlaps=(0.0, 0.2), style=None) -> str:
    """Detection rate (top) and lesion-wise precision (below) against the lesion-
    volume cutoff, a column per overlap cutoff, a pair of rows per target; mean and
    sd over the runs of each source (``report_tables.detection_table``)."""
    plt = _pyplot()
    targets = sorted(det["target"].unique())
    style = style or source_style(det["source"].unique())
    rows = [(t, r) for t in targets for r in _DETECTION_ROWS
            if det.loc[det["target"] == t, r[0]].notna().any()]
    fig, axes = plt.subplots(len(rows), len(overlaps), figsize=(5.6 * len(overlaps),
                                                                3.6 * len(rows)),
                             sharex=True, squeeze=False)
    for (target, (col, sd, label)), line in zip(rows, axes):
        for ax, o in zip(line, overlaps):
            frame = det[(det["target"] == target) & np.isclose(det["overlap_cutoff"], o)]
            for source, g in frame.groupby("source", sort=True):
                g = g.sort_values("volume_cutoff_ml")
                colour, marker = style[source]
                ax.errorbar(g["volume_cutoff_ml"], g[col], yerr=g[sd].fillna(0),
                            color=colour, marker=marker, capsize=3, lw=1.6, ms=5, label=source)
            where = f"overlap > {o * 100:g} %" if o else "any overlap (> 0 %)"
            ax.set_title(f"{target}: {label.splitlines()[0]}, {where}", fontsize=10)
            ax.set_ylim(0, 1.05)
            ax.grid(alpha=0.3)
        line[0].set_ylabel(label)
        if len(frame):
            _legend(line[-1], frame["source"].nunique(), "lower right")
    for ax in axes[-1]:
        ax.set_xlabel("lesion volume cutoff (mL)")
    fig.tight_layout()
    return _save(fig, path)


def _overlay(ax, image, labels, colour_map):
    ax.imshow(image.astype(np.float32), cmap="gray", interpolation="nearest")
    if labels is not None and np.any(labels):
        rgba = colour_map(labels.astype(int))
        rgba[..., 3] = np.where(labels > 0, 0.55, 0.0)
        ax.imshow(rgba, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _score(gt, pred, num_classes: int) -> str:
    """Dice (binary) or mIoU of one slice, for the panel's corner."""
    from tl_keras.evaluation import metrics
    num_classes = max(num_classes, 2)  # a sigmoid model's labels are binary too
    name = catalogue.display_name(catalogue.metric_for(num_classes))
    if num_classes == 2:
        return f"{name} {metrics.dice_per_slice(gt, pred)[0]:.2f}"
    return f"{name} {metrics.miou_per_slice(gt, pred, num_classes)[0]:.2f}"


def shared_slices(by_source: dict) -> list:
    """(subject, slice) keys present in every source's examples, sorted."""
    keys = None
    for data in by_source.values():
        k = set(zip(data["subject_id"].tolist(), data["slice_index"].tolist()))
        keys = k if keys is None else keys & k
    return sorted(keys or ())


def plot_examples(by_source: dict, path: str, max_rows: int = 4, title=None) -> str:
    """Rows: slices shared by every source; columns: scan, ground truth, predictions.

    ``by_source``: source -> examples.npz contents of one target
    (``study_report.load_examples``); ``title``: a line above the panels (the target).
    """
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    sources = sorted(by_source)
    keys = shared_slices(by_source)[:max_rows]
    if not keys:
        raise RecordError("the examples.npz files share no slice (different test sets?)")
    colours = ["none", "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4",
               "#46f0f0", "#f032e6"]
    cmap = ListedColormap([(0, 0, 0, 0)] + [plt.matplotlib.colors.to_rgba(c)
                                            for c in colours[1:]])
    ncol = 2 + len(sources)
    fig, axes = plt.subplots(len(keys), ncol, figsize=(2.3 * ncol, 2.4 * len(keys) + 0.3),
                             squeeze=False)
    first = by_source[sources[0]]
    index = {k: i for i, k in enumerate(zip(first["subject_id"].tolist(),
                                            first["slice_index"].tolist()))}
    for r, key in enumerate(keys):
        i = index[key]
        _overlay(axes[r][0], first["image"][i], None, cmap)
        _overlay(axes[r][1], first["image"][i], first["gt"][i], cmap)
        axes[r][0].set_ylabel(f"{key[0]}\nslice {key[1]}", fontsize=8)
        for c, source in enumerate(sources):
            data = by_source[source]
            j = list(zip(data["subject_id"].tolist(), data["slice_index"].tolist())).index(key)
            ax = axes[r][2 + c]
            _overlay(ax, data["image"][j], data["pred"][j], cmap)
            ax.text(0.02, 0.98, _score(data["gt"][j], data["pred"][j], data["num_classes"]),
                    transform=ax.transAxes, va="top", fontsize=8, color="white",
                    bbox={"facecolor": "black", "alpha": 0.6, "lw": 0, "pad": 1.5})
    for c, name in enumerate(["scan", "ground truth", *sources]):
        axes[0][c].set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    if first["num_classes"] > 2:  # which colour is which class
        from matplotlib.patches import Patch
        handles = [Patch(color=cmap(k), label=first["class_names"][k])
                   for k in range(1, first["num_classes"])]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7),
                   fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.04))
    return _save(fig, path)
