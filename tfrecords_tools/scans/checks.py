"""Plausibility checks of a scan and its labels, refused with the figure that decided.

A scan can load and register without error and still be garbage: a header
whose voxel sizes are ten times too large (or small), a head the registration
did not find, label maps with negative or unmapped labels. These checks run
per subject during pre-processing (docs/conversion.md, "Reliability"):

* before registration: a constant image, and the head's extent in mm (from the
  header's voxel sizes) outside ``HEAD_EXTENT_MM``;
* after registration: the Pearson correlation of the registered scan with the
  template inside the template brain below ``MIN_TEMPLATE_CORRELATION``
  (measured on the phantoms at 4 mm: 0.87 registered, 0.22 for a head rotated
  by 30/20 degrees that the registration missed);
* labels: negative values are refused; labels that ``label_mapping`` does not
  map are counted and reported, since they become background.
"""
from __future__ import annotations

import sys

import numpy as np

from tfrecords_tools.errors import InputError

# The largest extent of a human head over the three axes, neck included.
HEAD_EXTENT_MM = (100.0, 400.0)
MIN_TEMPLATE_CORRELATION = 0.3
# Foreground of a scan: above this fraction of its 99th intensity percentile.
_FOREGROUND = 0.1


def check_intensities(subject: str, path: str, data: np.ndarray) -> None:
    """Refuse a constant image (all zeros included): there is nothing to register."""
    lo, hi = float(np.min(data)), float(np.max(data))
    if lo == hi:
        raise InputError(subject, path, f"the image is constant (every voxel is {lo:g}); "
                         "not a scan")


def head_extent_mm(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Extent in mm along the three voxel axes of the head (foreground bounding box)."""
    data = np.asarray(data)
    level = _FOREGROUND * float(np.percentile(data, 99))
    voxel = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    fg = data > level
    extent = []
    for axis in range(3):
        present = np.flatnonzero(fg.any(axis=tuple(a for a in range(3) if a != axis)))
        extent.append((present[-1] - present[0] + 1) if present.size else 0)
    return np.asarray(extent, float) * voxel


def check_head_size(subject: str, path: str, data: np.ndarray, affine: np.ndarray) -> list:
    """Refuse a head whose size (from the header's voxel sizes) is implausible.

    Returns:
      The head's extent in mm along the voxel axes.
    """
    extent = head_extent_mm(data, affine)
    lo, hi = HEAD_EXTENT_MM
    if not lo <= extent.max() <= hi:
        voxel = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
        raise InputError(subject, path, (
            f"implausible head size {' x '.join(f'{e:.0f}' for e in extent)} mm from the "
            f"header's voxel size {' x '.join(f'{v:g}' for v in voxel)} mm (a head spans "
            f"{lo:.0f}-{hi:.0f} mm); check the voxel sizes (pixdim) in the header"))
    return [round(float(e), 1) for e in extent]


def template_correlation(volume: np.ndarray, template: np.ndarray, brain: np.ndarray) -> float:
    """Pearson correlation of a registered scan with the template inside the brain."""
    a = np.asarray(volume, np.float64)[brain]
    b = np.asarray(template, np.float64)[brain]
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def check_registration(subject: str, path: str, correlation: float) -> None:
    """Refuse a registered scan that does not look like the template."""
    if correlation < MIN_TEMPLATE_CORRELATION:
        raise InputError(subject, path, (
            f"after registration the scan correlates {correlation:.2f} with the template "
            f"inside the brain (below {MIN_TEMPLATE_CORRELATION}); mis-registered, or not a "
            "T1 head scan: check the header's orientation and voxel sizes"))


def check_label_values(subject: str, path: str, data: np.ndarray) -> None:
    """Refuse negative labels (a lesion -1 would otherwise vanish as background)."""
    negative = int(np.count_nonzero(np.asarray(data) < 0))
    if negative:
        raise InputError(subject, path, f"{negative} voxels with negative labels (minimum "
                         f"{np.min(data):g}); labels must be >= 0")


def unmapped_labels(data: np.ndarray, mapping: dict) -> dict[int, int]:
    """``{label: voxels}`` of the non-zero labels that ``mapping`` does not map."""
    values, counts = np.unique(np.asarray(data), return_counts=True)
    known = {int(k) for k in mapping}
    return {int(v): int(c) for v, c in zip(values, counts) if v != 0 and int(v) not in known}


def report_unmapped(subject: str, path: str, anatomy: np.ndarray, mapping: dict) -> int:
    """Count kept voxels whose anatomy label ``mapping`` does not map; print them.

    Returns:
      The number of such voxels (recorded per subject in subjects.csv).
    """
    unmapped = unmapped_labels(anatomy, mapping)
    if unmapped:
        listed = ", ".join(f"{k}: {v}" for k, v in sorted(unmapped.items()))
        problem = f"labels not in --label_mapping became background (label: voxels) {listed}"
        print(f"warning: {InputError(subject, path, problem)}", file=sys.stderr, flush=True)
    return int(sum(unmapped.values()))
