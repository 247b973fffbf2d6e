"""Lesion detection on re-assembled 3D volumes, and challenge presets.

Lesions are connected components of the ground-truth mask. Everything is
computed from one ``scipy.ndimage.label`` call per mask and ``np.bincount``
over the component labels, so the cost is a few passes over the volume however
many lesions there are (no per-lesion or per-voxel Python loop).

Volumes are (slices, H, W) with the axial slice first. Connectivity 4 or 8
labels each axial slice on its own (a 3D structuring element whose neighbouring
slices are empty, so a single label call still suffices); 6, 18 or 26 is 3D.

Definitions (docs/method.md section 7):

- a lesion *counts* at volume cutoff ``v`` when its volume (voxels times the
  voxel volume) is >= ``v`` mL (with a 1e-9 mL tolerance for rounding);
- it is *detected* at overlap cutoff ``o`` when the fraction of its voxels
  predicted is > ``o`` (so 0 means any overlap);
- a predicted component is a *false-positive component* at (``o``, ``v``)
  when its volume is >= ``v`` and the fraction of its voxels inside the
  ground truth is <= ``o`` (at 0: no overlap with any lesion);
- ``n_pred_components`` at ``v`` counts the predicted components of volume
  >= ``v``, so the lesion-wise precision at (``o``, ``v``) is
  1 - ``fp_components`` / ``n_pred_components``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from tl_keras.evaluation.catalogue import (DETECTION_PRESETS, DetectionPreset,  # noqa: F401
                                           get_preset)

CONNECTIVITIES = (4, 8, 6, 18, 26)
_TOL_ML = 1e-9
PER_LESION_COLUMNS = ("lesion_id", "voxels", "volume_ml", "overlap_voxels",
                      "overlap_fraction", "centroid_slice", "centroid_row", "centroid_col")
SUMMARY_COLUMNS = ("overlap_cutoff", "volume_cutoff_ml", "n_lesions", "n_detected",
                   "detection_rate", "fp_components", "n_pred_components")
PRESET_COLUMNS = ("preset", "connectivity", "n_gt_lesions", "n_pred_components", "tp", "fn",
                  "fp", "recall", "precision", "f1")


def structure(connectivity: int) -> np.ndarray:
    """3x3x3 structuring element for ``connectivity`` (4/8 stay within a slice)."""
    if connectivity in (4, 8):
        out = np.zeros((3, 3, 3), bool)
        out[1] = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
        return out
    if connectivity in (6, 18, 26):
        return ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    raise ValueError(f"connectivity must be one of {CONNECTIVITIES}, got {connectivity}")


def _as_volume(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"{name}: expected a (slices, H, W) volume, got shape {x.shape}")
    return x != 0


def crop_to_union(gt: np.ndarray, pred: np.ndarray):
    """Crop both volumes to the bounding box of ``gt | pred``.

    Components, sizes and overlaps are unchanged (everything outside is
    background in both), while labelling touches far fewer voxels: the padded
    field around a brain, and most of the brain, hold no lesion.

    Returns:
      (gt, pred, offset): cropped views and the (slice, row, col) offset.
    """
    union = gt | pred
    box = []
    for axis in range(3):
        hit = np.flatnonzero(np.any(union, axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(hit[0], hit[-1] + 1) if hit.size else slice(0, 1))
    box = tuple(box)
    return gt[box], pred[box], np.array([b.start for b in box])


def label(mask: np.ndarray, connectivity: int, cache: dict | None = None, key=None):
    """``scipy.ndimage.label`` of a boolean ``mask``, memoised in ``cache[key]``.

    Labelling is the only costly step; evaluating several presets on the same
    (ground truth, prediction) pair shares it through one ``cache`` dict.
    """
    if cache is not None and key is not None and (key, connectivity) in cache:
        return cache[(key, connectivity)]
    out = ndimage.label(mask, structure(connectivity))
    if cache is not None and key is not None:
        cache[(key, connectivity)] = out
    return out


def counts(labels: np.ndarray, n: int, mask: np.ndarray, other: np.ndarray):
    """Per component of ``labels`` (from ``mask``): its voxels and those also in ``other``.

    Only the labelled voxels are counted (``np.bincount`` over ``labels[mask]``),
    not the whole volume.
    """
    flat = labels.ravel()
    sizes = np.bincount(flat[mask.ravel()], minlength=n + 1)[1:]
    inside = np.bincount(flat[(mask & other).ravel()], minlength=n + 1)[1:]
    return sizes, inside


def components(mask: np.ndarray, other: np.ndarray, connectivity: int,
               cache: dict | None = None, key=None):
    """Label ``mask`` and count, per component, its voxels and those also in ``other``.

    Returns:
      (labels, sizes, inside): the label volume and two int64 arrays indexed by
      component id - 1.
    """
    labels, n = label(mask, connectivity, cache, key)
    return (labels, *counts(labels, n, mask, other))


def _centroids(labels: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(n, 3) voxel-coordinate centroids from bincount with weights."""
    n = sizes.size
    coords = np.nonzero(labels)
    ids = labels[coords]
    out = np.empty((n, 3))
    for axis in range(3):  # three axes, not lesions
        out[:, axis] = np.bincount(ids, weights=coords[axis], minlength=n + 1)[1:]
    return out / np.maximum(sizes, 1)[:, None]


