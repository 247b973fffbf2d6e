"""Test data never reaches training: one scan in two splits is refused by path and
warned about by content (docs/reliability.md, "Nothing leaked")."""
import os

import pytest

from tests.helpers import touch_nifti
from tfrecords_tools.conversion import pipeline
from tfrecords_tools.manifests import manifest as mf


def _write(tmp_path, rows):
    path = tmp_path / "m.csv"
    path.write_text("subject_id,image,split\n" + "".join(f"{r}\n" for r in rows))
    return str(path)


def test_one_image_in_two_splits_is_refused_before_anything_is_written(tmp_path):
    touch_nifti(tmp_path, "a.nii.gz")
    os.symlink(tmp_path / "a.nii.gz", tmp_path / "link.nii.gz")
    manifest = _write(tmp_path, ["s1,a.nii.gz,train", "s2,link.nii.gz,test"])
    with pytest.raises(mf.ManifestError, match=r"1 image file\(s\) listed for several subjects"
                                               r".*a.nii.gz \(s1 in train, s2 in test\)"):
        pipeline.convert(manifest, str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()


def test_identical_content_across_splits_is_warned(tmp_path):
    for name, content in [("a", b"same"), ("b", b"same"), ("c", b"same"), ("d", b"diff")]:
        (tmp_path / f"{name}.nii.gz").write_bytes(content)
    manifest = mf.read_manifest(_write(tmp_path, ["s1,a.nii.gz,train", "s2,b.nii.gz,test",
                                                  "s3,c.nii.gz,train", "s4,d.nii.gz,test"]))
    warnings = mf.check_split_leaks(manifest)
    assert len(warnings) == 1
    assert "subjects s1 (train), s2 (test), s3 (train) have identical images" in warnings[0]
    same_split = mf.read_manifest(_write(tmp_path, ["s1,a.nii.gz,train", "s2,b.nii.gz,train"]))
    assert mf.check_split_leaks(same_split) == []
