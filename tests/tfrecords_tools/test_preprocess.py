"""Pre-processing: config, clip/normalise, slice cropping, and every bad input."""
import gzip
import json

import nibabel as nib
import numpy as np
import pytest

from tfrecords_tools.errors import InputError
from tfrecords_tools.scans import preprocess as pp, registration as reg

RES = 4.0  # 50 x 59 x 48 template grid: fast, and registration is skipped here


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """The 4 mm template written as a scan already in MNI space (LAS storage order)."""
    d = tmp_path_factory.mktemp("scan")
    tpl = reg.template_image(RES)
    img = nib.as_closest_canonical(tpl)
    flip = np.diag([-1.0, 1, 1, 1])
    flip[0, 3] = img.shape[0] - 1
    las = nib.Nifti1Image((img.get_fdata()[::-1] * 1000).astype(np.float32), img.affine @ flip)
    path = str(d / "mni.nii.gz")
    nib.save(las, path)
    return path, las


def _cfg(**kw):
    return pp.PreprocessConfig.for_resolution(RES, skip_registration=True, **kw)


def _save(tmp_path, name, data, affine):
    path = str(tmp_path / name)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def test_config_round_trip_and_validation():
    cfg = pp.PreprocessConfig.for_resolution(RES, crop_top=29, mask_mode="multiclass",
                                             label_mapping={3: 1, 7: 2})
    assert cfg.slice_size == 64 and pp.PreprocessConfig().slice_size == 256
    again = pp.PreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.num_mask_classes == 3
    assert cfg.crop_slices() == (7, 0)  # 29 mm / 4 mm, rounded half up
    for bad in (dict(clip_percentiles=(99, 1)), dict(mask_mode="multiclass"),
                dict(slice_size=32), dict(crop_top=200), dict(tissue_source="x")):
        with pytest.raises(ValueError):
            pp.PreprocessConfig(resolution=RES, **{"slice_size": 64, **bad})
    with pytest.raises(ValueError):
        pp.PreprocessConfig.from_dict({"resolution": 1.0, "nonsense": 1})


def test_normalise_clips_to_percentiles():
    rng = np.random.default_rng(0)
    vol = np.zeros((20, 20, 20), np.float32)
    vol[5:15, 5:15, 5:15] = rng.uniform(100, 200, (10, 10, 10))
    vol[6, 6, 6], vol[7, 7, 7] = 1e6, -1e6  # outliers are clipped away
    out = pp.normalise(vol, (1, 99), "nonzero")
    inside = vol[5:15, 5:15, 5:15]
    lo, hi = np.percentile(inside[inside != 0], (1, 99))
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    mid = (inside > lo) & (inside < hi)
    np.testing.assert_allclose(out[5:15, 5:15, 5:15][mid], (inside[mid] - lo) / (hi - lo),
                               rtol=1e-5, atol=1e-5)
    assert np.mean(out[5:15, 5:15, 5:15] == 1.0) == pytest.approx(0.01, abs=0.002)
    # "volume": the empty field dominates, so the low percentile is 0.
    assert pp.normalise(vol, (1, 99), "volume")[0, 0, 0] == 0.0
    assert not pp.normalise(np.zeros((4, 4, 4)), (1, 99)).any()


def test_to_slices_pads_centred():
    vol = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) + 1
    out = pp.to_slices(vol, [1, 3], 6)
    assert out.shape == (2, 6, 6)
    np.testing.assert_array_equal(out[1, 2:4, 1:4], vol[:, :, 3])
    assert out.sum() == vol[:, :, [1, 3]].sum()


def test_slice_cropping_counts(scan):
    path, _ = scan
    cfg = _cfg(crop_top=29, crop_bottom=50)  # 7 and 13 (12.5 half up) slices at 4 mm
    res = pp.preprocess_subject("s1", path, {}, cfg, None)
    assert res.image.shape == (48 - 7 - 13, 64, 64)
    np.testing.assert_array_equal(res.slice_indices, np.arange(13, 48 - 7))
    assert res.presence.shape == (28, 16) and res.tissue.shape == res.image.shape
    assert res.mask is None and res.voxel_size == (RES, RES, RES)
    assert 0.0 <= res.image.min() and res.image.max() == 1.0
    with pytest.raises(ValueError, match="unknown label kinds"):
        pp.preprocess_subject("s1", path, {"anatomy": [path]}, cfg, None)


def test_labels_union_mapping_and_saved_geometry(scan, tmp_path):
    path, las = scan
    a, b = np.zeros(las.shape, np.uint8), np.zeros(las.shape, np.uint8)
    a[20:25, 20:25, 20:25], b[30:33, 30:33, 20:25] = 1, 7
    files = [_save(tmp_path, "a.nii.gz", a, las.affine), _save(tmp_path, "b.nii.gz", b, las.affine)]
    res = pp.preprocess_subject("s2", path, {"mask": files}, _cfg(), str(tmp_path / "tfm"))
    assert res.mask.sum() == 125 + 45 and res.mask.max() == 1
    multi = pp.preprocess_subject("s2", path, {"mask": files[1:]}, _cfg(
        mask_mode="multiclass", label_mapping={7: 2}), None)
    assert np.bincount(multi.mask.ravel()).tolist()[1:] == [0, 45]
    geometry = json.load(open(tmp_path / "tfm" / "s2.geometry.json"))
    assert geometry["native_axcodes"] == "LAS" and geometry["native_shape"] == list(las.shape)
    assert reg.read_transform(res.transform_file).GetMatrix() == (1, 0, 0, 0, 1, 0, 0, 0, 1)


