"""Conversion outputs never land in, on or around their inputs (docs/reliability.md)."""
import os

import pytest

from tests.helpers import touch_nifti
from tfrecords_tools.conversion import outdir, pipeline
from tfrecords_tools.manifests import releases


def _manifest(tmp_path):
    touch_nifti(tmp_path, "study/scans/s1.nii.gz", "study/scans/s2.nii.gz")
    path = tmp_path / "study" / "manifest.csv"
    path.write_text("subject_id,image,split\ns1,scans/s1.nii.gz,train\ns2,scans/s2.nii.gz,test\n")
    return path


@pytest.mark.parametrize("out, how", [("study", "is the manifest's folder"),
                                      ("study/out", "is inside the manifest's folder"),
                                      ("study/scans", "is the manifest's folder")])
def test_out_dir_around_the_manifest_is_refused(tmp_path, out, how):
    manifest = _manifest(tmp_path)
    before = sorted(os.listdir(tmp_path / "study"))
    with pytest.raises(outdir.OutDirError, match="--out_dir (is|is inside|contains)"):
        pipeline.convert(str(manifest), str(tmp_path / out), progress=False)
    assert sorted(os.listdir(tmp_path / "study")) == before


def test_out_dir_inside_the_preset_root_is_refused(tmp_path):
    touch_nifti(tmp_path, "atlas/Site1/031768/t01/031768_t1w_deface_stx.nii.gz",
                "atlas/Site1/031768/t01/031768_LesionSmooth_stx.nii.gz")
    manifest = releases.build_manifest("atlas_r12", str(tmp_path / "atlas"))
    out = tmp_path / "atlas" / "converted"
    with pytest.raises(outdir.OutDirError, match=r"--out_dir is inside --root"):
        pipeline.convert(manifest, str(out), progress=False)
    assert not out.exists()


def test_convert_images_out_dir_equal_to_image_dir_is_refused(tmp_path, capsys):
    from tfrecords_tools import convert_images
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"x")
    code = convert_images.main(["convert_images", f"--image_dir={images}",
                                f"--out_dir={images}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "--out_dir is --image_dir" in err[0], err
    assert os.listdir(images) == ["a.png"]
