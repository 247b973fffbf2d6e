"""Manifests: CSV parsing, presets on fake folder trees, split assignment."""
import os

import pytest

from tfrecords_tools import manifest as mf


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\x1f\x8b")  # the layout builders only look at names


def test_csv_relative_paths_multi_labels_and_extra_columns(tmp_path):
    for name in ("a.nii.gz", "a_l1.nii.gz", "a_l2.nii.gz", "a_fast.nii.gz", "sub/b.nii.gz"):
        _touch(str(tmp_path / name))
    (tmp_path / "m.csv").write_text(
        "subject_id,image,label,split,tissue\n"
        "a,a.nii.gz, a_l1.nii.gz ; a_l2.nii.gz ,train,a_fast.nii.gz\n"
        "b,sub/b.nii.gz,,,\n")
    m = mf.read_manifest(str(tmp_path / "m.csv"))
    a, b = m.subjects
    assert a.image == str(tmp_path / "a.nii.gz")
    assert a.labels["mask"] == (str(tmp_path / "a_l1.nii.gz"), str(tmp_path / "a_l2.nii.gz"))
    assert a.label_dict() == {"mask": [str(tmp_path / "a_l1.nii.gz"),
                                       str(tmp_path / "a_l2.nii.gz")],
                              "tissue": [str(tmp_path / "a_fast.nii.gz")]}
    assert a.split == "train" and b.split is None and b.labels == {}
    assert not m.synthetic


def test_every_missing_file_is_reported_at_once(tmp_path):
    _touch(str(tmp_path / "a.nii.gz"))
    (tmp_path / "m.csv").write_text("subject_id,image,label\n"
                                    "a,a.nii.gz,gone1.nii.gz;gone2.nii.gz\n"
                                    "b,gone3.nii.gz,\n")
    with pytest.raises(mf.ManifestError) as err:
        mf.read_manifest(str(tmp_path / "m.csv"))
    text = str(err.value)
    assert "3 missing file(s)" in text
    for name in ("gone1.nii.gz", "gone2.nii.gz", "gone3.nii.gz"):
        assert name in text
    assert "\n" not in text


@pytest.mark.parametrize("content, message", [
    ("subject,image\na,a.nii\n", "missing column"),
    ("subject_id,image,colour\na,a.nii,red\n", "unknown column"),
    ("subject_id,image\na,x.nii\na,y.nii\n", "duplicate subject ids"),
    ("subject_id,image\nbad id,x.nii\n", "subject ids must be"),
])
def test_bad_manifests_name_the_problem(tmp_path, content, message):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(mf.ManifestError, match=message):
        mf.read_manifest(str(tmp_path / "m.csv"), check=False)


def test_atlas_r12_preset_on_fake_tree(tmp_path):
    root = tmp_path / "ATLAS_R1.2" / "standard_MNI"
    for site, subj, session, masks in [("Site1", "031768", "t01", ["_LesionSmooth_stx"]),
                                       ("Site1", "031769", "t01", ["_LesionSmooth_stx",
                                                                   "_LesionSmooth_1_stx"]),
                                       ("Site2", "031900", "t01", ["_LesionSmooth_stx"]),
                                       ("Site2", "031900", "t02", ["_LesionSmooth_stx"])]:
        folder = root / site / subj / session
        _touch(str(folder / f"{subj}_t1w_deface_stx.nii.gz"))
        for m in masks:
            _touch(str(folder / f"{subj}{m}.nii.gz"))
    m = mf.build_manifest("atlas_r12", str(tmp_path / "ATLAS_R1.2"))
    ids = [s.subject_id for s in m.subjects]
    assert ids == ["031768", "031769", "031900", "031900_t02"]
    assert len(m.subjects[1].labels["mask"]) == 2
    preset = mf.get_preset("atlas_r12")
    assert preset.skip_registration and preset.crop_top == 29
    split = mf.assign_splits(m, counts={"train": 3, "test": 1}, seed=0)
    assert sorted(s.split for s in split.subjects) == ["test", "train", "train", "train"]


def test_atlas_r12_subject_without_mask_is_an_error(tmp_path):
    _touch(str(tmp_path / "Site1" / "1" / "t01" / "1_t1w_deface_stx.nii.gz"))
    with pytest.raises(mf.ManifestError, match="without a lesion mask"):
        mf.build_manifest("atlas_r12", str(tmp_path))


