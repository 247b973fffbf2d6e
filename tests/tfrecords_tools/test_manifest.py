"""Manifests: CSV parsing, split assignment (presets: tests/tfrecords_tools/test_releases.py)."""
import dataclasses

import pytest

from tests.helpers import touch_nifti
from tfrecords_tools.manifests import manifest as mf


def test_csv_relative_paths_multi_labels_and_extra_columns(tmp_path):
    for name in ("a.nii.gz", "a_l1.nii.gz", "a_l2.nii.gz", "a_fast.nii.gz", "sub/b.nii.gz"):
        touch_nifti(tmp_path, name)
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
    touch_nifti(tmp_path, "a.nii.gz")
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
        touch_nifti(tmp_path, name)
    m = mf.Manifest((mf.Subject("a", str(tmp_path / "a.nii.gz"),
                                {"mask": (str(tmp_path / "l1.nii.gz"),
                                          str(tmp_path / "l2.nii.gz"))}, "train"),),
                    synthetic=True)
    mf.write_manifest(m, str(tmp_path / "out" / "m.csv"))
    back = mf.read_manifest(str(tmp_path / "out" / "m.csv"))
    assert back.subjects == m.subjects and back.synthetic


def test_mask_source_depends_on_mask_mode(tmp_path):
    for name in ("a.nii.gz", "les.nii.gz", "ana.nii.gz"):
        touch_nifti(tmp_path, name)
    (tmp_path / "m.csv").write_text("subject_id,image,label,anatomy\n"
                                    "a,a.nii.gz,les.nii.gz,ana.nii.gz\n")
    (tmp_path / mf.SYNTHETIC_MARKER).write_text("synthetic")
    m = mf.read_manifest(str(tmp_path / "m.csv"))
    s = m.subjects[0]
    assert s.label_dict("binary") == {"mask": [str(tmp_path / "les.nii.gz")]}
    assert s.label_dict("multiclass") == {"mask": [str(tmp_path / "ana.nii.gz")]}
    assert m.synthetic  # marker file beside the CSV (phantom cohorts)


def test_sessions_of_one_patient_share_a_split(tmp_path):
    """Several scans of one patient never straddle train and test, whatever the seed."""
    subjects = []
    for p in range(12):
        for t in range(1 + p % 3):
            subjects.append(mf.Subject(f"p{p:02d}_t{t}", f"/x/{p}_{t}.nii", {},
                                       patient_id=f"p{p:02d}"))
    m = mf.Manifest(tuple(subjects))
    for seed in range(20):
        out = mf.assign_splits(m, counts={"train": 16, "test": 8}, seed=seed)
        by_patient = {}
        for s in out.subjects:
            by_patient.setdefault(s.patient, set()).add(s.split)
        assert all(len(v) == 1 for v in by_patient.values()), seed
        assert 14 <= sum(s.split == "train" for s in out.subjects) <= 18
    # A patient with one scan given a split pulls its other scans along.
    given = mf.Manifest((dataclasses.replace(subjects[1], split="test"),) + tuple(subjects[2:]))
    out = mf.assign_splits(given, counts={"train": 16, "test": 7}, seed=0)
    assert {s.split for s in out.subjects if s.patient == "p01"} == {"test"}


def test_patient_id_column_round_trip_and_leak_check(tmp_path):
    for name in ("a1.nii.gz", "a2.nii.gz", "b.nii.gz"):
        touch_nifti(tmp_path, name)
    (tmp_path / "m.csv").write_text("subject_id,image,patient_id,split\n"
                                    "a_t01,a1.nii.gz,a,\na_t02,a2.nii.gz,a,\nb,b.nii.gz,,\n")
    m = mf.read_manifest(str(tmp_path / "m.csv"))
    assert [s.patient for s in m.subjects] == ["a", "a", "b"]
    mf.write_manifest(m, str(tmp_path / "out.csv"))
    assert mf.read_manifest(str(tmp_path / "out.csv")).subjects == m.subjects
    (tmp_path / "leak.csv").write_text("subject_id,image,patient_id,split\n"
                                       "a_t01,a1.nii.gz,a,train\na_t02,a2.nii.gz,a,test\n")
    with pytest.raises(mf.ManifestError, match="several splits.*'a'"):
        mf.read_manifest(str(tmp_path / "leak.csv"))


def test_huge_remainder_split_is_refused_unless_allowed():
    m = mf.Manifest(tuple(mf.Subject(f"s{i:04d}", f"/x/{i}.nii") for i in range(200)))
    counts = {"train": 67, "val": 10, "test": 10}
    with pytest.raises(mf.ManifestError, match="'test' would hold 123 of the 200"):
        mf.assign_splits(m, counts=counts)
    out = mf.assign_splits(m, counts=counts, allow_large_last_split=True)
    assert sum(s.split == "test" for s in out.subjects) == 123
    # Up to 10 % over the count (a few extra scans) is fine.
    small = mf.Manifest(m.subjects[:88])
    assert sum(s.split == "test" for s in mf.assign_splits(small, counts=counts).subjects) == 11


def test_subject_list_selects_and_may_set_splits(tmp_path):
    m = mf.Manifest(tuple(mf.Subject(f"s{i}", f"/x/{i}.nii") for i in range(6)))
    (tmp_path / "keep.csv").write_text("subject_id,split\ns1,\ns4,test\ns5,\n")
    out = mf.select_subjects(m, str(tmp_path / "keep.csv"))
    assert [(s.subject_id, s.split) for s in out.subjects] == [("s1", None), ("s4", "test"),
                                                               ("s5", None)]
    (tmp_path / "bad.csv").write_text("subject_id\ns1\ns9\ns1\n")
    with pytest.raises(mf.ManifestError, match=r"bad.csv.*duplicate ids \['s1'\].*'s9'"):
        mf.select_subjects(m, str(tmp_path / "bad.csv"))