def _bad_inputs(tmp_path, las):
    """(label kind or None, path, expected problem) for every rejected input."""
    shape, aff = las.shape, las.affine
    data = np.asarray(las.dataobj)
    raw = gzip.compress(nib.Nifti1Image(data, aff).to_bytes())
    trunc = tmp_path / "truncated.nii.gz"
    trunc.write_bytes(raw[: len(raw) // 2])
    nan = data.copy()
    nan[10, 10, 10] = np.nan
    frac = np.zeros(shape, np.float32)
    frac[1, 1, 1] = 0.5
    shifted = aff.copy()
    shifted[0, 3] += 2.0
    far = aff.copy()
    far[:3, 3] += 1000.0
    return [
        (None, str(trunc), "truncated"),
        (None, str(tmp_path / "missing.nii.gz"), "not found"),
        (None, _save(tmp_path, "4d.nii.gz", np.stack([data, data], -1), aff), "4D"),
        (None, _save(tmp_path, "nan.nii.gz", nan, aff), "non-finite"),
        ("mask", _save(tmp_path, "shape.nii.gz", np.zeros(shape[:2] + (5,), np.uint8), aff),
         "does not match"),
        ("mask", _save(tmp_path, "affine.nii.gz", np.zeros(shape, np.uint8), shifted),
         "does not match"),
        ("mask", _save(tmp_path, "frac.nii.gz", frac, aff), "non-integer"),
        (None, _save(tmp_path, "zeros.nii.gz", np.zeros(shape, np.float32), aff),
         "the image is constant (every voxel is 0)"),
        (None, _save(tmp_path, "far.nii.gz", data, far), "empty brain"),
        # Voxel sizes ten times too large / forty times too small in the header.
        (None, _save(tmp_path, "10mm.nii.gz", data, np.diag([2.5, 2.5, 2.5, 1]) @ aff),
         "implausible head size 360 x 450 x 390 mm from the header's voxel size 10 x 10 x 10"),
        (None, _save(tmp_path, "01mm.nii.gz", data, np.diag([0.025, 0.025, 0.025, 1]) @ aff),
         "implausible head size 4 x 5 x 4 mm from the header's voxel size 0.1 x 0.1 x 0.1"),
        (None, _save(tmp_path, "upside_down.nii.gz", data[:, ::-1, ::-1].copy(), aff),
         "the scan correlates 0.25 with the template"),
        ("mask", _save(tmp_path, "negative.nii.gz", -np.ones(shape, np.int16), aff),
         "voxels with negative labels"),
    ]


def test_every_bad_input_raises_input_error(scan, tmp_path):
    path, las = scan
    for kind, bad, problem in _bad_inputs(tmp_path, las):
        image, labels = (bad, {}) if kind is None else (path, {kind: [bad]})
        with pytest.raises(InputError) as info:
            pp.preprocess_subject("subj7", image, labels, _cfg(), None)
        line = str(info.value)
        assert line.startswith(f"subject subj7: {bad}: ") and "\n" not in line, line
        assert problem in line, line


def test_unmapped_anatomy_labels_are_counted_and_reported(scan, tmp_path, capfd):
    path, las = scan
    anatomy = np.zeros(las.shape, np.uint8)
    anatomy[20:25, 20:25, 20:25], anatomy[30:33, 30:33, 20:25] = 7, 9
    files = [_save(tmp_path, "anat.nii.gz", anatomy, las.affine)]
    res = pp.preprocess_subject("s3", path, {"mask": files}, _cfg(
        mask_mode="multiclass", label_mapping={7: 1}), None)
    assert res.checks["unmapped_label_voxels"] == 45  # label 9: 3 x 3 x 5 voxels
    assert res.checks["template_correlation"] > 0.99
    err = capfd.readouterr().err
    assert f"warning: subject s3: {files[0]}: labels not in --label_mapping" in err
    assert "9: 45" in err


def test_itk_errors_become_one_reason():
    import SimpleITK as sitk
    from tfrecords_tools.errors import itk_reason
    tiny = sitk.Image(2, 2, 2, sitk.sitkFloat32)
    with pytest.raises(RuntimeError) as info:
        reg.register(reg.template_reference(RES), tiny)
    assert "\n" in str(info.value).strip()  # SimpleITK's multi-line report
    reason = itk_reason(info.value)
    assert "\n" not in reason and ".cxx" not in reason and reason, reason


def test_4d_with_one_volume_is_accepted(scan, tmp_path):
    _, las = scan
    path = _save(tmp_path, "one.nii.gz", np.asarray(las.dataobj)[..., None], las.affine)
    assert pp.preprocess_subject("s", path, {}, _cfg(), None).image.shape[0] == 48


@pytest.mark.parametrize("affine", [np.diag([-2.0, 3, 1, 1]), np.eye(4),
                                    np.array([[0, 0, -1.0, 0], [1.0, 0, 0, 0],
                                              [0, -2.0, 0, 0], [0, 0, 0, 1]])])
def test_voxel_index_follows_the_ras_reorientation(affine):
    shape = (4, 5, 6)
    index = np.arange(1, 121, dtype=np.int32).reshape(shape, order="F")
    expected = nib.orientations.apply_orientation(
        index, nib.orientations.io_orientation(affine)).transpose(2, 1, 0)
    np.testing.assert_array_equal(reg.voxel_index_kji(shape, affine), expected)
