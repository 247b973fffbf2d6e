"""Overlap metrics per axial slice and per volume (docs/method.md section 7).

All functions take integer label arrays shaped (slices, H, W) (a single 2D
slice is accepted as (H, W)) and are vectorised: one pass of ``np.bincount``
over a joint (slice, class) index, no Python loop over slices or voxels.

The paper does not say what an empty slice scores, so the choice is a
parameter, ``empty_policy``, applied to each (slice, class) pair:

- ``"skip_both_empty"`` (default): ground truth and prediction both empty ->
  left out (NaN); only false positives -> 0 (what the formula gives).
- ``"one_both_empty"``: both empty -> 1 (perfect agreement on "nothing").
- ``"skip_gt_empty"``: every slice (class) without ground truth is left out,
  false-positive-only slices included.

For mIoU the policy is applied per foreground class, so by default a slice
averages the classes present in its ground truth or prediction.

Lesion detection lives in :mod:`tl_keras.evaluation.detection` and is
re-exported here.
"""
from __future__ import annotations

import numpy as np

from tl_keras.evaluation.detection import (  # noqa: F401  (re-exported API)
    PRESETS, DetectionPreset, get_preset, lesion_detection, preset_metrics)

EMPTY_POLICIES = ("skip_both_empty", "one_both_empty", "skip_gt_empty")
DEFAULT_EMPTY_POLICY = "skip_both_empty"


def _check_policy(policy: str) -> None:
    if policy not in EMPTY_POLICIES:
        raise ValueError(f"unknown empty_policy '{policy}', expected one of {EMPTY_POLICIES}")


def _as_slices(gt, pred) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    if gt.ndim == 2:
        gt, pred = gt[None], pred[None]
    if gt.ndim != 3:
        raise ValueError(f"expected (slices, H, W) arrays, got shape {gt.shape}")
    return gt, pred


def _apply_policy(score: np.ndarray, n_gt: np.ndarray, n_pred: np.ndarray,
                  policy: str) -> np.ndarray:
    """Replace the undefined / excluded entries of ``score`` following ``policy``."""
    _check_policy(policy)
    score = score.astype(np.float64, copy=True)
    both_empty = (n_gt == 0) & (n_pred == 0)
    if policy == "skip_both_empty":
        score[both_empty] = np.nan
    elif policy == "one_both_empty":
        score[both_empty] = 1.0
    else:
        score[n_gt == 0] = np.nan
    return score


def _confusion_counts(gt: np.ndarray, pred: np.ndarray, num_classes: int):
    """Per-slice, per-class counts: (ground truth, prediction, intersection), (S, K) each."""
    s = gt.shape[0]
    if gt.size and (min(gt.min(), pred.min()) < 0 or max(gt.max(), pred.max()) >= num_classes):
        raise ValueError(f"labels must be in 0..{num_classes - 1}")
    offset = (np.arange(s, dtype=np.int64) * num_classes)[:, None, None]
    g = (gt.astype(np.int64) + offset).ravel()
    p = (pred.astype(np.int64) + offset).ravel()
    n = s * num_classes
    n_gt = np.bincount(g, minlength=n).reshape(s, num_classes)
    n_pred = np.bincount(p, minlength=n).reshape(s, num_classes)
    inter = np.bincount(g[g == p], minlength=n).reshape(s, num_classes)
    return n_gt, n_pred, inter


def _dice(n_gt, n_pred, inter):
    denom = n_gt + n_pred
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2.0 * inter / np.maximum(denom, 1), 0.0)


def dice_per_slice(gt, pred, empty_policy: str = DEFAULT_EMPTY_POLICY) -> np.ndarray:
    """Dice of the foreground (label > 0) of each slice.

    Args:
      gt: (slices, H, W) ground truth; any non-zero value is foreground.
      pred: prediction of the same shape.
      empty_policy: one of ``EMPTY_POLICIES`` (module docstring).

    Returns:
      float64 (slices,) with NaN for the slices the policy leaves out.
    """
    gt, pred = _as_slices(gt, pred)
    n_gt, n_pred, inter = _confusion_counts(gt != 0, pred != 0, 2)
    return _apply_policy(_dice(n_gt[:, 1], n_pred[:, 1], inter[:, 1]),
                         n_gt[:, 1], n_pred[:, 1], empty_policy)


def dice_volume(gt, pred, empty_policy: str = DEFAULT_EMPTY_POLICY) -> float:
    """Dice of the foreground over a whole volume (one number per subject).

    The empty policy applies to the volume as a whole (NaN when both are empty
    under the default policy).
    """
    gt, pred = np.asarray(gt) != 0, np.asarray(pred) != 0
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    n_gt, n_pred = np.array([gt.sum()]), np.array([pred.sum()])
    inter = np.array([np.count_nonzero(gt & pred)])
    return float(_apply_policy(_dice(n_gt, n_pred, inter), n_gt, n_pred, empty_policy)[0])


def iou_per_slice_class(gt, pred, num_classes: int,
                        empty_policy: str = DEFAULT_EMPTY_POLICY) -> np.ndarray:
    """IoU of every class on every slice, (slices, num_classes), NaN where left out."""
    gt, pred = _as_slices(gt, pred)
    n_gt, n_pred, inter = _confusion_counts(gt, pred, num_classes)
    union = n_gt + n_pred - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return _apply_policy(iou, n_gt, n_pred, empty_policy)


def miou_per_slice(gt, pred, num_classes: int, include_background: bool = False,
                   empty_policy: str = DEFAULT_EMPTY_POLICY) -> np.ndarray:
    """Mean IoU over classes of each slice.

    Args:
      gt: (slices, H, W) integer labels in 0..num_classes-1.
      pred: prediction of the same shape.
      num_classes: number of classes including background (label 0).
      include_background: average class 0 as well.
      empty_policy: applied per (slice, class); by default a slice averages the
        classes present in its ground truth or prediction.

    Returns:
      float64 (slices,), NaN for slices where every class is left out.
    """
    iou = iou_per_slice_class(gt, pred, num_classes, empty_policy)
    if not include_background:
        iou = iou[:, 1:]
    valid = ~np.isnan(iou)
    count = valid.sum(axis=1)
    total = np.where(valid, iou, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def nanmean(values) -> float:
    """Mean ignoring NaN (NaN, without a warning, when nothing is left)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")
