"""Source-task and target labels: tissue classes, presence vectors, target masks.

* Tissue (4 classes): background, CSF, GM, WM, from a FSL FAST ``pveseg`` map
  (1 CSF, 2 GM, 3 WM) or, without FSL, the built-in fallback: brain mask = the
  registered template brain mask intersected with an intensity threshold, tissue
  classes by 3-class multi-Otsu thresholds (scikit-image) inside it.
* Presence (16 labels per axial slice): the brain (FSL BET mask, or the fallback
  brain mask) plus the 15 FSL FIRST structures, read by their FreeSurfer codes
  (so FreeSurfer aseg and SynthSeg maps serve as well). Without a structure map
  the approximate MNI ellipsoid atlas below stands in (images are in MNI space).
* Target masks: binary lesion (union of all mask files > 0) or multi-class
  anatomy through a label-mapping table ``label,class[,name]``.
"""
from __future__ import annotations

import csv

import numpy as np

from tl_common.cli import FlagError

TISSUE_CLASSES = ("background", "CSF", "GM", "WM")

# FreeSurfer codes of the 15 FSL FIRST structures, in the fixed presence order.
STRUCTURE_CODES = (10, 11, 12, 13, 16, 17, 18, 26, 49, 50, 51, 52, 53, 54, 58)
STRUCTURE_NAMES = (
    "Left-Thalamus", "Left-Caudate", "Left-Putamen", "Left-Pallidum", "Brain-Stem",
    "Left-Hippocampus", "Left-Amygdala", "Left-Accumbens-area",
    "Right-Thalamus", "Right-Caudate", "Right-Putamen", "Right-Pallidum",
    "Right-Hippocampus", "Right-Amygdala", "Right-Accumbens-area")
PRESENCE_LABELS = ("Brain",) + STRUCTURE_NAMES

# Approximate ellipsoids (centre, semi-axes; MNI mm, left hemisphere x < 0) of
# the structures. Used to paint phantom structures and as the presence fallback;
# right-hemisphere structures mirror x. Painted in this order (small ones last).
_LEFT_ELLIPSOIDS = {
    "Thalamus": ((-11.0, -18.0, 7.0), (7.0, 12.0, 8.0)),
    "Putamen": ((-25.0, 2.0, 0.0), (5.0, 13.0, 9.0)),
    "Caudate": ((-13.0, 12.0, 10.0), (4.0, 10.0, 8.0)),
    "Hippocampus": ((-27.0, -22.0, -14.0), (6.0, 15.0, 6.0)),
    "Amygdala": ((-23.0, -5.0, -19.0), (6.0, 6.0, 6.0)),
    "Pallidum": ((-19.0, -3.0, -1.0), (3.0, 6.0, 4.0)),
    "Accumbens-area": ((-10.0, 11.0, -8.0), (4.0, 4.0, 4.0)),
}
STRUCTURE_ELLIPSOIDS = [("Brain-Stem", (0.0, -28.0, -30.0), (10.0, 12.0, 20.0))]
for _name, (_c, _r) in _LEFT_ELLIPSOIDS.items():
    STRUCTURE_ELLIPSOIDS.append((f"Left-{_name}", _c, _r))
    STRUCTURE_ELLIPSOIDS.append((f"Right-{_name}", (-_c[0],) + _c[1:], _r))
STRUCTURE_ELLIPSOIDS = tuple(STRUCTURE_ELLIPSOIDS)


def paint_structures(shape, affine, brain: np.ndarray | None = None) -> np.ndarray:
    """An aseg-like int16 map of the ellipsoid atlas on a grid (``affine``: voxel -> MNI mm).

    Args:
      shape: (X, Y, Z) grid shape.
      affine: 4 x 4 voxel-to-MNI affine of the grid.
      brain: optional boolean mask the structures are restricted to.
    """
    codes = dict(zip(STRUCTURE_NAMES, STRUCTURE_CODES))
    out = np.zeros(shape, np.int16)
    inv = np.linalg.inv(affine)
    for name, centre, radii in STRUCTURE_ELLIPSOIDS:
        # Voxel bounding box of the ellipsoid, then an exact test inside it.
        corners = np.array([[centre[0] + sx * radii[0], centre[1] + sy * radii[1],
                             centre[2] + sz * radii[2], 1.0]
                            for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        vox = (inv @ corners.T)[:3]
        lo = np.clip(np.floor(vox.min(1)).astype(int), 0, shape)
        hi = np.clip(np.ceil(vox.max(1)).astype(int) + 1, 0, shape)
        if np.any(hi <= lo):
            continue
        idx = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)],
                                   indexing="ij"), -1)
        mm = idx @ affine[:3, :3].T + affine[:3, 3]
        inside = (((mm - centre) / radii) ** 2).sum(-1) <= 1.0
        box = out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        box[inside] = codes[name]
    if brain is not None:
        out[~brain] = 0
    return out


