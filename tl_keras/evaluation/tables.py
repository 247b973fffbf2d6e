"""The tidy result tables of an evaluation, with a fixed column order.

Every row starts with ``META_COLUMNS``: what was evaluated and how, so that
CSVs of many runs can simply be concatenated (a sweep) and grouped.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tl_keras.evaluation import catalogue, metrics
from tl_keras.evaluation.detection import (PER_LESION_COLUMNS, PRESET_COLUMNS,
                                           SUMMARY_COLUMNS, detected_column)

#: The fine-tuning mode fields of ExportMeta (a frozen encoder ...), copied as they are.
MODE_COLUMNS = ("freeze_encoder", "freeze_epochs", "encoder_lr_multiplier", "init_decoder")
META_COLUMNS = ("target", "source_task", "source_domain", "source_label", "init_from",
                *MODE_COLUMNS, "train_subjects",
                "repeat", "seed", "subset_seed", "split", "empty_policy", "include_background",
                "connectivity", "model_dir")


def run_metadata(meta, config, model_dir: str) -> dict:
    """The ``META_COLUMNS`` values of a run from its export record
    (:class:`tl_keras.models.export.ExportMeta`).

    ``repeat`` is the subset seed (each repeat of a sweep draws its own subset).
    """
    return {"target": meta.target, "source_task": meta.source_task,
            "source_domain": meta.source_domain, "source_label": meta.source_label,
            "init_from": meta.init_from, **{k: getattr(meta, k) for k in MODE_COLUMNS},
            "train_subjects": meta.train_subjects, "repeat": meta.subset_seed,
            "seed": meta.seed, "subset_seed": meta.subset_seed, "split": config.split,
            "empty_policy": config.empty_policy,
            "include_background": config.include_background,
            "connectivity": config.connectivity, "model_dir": str(model_dir)}


def _with_run(frame: pd.DataFrame, run: dict) -> pd.DataFrame:
    front = pd.DataFrame({k: [run[k]] * len(frame) for k in META_COLUMNS}, index=frame.index)
    return pd.concat([front, frame], axis=1)


def slice_metrics_fn(num_classes: int, class_names, config):
    """``(gt, pred) -> dict`` of per-slice columns for one batch (the registered
    ``catalogue.extra_metrics`` of the run's kind included)."""
    extra = catalogue.extra_metrics(num_classes)

    def with_extra(columns):
        def fn(gt, pred):
            out = columns(gt, pred)
            out.update({m.name: np.asarray(m.per_slice(gt, pred, num_classes, config),
                                           dtype=float) for m in extra})
            return out
        return fn

    def binary(gt, pred):
        return {"gt_voxels": np.count_nonzero(gt, axis=(1, 2)),
                "pred_voxels": np.count_nonzero(pred, axis=(1, 2)),
                "dice": metrics.dice_per_slice(gt, pred, config.empty_policy)}

    def multiclass(gt, pred):
        iou = metrics.iou_per_slice_class(gt, pred, num_classes, config.empty_policy)
        out = {"gt_voxels": np.count_nonzero(gt, axis=(1, 2)),
               "pred_voxels": np.count_nonzero(pred, axis=(1, 2)),
               "miou": metrics.miou_per_slice(gt, pred, num_classes, config.include_background,
                                              config.empty_policy)}
        for c in range(num_classes):
            out[f"iou_{class_names[c]}"] = iou[:, c]
        return out
    return with_extra(binary if num_classes == 2 else multiclass)


def _rate_column(overlap: float, volume_ml: float) -> str:
    return f"detection_rate_o{float(overlap):g}_v{float(volume_ml):g}"


def _subject_binary(vol, slice_dice, config):
    cache = {}  # components labelled once per connectivity, shared by all presets
    per_lesion, detection = metrics.lesion_detection(
        vol.gt, vol.pred, vol.voxel_volume_ml, config.connectivity, config.overlap_cutoffs,
        config.volume_cutoffs_ml, cache)
    any_fp = detection.loc[(detection.overlap_cutoff == detection.overlap_cutoff.min())
                           & (detection.volume_cutoff_ml == detection.volume_cutoff_ml.min()),
                           "fp_components"]
    row = {"subject_id": vol.subject_id, "n_slices": int(vol.present.sum()),
           "voxel_volume_ml": vol.voxel_volume_ml,
           "gt_volume_ml": np.count_nonzero(vol.gt) * vol.voxel_volume_ml,
           "pred_volume_ml": np.count_nonzero(vol.pred) * vol.voxel_volume_ml,
           "dice": metrics.nanmean(slice_dice),
           "dice_volume": metrics.dice_volume(vol.gt, vol.pred, config.empty_policy),
           "n_lesions": len(per_lesion), "fp_components": int(any_fp.iloc[0])}
    presets = [{"subject_id": vol.subject_id,
                **metrics.preset_metrics(vol.gt, vol.pred, vol.voxel_volume_ml, p, cache)}
               for p in config.presets]
    per_lesion.insert(0, "subject_id", vol.subject_id)
    detection.insert(0, "subject_id", vol.subject_id)
    return row, per_lesion, detection, presets


def _subject_multiclass(vol, slice_miou, num_classes, class_names, config):
    flat = (vol.gt.reshape(1, -1, vol.gt.shape[-1]), vol.pred.reshape(1, -1, vol.gt.shape[-1]))
    iou = metrics.iou_per_slice_class(*flat, num_classes, config.empty_policy)[0]
    row = {"subject_id": vol.subject_id, "n_slices": int(vol.present.sum()),
           "voxel_volume_ml": vol.voxel_volume_ml, "miou": metrics.nanmean(slice_miou),
           "miou_volume": metrics.nanmean(iou if config.include_background else iou[1:])}
    row.update({f"iou_{class_names[c]}_volume": iou[c] for c in range(num_classes)})
    return row


def _pool_detection(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Counts summed over subjects per cutoff pair, the rate recomputed, and
    ``n_subjects`` (so false-positive components per scan can be read off)."""
    cols = [*SUMMARY_COLUMNS, "n_subjects"]
    if not frames:
        return pd.DataFrame(columns=cols)
    pooled = (pd.concat(frames).groupby(["overlap_cutoff", "volume_cutoff_ml"], sort=True)
              [["n_lesions", "n_detected", "fp_components", "n_pred_components"]].sum()
              .reset_index())
    n = pooled["n_lesions"].to_numpy()
    pooled["detection_rate"] = np.where(n > 0, pooled["n_detected"] / np.maximum(n, 1), np.nan)
    pooled["n_subjects"] = len(frames)
    return pooled[cols]


def build_tables(store, slice_rows: dict, run: dict, num_classes: int, class_names,
                 config, progress=None, volume_of=None) -> dict[str, pd.DataFrame]:
    """Per-slice, per-subject, per-lesion, detection, presets and summary tables.

    ``progress``, if given, has ``update(n)`` and is told of every subject done.
    ``volume_of``, if given, maps each subject's re-assembled volumes onto the grid the
    volume metrics are computed on (``--space native``); per-slice scores stay on the
    slices the network saw.
    """
    per_slice = pd.DataFrame(slice_rows).sort_values(["subject_id", "slice_index"],
                                                     kind="stable").reset_index(drop=True)
    metric = catalogue.metric_for(num_classes)
    by_subject = {s: g[metric].to_numpy() for s, g in per_slice.groupby("subject_id")}
    rows, lesions, detections, presets = [], [], [], []
    for subject in sorted(store.slices):  # per subject: each call is vectorised
        vol = store.volumes(subject)
        if volume_of is not None:
            vol = volume_of(vol)
        if num_classes == 2:
            row, per_lesion, detection, pre = _subject_binary(vol, by_subject[subject], config)
            lesions.append(per_lesion)
            detections.append(detection)
            presets.extend(pre)
        else:
            row = _subject_multiclass(vol, by_subject[subject], num_classes, class_names,
                                      config)
        rows.append(row)
        if progress is not None:
            progress.update(1)
    per_subject = pd.DataFrame(rows)
    detection = _pool_detection(detections)
    lesion_cols = ["subject_id", *PER_LESION_COLUMNS,
                   *(detected_column(o) for o in config.overlap_cutoffs)]
    per_lesion = pd.concat(lesions, ignore_index=True) if lesions else pd.DataFrame(
        columns=lesion_cols)
    preset_frame = pd.DataFrame(presets, columns=["subject_id", *PRESET_COLUMNS])
    summary = _summary(per_slice, per_subject, detection, preset_frame, metric, config)
    return {"per_slice": _with_run(per_slice, run), "per_subject": _with_run(per_subject, run),
            "per_lesion": _with_run(per_lesion, run), "detection": _with_run(detection, run),
            "presets": _with_run(preset_frame, run), "summary": _with_run(summary, run)}


def _summary(per_slice, per_subject, detection, presets, metric, config) -> pd.DataFrame:
    """One row: slice mean / sd (the paper's number), volume mean, detection, presets."""
    row = {"n_subjects": len(per_subject), "n_slices": len(per_slice), "metric": metric,
           "space": getattr(config, "space", "template")}
    for m in catalogue.METRICS:  # every metric's columns, NaN but those computed
        row.update({m: np.nan, f"{m}_sd": np.nan, f"{m}_volume": np.nan})
        if m in per_slice:  # the run's metric and the registered extra ones
            values = per_slice[m].to_numpy(dtype=float)
            row[m] = metrics.nanmean(values)
            row[f"{m}_sd"] = float(np.nanstd(values)) if np.any(~np.isnan(values)) else np.nan
    row[f"{metric}_volume"] = metrics.nanmean(per_subject[f"{metric}_volume"])
    rates = {_rate_column(o, v): r for o, v, r in detection[
        ["overlap_cutoff", "volume_cutoff_ml", "detection_rate"]].itertuples(index=False)}
    for o in config.overlap_cutoffs:
        for v in config.volume_cutoffs_ml:
            row[_rate_column(o, v)] = rates.get(_rate_column(o, v), np.nan)
    for p in config.presets:
        sub = presets[presets["preset"] == p]
        for m in catalogue.LESION_METRICS:
            row[f"{p}_{m}"] = float(sub[m].mean()) if len(sub) else np.nan
    return pd.DataFrame([row])