def test_glob_preset(tmp_path):
    for s in ("s01", "s02"):
        _touch(str(tmp_path / s / "T1.nii.gz"))
        _touch(str(tmp_path / s / "lesion_a.nii.gz"))
    m = mf.build_manifest("glob", str(tmp_path), image_glob="*/T1.nii.gz",
                          label_glob="{subject}/lesion*.nii.gz", subject_regex=r"^([^/]+)/")
    assert [s.subject_id for s in m.subjects] == ["s01", "s02"]
    assert m.subjects[0].labels["mask"] == (str(tmp_path / "s01" / "lesion_a.nii.gz"),)
    with pytest.raises(mf.ManifestError, match="no label file matches"):
        mf.build_manifest("glob", str(tmp_path), image_glob="*/T1.nii.gz",
                          label_glob="{subject}/none*.nii.gz", subject_regex=r"^([^/]+)/")


def test_ms_and_oasis_layouts(tmp_path):
    _touch(str(tmp_path / "ms" / "patient01" / "patient01_T1W.nii.gz"))
    _touch(str(tmp_path / "ms" / "patient01" / "patient01_consensus_gt.nii.gz"))
    m = mf.build_manifest("ms_lesjak", str(tmp_path / "ms"))
    assert [s.subject_id for s in m.subjects] == ["patient01"]
    _touch(str(tmp_path / "ba" / "training-images" / "1000_3.nii.gz"))
    _touch(str(tmp_path / "ba" / "training-labels" / "1000_3_glm.nii.gz"))
    m = mf.build_manifest("oasis_ba", str(tmp_path / "ba"))
    assert [s.subject_id for s in m.subjects] == ["1000_3"]
    assert mf.get_preset("oasis_ba").crop_bottom == 50


def test_split_assignment_is_seeded_and_keeps_given_splits():
    subjects = tuple(mf.Subject(f"s{i:02d}", f"/x/{i}.nii", {}, "test" if i == 0 else None)
                     for i in range(10))
    m = mf.Manifest(subjects)
    a = mf.assign_splits(m, fractions={"train": 0.6, "val": 0.2, "test": 0.2}, seed=1)
    b = mf.assign_splits(m, fractions={"train": 0.6, "val": 0.2, "test": 0.2}, seed=1)
    c = mf.assign_splits(m, fractions={"train": 0.6, "val": 0.2, "test": 0.2}, seed=2)
    assert a == b and a != c
    assert a.subjects[0].split == "test"
    splits = [s.split for s in a.subjects[1:]]
    assert splits.count("train") == 5 and splits.count("val") == 2 and splits.count("test") == 2
    assert mf.parse_split_spec("train=200,test=104") == ({"train": 200, "test": 104}, None)
    assert mf.parse_split_spec("train=0.8,test=0.2") == (None, {"train": 0.8, "test": 0.2})
    with pytest.raises(mf.ManifestError):
        mf.assign_splits(m, counts={"train": 20, "test": 1})


def test_write_then_read_round_trip(tmp_path):
    for name in ("a.nii.gz", "l1.nii.gz", "l2.nii.gz"):
        _touch(str(tmp_path / name))
    m = mf.Manifest((mf.Subject("a", str(tmp_path / "a.nii.gz"),
                                {"mask": (str(tmp_path / "l1.nii.gz"),
                                          str(tmp_path / "l2.nii.gz"))}, "train"),),
                    synthetic=True)
    mf.write_manifest(m, str(tmp_path / "out" / "m.csv"))
    back = mf.read_manifest(str(tmp_path / "out" / "m.csv"))
    assert back.subjects == m.subjects and back.synthetic


def test_mask_source_depends_on_mask_mode(tmp_path):
    for name in ("a.nii.gz", "les.nii.gz", "ana.nii.gz"):
        _touch(str(tmp_path / name))
    (tmp_path / "m.csv").write_text("subject_id,image,label,anatomy\n"
                                    "a,a.nii.gz,les.nii.gz,ana.nii.gz\n")
    (tmp_path / mf.SYNTHETIC_MARKER).write_text("synthetic")
    m = mf.read_manifest(str(tmp_path / "m.csv"))
    s = m.subjects[0]
    assert s.label_dict("binary") == {"mask": [str(tmp_path / "les.nii.gz")]}
    assert s.label_dict("multiclass") == {"mask": [str(tmp_path / "ana.nii.gz")]}
    assert m.synthetic  # marker file beside the CSV (phantom cohorts)
