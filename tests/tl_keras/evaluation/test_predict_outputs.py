"""predict never replaces an input nor writes two scans to one output name
(docs/reliability.md, "Nothing lost")."""
import os

import pytest

from tests.helpers import touch_nifti


def _run(argv, capsys):
    from tl_keras import predict
    code = predict.main(["predict", "--model_dir=unused", *argv, "--noverbose"])
    return code, capsys.readouterr().err.strip().splitlines()


def test_output_equal_to_input_is_refused(tmp_path, capsys):
    touch_nifti(tmp_path, "scan.nii.gz")
    scan = tmp_path / "scan.nii.gz"
    before = scan.read_bytes()
    for extra in ([], ["--overwrite"]):
        code, err = _run([f"--input={scan}", f"--output={scan}", *extra], capsys)
        assert code == 1 and len(err) == 1, err
        assert err[0] == (f"tl_keras.predict: error: {scan}: the output would replace the "
                          f"input scan {scan}; choose another output path")
    assert scan.read_bytes() == before


def test_colliding_output_names_are_refused(tmp_path, capsys):
    scans, out = tmp_path / "scans", tmp_path / "out"
    touch_nifti(scans, "x.nii", "x.nii.gz")
    code, err = _run([f"--input_dir={scans}", f"--output_dir={out}"], capsys)
    assert code == 1 and len(err) == 1, err
    assert f"{out}/x_seg.nii.gz: both {scans}/x.nii and {scans}/x.nii.gz" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("inside", [False, True])
def test_output_dir_in_the_input_dir_is_refused(tmp_path, capsys, inside):
    """A rerun would read its own _seg files as scans."""
    scans = tmp_path / "scans"
    touch_nifti(scans, "a.nii.gz")
    out = scans / "seg" if inside else scans
    code, err = _run([f"--input_dir={scans}", f"--output_dir={out}"], capsys)
    assert code == 1 and len(err) == 1, err
    assert f"--output_dir {'is inside' if inside else 'is'} --input_dir {scans}" in err[0]
    assert os.listdir(scans) == ["a.nii.gz"]


def test_manifest_output_dir_holding_a_scan_is_refused(tmp_path, capsys):
    touch_nifti(tmp_path, "data/s1.nii.gz")
    manifest = tmp_path / "m.csv"
    manifest.write_text("subject_id,image\ns1,data/s1.nii.gz\n")
    code, err = _run([f"--manifest={manifest}", f"--output_dir={tmp_path}"], capsys)
    assert code == 1 and "--output_dir contains" in err[0], err
