"""Native-space write-back: phantom labels survive preprocess -> write_native."""
import os

import nibabel as nib
import numpy as np
import pytest

from tests.helpers import dice
from tfrecords_tools.scans import preprocess as pp
from tfrecords_tools.synthetic import phantoms

RES = 4.0


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    d = tmp_path_factory.mktemp("native")
    row = phantoms.write_subject(phantoms.synthesise(5, 0, "stroke", RES), str(d), "synthetic000")
    cfg = pp.PreprocessConfig.for_resolution(RES, crop_top=12, crop_bottom=12,
                                             mask_mode="multiclass",
                                             label_mapping={k: k for k in range(1, 7)})
    res = pp.preprocess_subject("synthetic000", row["image"], {"mask": [row["anatomy"]]}, cfg,
                                str(d / "transforms"))
    # Write-back from the saved transform and geometry (as for converted subjects).
    prepared = pp.load_prepared(res.transform_file, cfg)
    return d, row, res, prepared


def test_labels_round_trip_to_native(round_trip):
    d, row, res, prepared = round_trip
    out = pp.write_native(res.mask, prepared, str(d / "back.nii.gz"))
    back, truth = nib.load(out), nib.load(row["anatomy"])
    assert back.shape == truth.shape
    np.testing.assert_array_equal(back.affine, truth.affine)
    a, b = np.asarray(back.dataobj), np.asarray(truth.dataobj)
    assert dice(a > 0, b > 0) >= 0.95
    for k in range(1, 7):
        assert dice(a == k, b == k) >= 0.95, k
    assert not [f for f in os.listdir(d) if f.startswith(".tmp")]


def test_probabilities_and_dropped_slices(round_trip):
    d, row, res, prepared = round_trip
    assert prepared.slice_indices[0] == 3 and prepared.slice_indices[-1] == 48 - 3 - 1
    onehot = np.eye(7, dtype=np.float32)[res.mask]
    out = pp.write_native(onehot, prepared, str(d / "prob.nii.gz"), kind="prob")
    prob = np.asarray(nib.load(out).dataobj)
    label = np.asarray(nib.load(row["anatomy"]).dataobj)
    assert prob.shape == label.shape + (7,)
    np.testing.assert_allclose(prob.sum(-1), 1.0, atol=1e-5)
    assert dice(prob.argmax(-1) > 0, label > 0) >= 0.95
    # Everything above the kept slices (dropped at the top) is background.
    top = pp.write_native(np.ones_like(res.mask), prepared, str(d / "ones.nii.gz"))
    ones = np.asarray(nib.load(top).dataobj)
    assert 0 < ones.mean() < 1


def test_shape_mismatch_is_rejected(round_trip):
    d, _, res, prepared = round_trip
    with pytest.raises(ValueError):
        pp.write_native(res.mask[1:], prepared, str(d / "bad.nii.gz"))


def test_prepare_scan_matches_preprocess_subject(round_trip):
    d, row, _, _ = round_trip
    cfg = pp.PreprocessConfig.for_resolution(RES, crop_top=12, skip_registration=True)
    prepared = pp.prepare_scan(row["image"], cfg, work_dir=str(d / "work"))
    res = pp.preprocess_subject("x", row["image"], {}, cfg, None)
    np.testing.assert_array_equal(prepared.slices, res.image)
    np.testing.assert_array_equal(prepared.slice_indices, res.slice_indices)
    assert prepared.subject_id == "synthetic000_T1w"
    assert os.path.exists(d / "work" / "synthetic000_T1w.tfm")
    out = pp.write_native(np.zeros(prepared.slices.shape, np.uint8), prepared,
                          str(d / "zeros.nii.gz"))
    assert nib.load(out).shape == nib.load(row["image"]).shape


def test_oblique_scan_round_trip(tmp_path):
    """A scan stored with an oblique (rotated, RAS-permuted) affine comes back on its own grid."""
    ph = phantoms.synthesise(6, 0, "ms", RES)
    angle = np.deg2rad(12.0)
    rot = np.eye(4)
    rot[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                   [0, 0, 1]]
    # Store as (y, x, z) with a rotated affine: reorientation and direction both matter.
    affine = rot @ ph.affine[:, [1, 0, 2, 3]]
    data = {"image": ph.image.transpose(1, 0, 2), "anatomy": ph.anatomy.transpose(1, 0, 2)}
    paths = {}
    for key, array in data.items():
        paths[key] = str(tmp_path / f"{key}.nii.gz")
        nib.save(nib.Nifti1Image(array, affine), paths[key])
    cfg = pp.PreprocessConfig.for_resolution(RES, mask_mode="multiclass",
                                             label_mapping={k: k for k in range(1, 7)})
    res = pp.preprocess_subject("oblique", paths["image"], {"mask": [paths["anatomy"]]}, cfg,
                                str(tmp_path / "tfm"))
    prepared = pp.load_prepared(res.transform_file, cfg)
    back = nib.load(pp.write_native(res.mask, prepared, str(tmp_path / "back.nii.gz")))
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    a, b = np.asarray(back.dataobj), data["anatomy"]
    assert back.shape == b.shape and dice(a > 0, b > 0) >= 0.95