def tissue_from_fast(seg: np.ndarray) -> np.ndarray:
    """FAST ``pveseg`` (0 bg, 1 CSF, 2 GM, 3 WM) -> uint8 tissue classes (same codes).

    Raises:
      ValueError: labels outside 0..3 (the caller names the file).
    """
    seg = np.asarray(seg)
    bad = np.setdiff1d(np.unique(seg), np.arange(4))
    if bad.size:
        raise ValueError(f"tissue labels {bad[:5].tolist()} outside 0..3; expected a FAST "
                         "pveseg map (1 CSF, 2 GM, 3 WM)")
    return seg.astype(np.uint8)


def fallback_brain(image01: np.ndarray, template_mask: np.ndarray,
                   threshold: float = 0.05) -> np.ndarray:
    """Brain mask without BET: registered template mask and normalised intensity > threshold."""
    return np.asarray(template_mask, bool) & (image01 > threshold)


def fallback_tissue(image01: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Tissue classes without FAST: 3-class multi-Otsu on T1 intensities inside ``brain``.

    T1 contrast orders CSF < GM < WM, so the darkest class is CSF and the
    brightest WM. Returns uint8 0 (bg), 1 CSF, 2 GM, 3 WM.
    """
    from skimage.filters import threshold_multiotsu
    out = np.zeros(image01.shape, np.uint8)
    values = image01[brain]
    if values.size < 10 or np.ptp(values) == 0:
        return out
    thresholds = threshold_multiotsu(values, classes=3)
    out[brain] = (np.digitize(values, thresholds) + 1).astype(np.uint8)
    return out


def presence(structures: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """(Z, 16) float32 presence of brain + the 15 FIRST structures in each axial slice.

    Args:
      structures: (X, Y, Z) FreeSurfer/FIRST label map.
      brain: (X, Y, Z) boolean brain mask.
    """
    columns = [np.asarray(brain, bool).any(axis=(0, 1))]
    for code in STRUCTURE_CODES:
        columns.append((structures == code).any(axis=(0, 1)))
    return np.stack(columns, axis=1).astype(np.float32)


def binary_mask(volumes) -> np.ndarray:
    """Union (> 0) of one or more lesion masks -> uint8 {0, 1}."""
    out = None
    for vol in volumes:
        out = (vol > 0) if out is None else (out | (vol > 0))
    return out.astype(np.uint8)


def map_labels(volume: np.ndarray, mapping: dict) -> np.ndarray:
    """Apply a ``{original_label: class}`` table; unmapped labels become background 0."""
    out = np.zeros(volume.shape, np.uint8)
    for orig, cls in mapping.items():
        out[volume == int(orig)] = int(cls)
    return out


def read_label_mapping(path: str):
    """Read a label-mapping CSV with columns ``label,class`` and optional ``name``.

    Returns:
      (mapping, class_names): ``{label: class}`` and a tuple of class names
      indexed by class (``background`` for 0, ``class_k`` where no name is given).

    Raises:
      ValueError: missing columns, non-integer values, or a class < 0 or > 255.
    """
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"label", "class"} <= set(rows[0]):
        raise FlagError(f"{path}: expected a CSV with columns label,class[,name]")
    mapping, names = {}, {0: "background"}
    for n, row in enumerate(rows, start=2):
        try:
            label, cls = int(row["label"]), int(row["class"])
        except (TypeError, ValueError):
            raise FlagError(f"{path}: line {n}: label and class must be integers") from None
        if not 0 <= cls <= 255:
            raise FlagError(f"{path}: line {n}: class {cls} outside 0..255")
        mapping[label] = cls
        if row.get("name"):
            names.setdefault(cls, row["name"])
    num = max(mapping.values()) + 1
    return mapping, tuple(names.get(k, f"class_{k}") for k in range(num))
