"""Evaluation on each scan's own grid (``evaluate --space native``).

The network predicts slices of the pre-processed volume (registered to the MNI
template, resampled, axially cropped). The challenges score a segmentation on the
scan as it was acquired, so ``--space native`` maps every subject's predicted
slices back onto its native grid with the transform and geometry the conversion
stored (``subjects.csv``: ``transform_file``; the same inverse mapping
``tl_keras.predict`` writes with), and compares them with the subject's own label
files (``label_files``: the ``mask`` files, unioned) at the native voxel size.
Slices the pre-processing cropped away count as predicted background, as they
would for a challenge submission. Binary (lesion) targets only.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from tfrecords_tools import schema
from tfrecords_tools.scans.native import (load_prepared, load_volume, slices_to_template,
                                          template_to_native)
from tl_common.cli import UserError
from tl_keras.evaluation.collect import SubjectVolumes


class NativeSpaceError(UserError, ValueError):
    """A data set that cannot be evaluated on the native grids (message: one line)."""


def subject_records(data_dir: str) -> dict[str, dict]:
    """``subjects.csv`` rows of a converted data set by subject id."""
    path = os.path.join(data_dir, schema.SUBJECTS_CSV)
    if not os.path.exists(path):
        raise NativeSpaceError(f"{path}: missing; --space native needs the subjects.csv of "
                               "tfrecords_tools.convert")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return {row["subject_id"]: row for row in frame.to_dict("records")}


def _axial_axis(affine: np.ndarray) -> int:
    """The voxel axis closest to the inferior-superior world axis."""
    import nibabel as nib
    ornt = nib.orientations.io_orientation(np.asarray(affine))
    return int(np.flatnonzero(ornt[:, 0] == 2)[0])


def to_native(records: dict[str, dict], data_dir: str, vol: SubjectVolumes) -> SubjectVolumes:
    """``vol`` (template grid, binary) as ground truth and prediction on the subject's
    native grid, axial axis first; ``voxel_volume_ml`` the native voxel volume.

    Raises:
      NativeSpaceError: no transform or label files recorded, or a label file whose
        grid is not the scan's.
    """
    record = records.get(vol.subject_id)
    where = os.path.join(data_dir, schema.SUBJECTS_CSV)
    if not record or not record.get("transform_file"):
        raise NativeSpaceError(f"{where}: subject {vol.subject_id} has no transform_file; "
                               "--space native needs a data set converted from scans")
    masks = json.loads(record.get("label_files") or "{}").get("mask") or []
    if not masks:
        raise NativeSpaceError(f"{where}: subject {vol.subject_id} lists no mask files")
    prepared = load_prepared(os.path.join(data_dir, record["transform_file"]))
    present = np.flatnonzero(vol.present)
    template = slices_to_template(vol.pred[present], vol.first_slice + present,
                                  prepared.geometry["template_shape"], "label")
    pred = template_to_native(template, prepared.geometry, prepared.transform, "label") > 0
    gt = np.zeros(pred.shape, bool)
    for path in masks:
        data = np.asarray(load_volume(vol.subject_id, path, label=True).dataobj)
        if data.shape != gt.shape:
            raise NativeSpaceError(f"{path}: label grid {data.shape} is not the grid "
                                   f"{gt.shape} of subject {vol.subject_id}'s scan")
        gt |= data > 0
    affine = np.asarray(prepared.geometry["native_affine"], float)
    axis = _axial_axis(affine)
    gt, pred = (np.moveaxis(a, axis, 0).astype(np.uint8) for a in (gt, pred))
    voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    return SubjectVolumes(vol.subject_id, 0, gt, pred, np.ones(gt.shape[0], bool), voxel_ml)