def detected_column(cutoff: float) -> str:
    """Name of the per-lesion column "detected at overlap cutoff ``cutoff``"."""
    return f"detected_overlap_{cutoff:g}"


def lesion_detection(gt, pred, voxel_volume_ml: float, connectivity: int = 8,
                     overlap_cutoffs=(0.0, 0.2), volume_cutoffs_ml=(0, 1, 2),
                     cache: dict | None = None):
    """Per-lesion detection and detection rates per (overlap, volume) cutoff pair.

    Args:
      gt: (slices, H, W) ground-truth volume, non-zero = lesion.
      pred: predicted volume of the same shape.
      voxel_volume_ml: volume of one voxel in mL (mm^3 / 1000).
      connectivity: 4 / 8 (per axial slice) or 6 / 18 / 26 (3D).
      overlap_cutoffs: fractions; detected when the overlap fraction is > cutoff.
      volume_cutoffs_ml: lesions smaller than the cutoff are not counted.
      cache: optional dict shared with ``preset_metrics`` calls on the same
        (gt, pred) pair, so components are labelled once per connectivity.

    Returns:
      ``(per_lesion, summary)`` DataFrames. ``per_lesion`` has
      ``PER_LESION_COLUMNS`` and one ``detected_overlap_<o>`` column per overlap
      cutoff; ``summary`` has ``SUMMARY_COLUMNS``, one row per cutoff pair
      (overlap cutoffs outer, volume cutoffs inner).
    """
    gt, pred = _as_volume(gt, "ground truth"), _as_volume(pred, "prediction")
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    if not voxel_volume_ml > 0:
        raise ValueError(f"voxel_volume_ml must be positive, got {voxel_volume_ml}")
    overlap_cutoffs = tuple(float(o) for o in overlap_cutoffs)
    volume_cutoffs_ml = tuple(float(v) for v in volume_cutoffs_ml)

    gt, pred, offset = crop_to_union(gt, pred)
    labels, sizes, inside = components(gt, pred, connectivity, cache, "gt")
    _, p_sizes, p_inside = components(pred, gt, connectivity, cache, "pred")
    volume = sizes * voxel_volume_ml
    fraction = inside / np.maximum(sizes, 1)
    p_volume = p_sizes * voxel_volume_ml
    p_fraction = p_inside / np.maximum(p_sizes, 1)

    centroid = _centroids(labels, sizes) + offset
    per_lesion = pd.DataFrame({
        "lesion_id": np.arange(1, sizes.size + 1), "voxels": sizes, "volume_ml": volume,
        "overlap_voxels": inside, "overlap_fraction": fraction,
        "centroid_slice": centroid[:, 0], "centroid_row": centroid[:, 1],
        "centroid_col": centroid[:, 2]})
    o = np.asarray(overlap_cutoffs)
    v = np.asarray(volume_cutoffs_ml)
    detected = fraction[None, :] > o[:, None]                       # (O, L)
    for i, cutoff in enumerate(overlap_cutoffs):
        per_lesion[detected_column(cutoff)] = detected[i]
    counted = volume[None, :] >= v[:, None] - _TOL_ML               # (V, L)
    n_lesions = counted.sum(axis=1)                                 # (V,)
    n_detected = detected.astype(np.int64) @ counted.T.astype(np.int64)   # (O, V)
    p_counted = p_volume[None, :] >= v[:, None] - _TOL_ML           # (V, P)
    p_false = p_fraction[None, :] <= o[:, None]                     # (O, P)
    fp = p_false.astype(np.int64) @ p_counted.T.astype(np.int64)    # (O, V)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n_lesions[None, :] > 0, n_detected / np.maximum(n_lesions, 1), np.nan)
    summary = pd.DataFrame({
        "overlap_cutoff": np.repeat(o, v.size), "volume_cutoff_ml": np.tile(v, o.size),
        "n_lesions": np.tile(n_lesions, o.size), "n_detected": n_detected.ravel(),
        "detection_rate": rate.ravel(), "fp_components": fp.ravel(),
        "n_pred_components": np.tile(p_counted.sum(axis=1), o.size)})
    return per_lesion, summary


