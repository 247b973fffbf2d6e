"""tl_keras.predict: a phantom scan segmented and written back on its native grid."""
import os
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.helpers import (dataset_json, dice, export_threshold_model, needs_mount,
                           read_only_error_lines)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from tfrecords_tools.synthetic.phantoms import make_cohort
    from tfrecords_tools.scans.config import PreprocessConfig
    root = tmp_path_factory.mktemp("predict")
    manifest = make_cohort(str(root / "cohort"), 1, lesions="stroke", seed=0, resolution=4.0)
    row = pd.read_csv(manifest).iloc[0]
    config = PreprocessConfig.for_resolution(4.0)
    model_dir = root / "model"
    # Bias 0: class 1 where the normalised intensity is above 0.5.
    export_threshold_model(model_dir, size=config.slice_size,
                           dataset_meta={"preprocessing": config.to_dict(), "channels": 1})
    return {"root": root, "image": row["image"], "label": row["label"],
            "model_dir": str(model_dir), "config": config}


def _run_cli(argv):
    from tl_keras import predict
    return predict.main(["predict", *argv, "--noverbose"])


def test_single_scan_native_geometry(phantom, tmp_path):
    out, prob = tmp_path / "seg.nii.gz", tmp_path / "prob.nii.gz"
    assert _run_cli([f"--model_dir={phantom['model_dir']}", f"--input={phantom['image']}",
                     f"--output={out}", f"--probabilities={prob}"]) == 0
    native = nib.load(phantom["image"])
    seg, p = nib.load(str(out)), nib.load(str(prob))
    assert seg.shape == native.shape and p.shape == native.shape + (2,)
    np.testing.assert_allclose(seg.affine, native.affine)
    np.testing.assert_allclose(p.affine, native.affine)
    labels = np.asarray(seg.dataobj)
    assert set(np.unique(labels)) == {0, 1}
    np.testing.assert_allclose(np.asarray(p.dataobj).sum(-1), 1.0, atol=1e-4)
    # The model thresholds the pre-processed intensity at 0.5; the same
    # threshold of the native scan (clipped to its 1st..99th percentile over
    # non-zero voxels) must land on about the same voxels.
    data = native.get_fdata()
    lo, hi = np.percentile(data[data != 0], [1, 99])
    expected = (np.clip(data, lo, hi) - lo) / (hi - lo) > 0.5
    assert 0.02 < labels.mean() < 0.5
    assert dice(labels > 0, expected) > 0.9  # measured 0.96


def test_ground_truth_round_trip_through_predict(phantom, tmp_path):
    """Slices predicted as the pre-processed ground truth come back as the native label."""
    from tfrecords_tools.scans.preprocess import preprocess_subject
    from tl_keras.evaluation.predict import PredictJob, predict_scans
    label_path = phantom["label"]
    res = preprocess_subject("synthetic000", phantom["image"], {"mask": [label_path]},
                             phantom["config"], None)

    def oracle(slices):
        np.testing.assert_allclose(slices, res.image, atol=1e-5)  # same pre-processing
        return np.eye(2, dtype=np.float32)[res.mask]

    out = tmp_path / "gt_back.nii.gz"
    predict_scans(phantom["model_dir"], [PredictJob(phantom["image"], str(out))],
                  verbose=False, predict_fn=oracle)
    back, truth = nib.load(str(out)), nib.load(label_path)
    assert back.shape == truth.shape
    np.testing.assert_array_equal(back.affine, truth.affine)
    a, b = np.asarray(back.dataobj) > 0, np.asarray(truth.dataobj) > 0
    assert b.any() and dice(a, b) >= 0.95


def test_batch_mode_resumes(phantom, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(phantom["image"], scans / "subjA.nii.gz")
    out_dir = tmp_path / "out"
    args = [f"--model_dir={phantom['model_dir']}", f"--input_dir={scans}",
            f"--output_dir={out_dir}", "--save_probabilities"]
    assert _run_cli(args) == 0
    assert sorted(os.listdir(out_dir)) == ["subjA_prob.nii.gz", "subjA_seg.nii.gz"]
    stamp = os.path.getmtime(out_dir / "subjA_seg.nii.gz")
    assert _run_cli(args) == 0  # finished outputs are skipped
    assert os.path.getmtime(out_dir / "subjA_seg.nii.gz") == stamp
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"subject_id": ["s1"], "image": ["scans/subjA.nii.gz"]}).to_csv(manifest)
    from tl_keras.evaluation.predict import jobs_from_manifest
    job, = jobs_from_manifest(str(manifest), str(out_dir), False)
    assert job.image == str(scans / "subjA.nii.gz") and job.output.endswith("s1_seg.nii.gz")


@pytest.mark.parametrize("dataset_meta, size, message", [
    (None, 64, "no 'preprocessing'"),
    ({}, 64, "no 'preprocessing'"),
    ({"preprocessing": {"kind": "tiny-test"}, "synthetic": True}, 64, "tiny-test"),
    ({"preprocessing": {"resolution": 4.0, "slice_size": 64, "mystery": 1}}, 64, "unknown"),
    ({"preprocessing": {"resolution": 4.0, "slice_size": 64, "mask_mode": "x"}}, 64,
     "mask_mode"),
    ({"preprocessing": {"resolution": 4.0, "slice_size": 64}}, 32, "takes"),
])
def test_unreproducible_models_are_refused(dataset_meta, size, message):
    from tl_keras.evaluation.predict import UnreproducibleError, preprocess_config_for
    from tl_keras.models.export import ExportMeta
    from tfrecords_tools.dataset_meta import DatasetMeta
    data = None if dataset_meta is None else DatasetMeta.from_dict(dataset_json(64, **dataset_meta))
    meta = ExportMeta(image_size=(size, size), input_channels=1, num_classes=2,
                      dataset_meta=data)
    with pytest.raises(UnreproducibleError, match=message) as info:
        preprocess_config_for(meta, "runs/m")
    assert "runs/m: cannot reproduce" in str(info.value) and "\n" not in str(info.value)


def test_cli_refusal_is_one_line(tmp_path, capsys):
    model_dir = tmp_path / "tiny_model"
    export_threshold_model(model_dir, dataset_meta={"preprocessing": {"kind": "tiny-test"}})
    assert _run_cli([f"--model_dir={model_dir}", "--input=x.nii.gz",
                     "--output=y.nii.gz"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tl_keras.predict: error:")
    assert "tiny-test" in err[0]
    assert _run_cli([f"--model_dir={model_dir}", "--input=x.nii.gz"]) == 1
    assert "--input needs --output" in capsys.readouterr().err


def test_constant_scan_is_refused_in_one_line(phantom, tmp_path, capsys):
    native = nib.load(phantom["image"])
    zero = tmp_path / "zero.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(native.shape, np.float32), native.affine), str(zero))
    assert _run_cli([f"--model_dir={phantom['model_dir']}", f"--input={zero}",
                     f"--output={tmp_path / 'seg.nii.gz'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tl_keras.predict: error: subject zero: {zero}: the image is constant "
                   "(every voxel is 0); not a scan"]
    assert not os.path.exists(tmp_path / "seg.nii.gz")


@needs_mount
def test_read_only_output_is_one_line(phantom, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    lines = read_only_error_lines("tl_keras.predict", [
        f"--model_dir={phantom['model_dir']}", f"--input={phantom['image']}",
        f"--output={ro / 'seg.nii.gz'}", "--noverbose"], ro)
    # The file asked for, not the temporary name it is written under.
    assert lines == [f"tl_keras.predict: error: {ro / 'seg.nii.gz'}: Read-only file system"]
