"""Figures of the report (matplotlib, Agg backend, written atomically as PNG).

- ``plot_curves``: metric against fine-tuning set size, mean over repeats with
  its 95 % bootstrap confidence band, one line per source (paper Fig. 2.3, left),
  and below it each source's paired difference to scratch with its 95 % CI.
- ``plot_detection``: detection rate against lesion-volume cutoff at 0 % and
  20 % overlap, one line per source (Figs. 2.3 right, 2.4).
- ``plot_examples``: scan, ground truth and each source's prediction on the
  same slices (Fig. 2.5).
"""
from __future__ import annotations

import numpy as np

from tl_keras.evaluation import stats
from tl_common.io import atomic_path
from tl_common.records import RecordError


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


def _style(sources):
    """A fixed colour and marker per source, stable across figures."""
    plt = _pyplot()
    colours = plt.get_cmap("tab10").colors
    markers = "osD^vP*Xh<>"
    return {s: (colours[i % 10], markers[i % len(markers)]) for i, s in enumerate(sorted(sources))}


def _metric_name(metric) -> str:
    return {"dice": "Dice", "miou": "mIoU"}.get(metric, str(metric))


def _curve_panel(ax, frame, style) -> None:
    """Mean over repeats per source with its 95 % bootstrap CI band."""
    for source, g in frame.groupby("source", sort=True):
        g = g.sort_values("train_subjects")
        colour, marker = style[source]
        x, m = g["train_subjects"], g["mean"]
        ax.plot(x, m, marker=marker, color=colour, label=source, lw=1.6, ms=5)
        ax.fill_between(x, g["ci_low"].fillna(m), g["ci_high"].fillna(m), color=colour,
                        alpha=0.12, lw=0)
    name = _metric_name(frame["metric"].iloc[0])
    ax.set_ylabel(f"{name}\n(mean, 95 % bootstrap CI over repeats)")
    ax.set_title(f"{frame['target'].iloc[0]}: {name} against fine-tuning set size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)


def _difference_panel(ax, frame, style) -> None:
    """Paired difference to scratch per source with its 95 % CI as error bars.

    Sources are dodged sideways (2.5 % of the set-size range each) so that
    their bars at one set size do not hide each other. Open markers: too few
    pairs for a verdict (``stats.MIN_PAIRS``).
    """
    metric = _metric_name(frame["metric"].iloc[0])
    ax.set_ylabel(f"{metric} minus scratch\n(same subjects, 95 % CI)")
    ax.grid(alpha=0.3)
    frame = frame.dropna(subset=["diff_mean", "train_subjects"])
    if frame.empty:
        ax.text(0.5, 0.5, "no paired difference to scratch:\nno scratch run on the same "
                "training subjects\n(see summary.md)", transform=ax.transAxes, ha="center",
                va="center", fontsize=9, color="0.3")
        ax.set_yticks([])
        return
    sources = sorted(frame["source"].unique())
    span = float(np.ptp(frame["train_subjects"])) or 1.0
    ax.axhline(0.0, color="0.3", lw=1.0)
    for i, source in enumerate(sources):
        g = frame[frame["source"] == source].sort_values("train_subjects")
        colour, marker = style[source]
        x = g["train_subjects"] + 0.025 * span * (i - (len(sources) - 1) / 2)
        m = g["diff_mean"]
        err = [(m - g["diff_ci_low"]).fillna(0), (g["diff_ci_high"] - m).fillna(0)]
        ax.errorbar(x, m, yerr=err, color=colour, capsize=3, lw=1.2, label=source)
        few = (g["verdict"] == stats.TOO_FEW).to_numpy()
        for points, face in ((~few, colour), (few, "white")):
            ax.plot(x[points], m[points], ls="none", marker=marker, ms=5, mec=colour, mfc=face,
                    zorder=3)
    few = (f" (open markers: fewer than {stats.MIN_PAIRS} pairs, no verdict)"
           if (frame["verdict"] == stats.TOO_FEW).any() else "")
    ax.set_title(f"paired difference to scratch{few}", fontsize=9)


def plot_curves(curve, path: str, table=None) -> str:
    """Metric against fine-tuning set size, one column of panels per target.

    Top: mean over repeats per source and its 95 % bootstrap CI band
    (``curve``'s ``ci_low`` / ``ci_high``; no band where a single run).
    Bottom, when ``table`` (the report table with ``stats.COLUMNS``) holds
    paired differences: each source minus scratch on the same training
    subjects, with its 95 % CI. Pairing removes the between-subset spread that
    widens the top bands, so a source can clearly beat scratch although the
    bands overlap.
    """
    plt = _pyplot()
    targets = sorted(curve["target"].unique())
    style = _style(curve["source"].unique())
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


def plot_detection(det, path: str, overlaps=(0.0, 0.2)) -> str:
    """Two panels (0 % and 20 % overlap): detection rate vs volume cutoff."""
    plt = _pyplot()
    det = det.copy()
    if det["target"].nunique() > 1:
        det["source"] = det["target"].astype(str) + ": " + det["source"]
    style = _style(det["source"].unique())
    fig, axes = plt.subplots(1, len(overlaps), figsize=(5.6 * len(overlaps), 4.2),
                             sharey=True, squeeze=False)
    for ax, o in zip(axes[0], overlaps):
        frame = det[np.isclose(det["overlap_cutoff"], o)]
        for source, g in frame.groupby("source", sort=True):
            g = g.sort_values("volume_cutoff_ml")
            colour, marker = style[source]
            ax.errorbar(g["volume_cutoff_ml"], g["mean"], yerr=g["sd"].fillna(0), color=colour,
                        marker=marker, capsize=3, lw=1.6, ms=5, label=source)
        ax.set_title(f"overlap > {o * 100:g} %" if o else "any overlap (> 0 %)")
        ax.set_xlabel("lesion volume cutoff (mL)")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        if len(frame):
            ax.legend(fontsize=8, frameon=False, loc="lower right")
    axes[0][0].set_ylabel("detection rate")
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
    if num_classes <= 2:
        return f"Dice {metrics.dice_per_slice(gt, pred)[0]:.2f}"
    return f"mIoU {metrics.miou_per_slice(gt, pred, num_classes)[0]:.2f}"


def plot_examples(by_source: dict, path: str, max_rows: int = 4) -> str:
    """Rows: slices shared by every source; columns: scan, ground truth, predictions.

    ``by_source``: source -> examples.npz contents (``study_report.load_examples``).
    """
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    sources = sorted(by_source)
    keys = None
    for data in by_source.values():
        k = set(zip(data["subject_id"].tolist(), data["slice_index"].tolist()))
        keys = k if keys is None else keys & k
    keys = sorted(keys)[:max_rows]
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
    for c, title in enumerate(["scan", "ground truth", *sources]):
        axes[0][c].set_title(title, fontsize=9)
    fig.tight_layout()
    if first["num_classes"] > 2:  # which colour is which class
        from matplotlib.patches import Patch
        handles = [Patch(color=cmap(k), label=first["class_names"][k])
                   for k in range(1, first["num_classes"])]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7),
                   fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.04))
    return _save(fig, path)