# The presets are catalogued in ``catalogue`` (one definition, read by the CLIs too).
PRESETS = DETECTION_PRESETS


def _keep_large(mask: np.ndarray, connectivity: int, min_voxels: float, cache, key):
    """``mask`` without the components of at most ``min_voxels`` voxels, and its cache key."""
    if min_voxels <= 0:
        return mask, key
    labels, sizes, _ = components(mask, mask, connectivity, cache, key)
    keep = np.concatenate([[False], sizes > min_voxels])
    return keep[labels], (key, "larger than", float(min_voxels))


def preset_metrics(gt, pred, voxel_volume_ml: float, preset: str | DetectionPreset,
                   cache: dict | None = None) -> dict:
    """Lesion-wise counts, recall, precision and F1 under a challenge preset.

    TP / FN count ground-truth lesions (detected or not); FP counts predicted
    components that are not valid (more than ``max_outside`` outside the ground
    truth); precision = valid predicted components / all predicted components.
    Empty ground truth gives recall 1, no prediction precision 1 (WMH convention).
    ``cache``: a dict shared between calls on the same (gt, pred) pair.

    Returns:
      dict with the keys of ``PRESET_COLUMNS``.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    gt, pred = _as_volume(gt, "ground truth"), _as_volume(pred, "prediction")
    min_voxels = p.min_volume_mm3 / (voxel_volume_ml * 1000.0)
    gt, pred, _ = crop_to_union(gt, pred)
    gt, gt_key = _keep_large(gt, p.connectivity, min_voxels, cache, "gt")
    pred, pred_key = _keep_large(pred, p.connectivity, min_voxels, cache, "pred")
    p_labels, p_sizes, p_inside = components(pred, gt, p.connectivity, cache, pred_key)
    outside = 1.0 - p_inside / np.maximum(p_sizes, 1)
    valid = (p_inside > 0) & (outside <= p.max_outside)
    valid_voxels = np.concatenate([[False], valid])[p_labels]
    _, sizes, covered = components(gt, valid_voxels, p.connectivity, cache, gt_key)
    tp = int(np.count_nonzero(covered / np.maximum(sizes, 1) > p.gt_overlap))
    fn = int(sizes.size - tp)
    fp = int(p_sizes.size - np.count_nonzero(valid))
    recall = tp / sizes.size if sizes.size else 1.0
    precision = np.count_nonzero(valid) / p_sizes.size if p_sizes.size else 1.0
    if p.f1 == "lesion":
        denom = tp + (fp + fn) / 2
        f1 = tp / denom if denom else 1.0
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"preset": p.name, "connectivity": p.connectivity, "n_gt_lesions": int(sizes.size),
            "n_pred_components": int(p_sizes.size), "tp": tp, "fn": fn, "fp": fp,
            "recall": float(recall), "precision": float(precision), "f1": float(f1)}
