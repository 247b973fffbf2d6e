"""Presets on folder trees that mimic each public release (names, nesting, odd files).

The layouts, and where they were checked, are in docs/conversion.md (Presets).
Files are empty stand-ins: the builders only look at names.
"""
import dataclasses
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import ROOT, touch_nifti
from tfrecords_tools.manifests import manifest as mf, releases
from tfrecords_tools.scans import labels

ODD = (".DS_Store", "README.txt", "readme.md", "notes.json")


def atlas_r12_tree(root):
    """ATLAS R1.2: <site>/<subject>/t0N/, several masks per session, a re-scanned patient."""
    base = os.path.join(str(root), "ATLAS_R1.2", "standard_MNI")
    sessions = [("Site1", "031768", "t01", ["LesionSmooth_stx"]),
                ("Site1", "031769", "t01", ["LesionSmooth_stx", "LesionSmooth_1_stx"]),
                ("Site2", "031900", "t01", ["LesionSmooth_stx"]),
                ("Site2", "031900", "t02", ["LesionSmooth_stx"]),
                ("Site2", "031901", "t01", ["LesionSmooth_stx"]),
                ("Site2", "031901", "t02", ["LesionSmooth_stx"]),
                ("Site2", "031901", "t03", ["LesionSmooth_stx"])]
    for site, subject, session, masks in sessions:
        folder = os.path.join(site, subject, session)
        touch_nifti(base, os.path.join(folder, f"{subject}_t1w_deface_stx.nii.gz"),
               *[os.path.join(folder, f"{subject}_{m}.nii.gz") for m in masks],
               os.path.join(folder, ".DS_Store"))
    touch_nifti(base, *ODD, "ATLAS_Meta-Data_Release_1.2.csv",
           os.path.join("__MACOSX", "Site1", "031768", "t01", "._031768_t1w_deface_stx.nii.gz"))
    return os.path.join(str(root), "ATLAS_R1.2")


def atlas_r20_tree(root):
    """ATLAS R2.0 BIDS: Training/R0xx/sub-r0xxs0yy/ses-1/anat/ plus a mask-less Testing/."""
    base = os.path.join(str(root), "ATLAS_2")
    space = "space-MNI152NLin2009aSym"
    for cohort, subject in [("R001", "sub-r001s001"), ("R001", "sub-r001s002"),
                            ("R002", "sub-r002s001"), ("R002", "sub-r002s002"),
                            ("R002", "sub-r002s003")]:
        anat = os.path.join("Training", cohort, subject, "ses-1", "anat")
        touch_nifti(base, os.path.join(anat, f"{subject}_ses-1_{space}_T1w.nii.gz"),
               os.path.join(anat, f"{subject}_ses-1_{space}_T1w.json"),
               os.path.join(anat, f"{subject}_ses-1_{space}_label-L_desc-T1lesion_mask.nii.gz"),
               os.path.join(anat, f"{subject}_ses-1_{space}_label-L_desc-T1lesion_mask.json"))
    touch_nifti(base, os.path.join("Testing", "R003", "sub-r003s001", "ses-1", "anat",
                              f"sub-r003s001_ses-1_{space}_T1w.nii.gz"),
           os.path.join("Training", "dataset_description.json"),
           os.path.join("Training", "participants.tsv"),
           os.path.join("Training", "R001", ".DS_Store"), *ODD)
    return base


def miccai2012_tree(root, n_train=15, n_test=20):
    """MICCAI-2012-Multi-Atlas-Challenge-Data/{training,testing}-{images,labels}/."""
    base = os.path.join(str(root), "MICCAI-2012-Multi-Atlas-Challenge-Data")
    ids = [f"{1000 + i}_3" for i in range(n_train + n_test)]
    for folder, chosen in (("training", ids[:n_train]), ("testing", ids[n_train:])):
        for i in chosen:
            touch_nifti(base, f"{folder}-images/{i}.nii.gz", f"{folder}-labels/{i}_glm.nii.gz")
        touch_nifti(base, f"{folder}-images/.DS_Store",
               f"{folder}-images/{chosen[0]}_brain.nii.gz")  # a derived file left beside
    touch_nifti(base, "MICCAI-Challenge-2012-Label-Information.csv", *ODD)
    return base


def ms_lesjak_tree(root, n=30):
    """patientXX/ with co-registered patientXX_<modality>.nii.gz and raw/ originals."""
    base = os.path.join(str(root), "MS_lesjak2018")
    for i in range(1, n + 1):
        p = f"patient{i:02d}"
        touch_nifti(base, *[f"{p}/{p}_{m}.nii.gz" for m in ("T1W", "T1WKS", "T2W", "FLAIR",
                                                        "brainmask", "consensus_gt")],
               *[f"{p}/{p}_{m}_to_FLAIR.txt" for m in ("T1W", "T1WKS", "T2W")],
               *[f"{p}/raw/{p}_{m}.nii.gz" for m in ("T1W", "T1WKS", "T2W", "FLAIR")])
    touch_nifti(base, "LICENSE.txt", *ODD)
    return base


def test_atlas_r12_sessions_are_scans_of_one_patient(tmp_path):
    m = releases.build_manifest("atlas_r12", atlas_r12_tree(tmp_path))
    assert [(s.subject_id, s.patient) for s in m.subjects] == [
        ("031768", "031768"), ("031769", "031769"), ("031900", "031900"),
        ("031900_t02", "031900"), ("031901", "031901"), ("031901_t02", "031901"),
        ("031901_t03", "031901")]
    assert len(m.subjects[1].labels["mask"]) == 2
    preset = releases.get_preset("atlas_r12")
    assert preset.skip_registration and preset.crop_top == 29
    for seed in range(10):
        split = mf.assign_splits(m, counts={"train": 4, "test": 3}, seed=seed)
        by_patient = {}
        for s in split.subjects:
            by_patient.setdefault(s.patient, set()).add(s.split)
        assert all(len(v) == 1 for v in by_patient.values())


def test_atlas_r12_subject_without_mask_is_an_error(tmp_path):
    touch_nifti(tmp_path, "Site1/1/t01/1_t1w_deface_stx.nii.gz")
    with pytest.raises(mf.ManifestError, match="without a lesion mask"):
        releases.build_manifest("atlas_r12", str(tmp_path))


def test_atlas_r20_bids_layout(tmp_path):
    root = atlas_r20_tree(tmp_path)
    m = releases.build_manifest("atlas_r20", root)
    assert [s.subject_id for s in m.subjects] == [
        "sub-r001s001_ses-1", "sub-r001s002_ses-1", "sub-r002s001_ses-1", "sub-r002s002_ses-1",
        "sub-r002s003_ses-1"]
    first = m.subjects[0]
    assert first.patient == "sub-r001s001"
    assert first.image.endswith(os.path.join(
        "Training", "R001", "sub-r001s001", "ses-1", "anat",
        "sub-r001s001_ses-1_space-MNI152NLin2009aSym_T1w.nii.gz"))
    assert first.labels["mask"][0].endswith("_label-L_desc-T1lesion_mask.nii.gz")
    preset = releases.get_preset("atlas_r20")
    assert preset.skip_registration and preset.crop_top == 29
    os.remove(first.labels["mask"][0])
    with pytest.raises(mf.ManifestError, match="sub-r001s001_ses-1: no lesion mask"):
        releases.build_manifest("atlas_r20", root)


def test_miccai2012_uses_the_challenge_split_and_ships_the_6_class_map(tmp_path):
    m = releases.build_manifest("oasis_ba", miccai2012_tree(tmp_path))
    splits = [s.split for s in m.subjects]
    assert splits.count("train") == 15 and splits.count("test") == 20
    assert {s.subject_id for s in m.subjects if s.split == "train"} == \
        {f"{1000 + i}_3" for i in range(15)}
    assert m.subjects[0].labels["anatomy"][0].endswith(
        os.path.join("training-labels", "1000_3_glm.nii.gz"))
    preset = releases.get_preset("oasis_ba")
    assert preset.mask_mode == "multiclass" and preset.crop_bottom == 50
    mapping, names = labels.read_label_mapping(preset.label_mapping)
    assert len(names) == 7 and mapping[35] == 6 and mapping[44] == 2


def test_miccai2012_label_map_is_installed_with_the_package(tmp_path):
    """The default mapping must be inside the built wheel (package data), not only the repo."""
    repo = ROOT
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("tl_common", "tl_keras", "tfrecords_tools"):
        shutil.copytree(os.path.join(repo, name), src / name, ignore=ignore)
    for name in ("setup.py", "README.md"):
        shutil.copy(os.path.join(repo, name), src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(src)], check=True,
                   capture_output=True, timeout=300)
    wheel = next(p for p in os.listdir(tmp_path / "dist") if p.endswith(".whl"))
    with zipfile.ZipFile(os.path.join(tmp_path, "dist", wheel)) as z:
        assert "tfrecords_tools/label_maps/miccai2012_6class.csv" in z.namelist()


def test_ms_lesjak_takes_the_coregistered_t1_not_raw(tmp_path):
    m = releases.build_manifest("ms_lesjak", ms_lesjak_tree(tmp_path))
    assert [s.subject_id for s in m.subjects] == [f"patient{i:02d}" for i in range(1, 31)]
    s = m.subjects[0]
    assert s.image.endswith(os.path.join("patient01", "patient01_T1W.nii.gz"))
    assert s.labels["mask"][0].endswith(os.path.join("patient01", "patient01_consensus_gt.nii.gz"))
    split = mf.assign_splits(m, counts=releases.get_preset("ms_lesjak").split_counts)
    assert sorted(s.split for s in split.subjects) == ["test"] * 10 + ["train"] * 20


def test_glob_patterns_override_a_fixed_layout(tmp_path):
    touch_nifti(tmp_path, "a/renamed_T1.nii.gz", "a/renamed_gt.nii.gz")
    m = releases.build_manifest("ms_lesjak", str(tmp_path), image_glob="*/renamed_T1.nii.gz",
                                label_glob="{subject}/renamed_gt.nii.gz",
                                subject_regex=r"^([^/]+)/")
    assert [s.subject_id for s in m.subjects] == ["a"]


def test_glob_preset(tmp_path):
    for s in ("s01", "s02"):
        touch_nifti(tmp_path, f"{s}/T1.nii.gz", f"{s}/lesion_a.nii.gz")
    m = releases.build_manifest("glob", str(tmp_path), image_glob="*/T1.nii.gz",
                                label_glob="{subject}/lesion*.nii.gz", subject_regex=r"^([^/]+)/")
    assert [s.subject_id for s in m.subjects] == ["s01", "s02"]
    assert m.subjects[0].labels["mask"] == (str(tmp_path / "s01" / "lesion_a.nii.gz"),)
    with pytest.raises(mf.ManifestError, match="no label file matches"):
        releases.build_manifest("glob", str(tmp_path), image_glob="*/T1.nii.gz",
                                label_glob="{subject}/none*.nii.gz", subject_regex=r"^([^/]+)/")


def _bahc_manifest(tmp_path, n):
    touch_nifti(tmp_path, *[f"scans/s{i:04d}_T1.nii.gz" for i in range(n)])
    rows = "".join(f"s{i:04d},scans/s{i:04d}_T1.nii.gz\n" for i in range(n))
    (tmp_path / "bahc.csv").write_text("subject_id,image\n" + rows)
    return str(tmp_path / "bahc.csv")


def test_bahc_cli_refuses_a_silently_huge_test_split(tmp_path):
    manifest = _bahc_manifest(tmp_path, 2001)
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecords_tools.convert", "--preset", "bahc", "--manifest",
         manifest, "--out_dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("convert: error: split 'test' would hold 1231 of the 2001")
    assert "--subjects_csv" in lines[-1] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_bahc_subject_list_selects_the_870_scans(tmp_path, monkeypatch):
    from tfrecords_tools import convert as cv
    manifest = _bahc_manifest(tmp_path, 900)
    (tmp_path / "keep.csv").write_text(
        "subject_id\n" + "".join(f"s{i:04d}\n" for i in range(0, 900) if i % 30))  # 870
    seen = {}

    def fake_convert(m, out_dir, config, **kw):
        seen["manifest"] = mf.assign_splits(m, counts=kw["split_counts"], seed=kw["split_seed"])
        return {}

    monkeypatch.setattr(cv, "convert", fake_convert)
    unset = {f.name: None for f in dataclasses.fields(cv.ConvertFlags)}
    cv.run_flags(cv.ConvertFlags(**{**unset, "preset": "bahc", "manifest": manifest,
                                    "subjects_csv": str(tmp_path / "keep.csv"), "splits": "",
                                    "split_seed": 0, "out_dir": str(tmp_path / "out"),
                                    "preprocess": {}}))
    subjects = seen["manifest"].subjects
    assert len(subjects) == 870 and "s0030" not in {s.subject_id for s in subjects}
    counts = {k: sum(s.split == k for s in subjects) for k in ("train", "val", "test")}
    assert counts == {"train": 670, "val": 100, "test": 100}


def atlas_r12_cst_tree(root):
    """ATLAS R1.2 copies named c<site>s<subject>t<time>_t1w_stx (patient c0003s0002 twice)."""
    base = os.path.join(str(root), "ATLAS_cst")
    for stem in ("c0001s0001t01", "c0003s0002t01", "c0003s0002t02", "c0004s0001t01"):
        touch_nifti(base, f"{stem[:5]}/{stem}_t1w_stx.nii.gz",
                    f"{stem[:5]}/{stem}_LesionSmooth_stx.nii.gz")
    return base


def _one_split_per_patient(m):
    for seed in range(10):
        by_patient = {}
        for s in mf.assign_splits(m, counts={"train": 2, "test": 2}, seed=seed).subjects:
            by_patient.setdefault(s.patient, set()).add(s.split)
        assert all(len(v) == 1 for v in by_patient.values()), by_patient


def test_atlas_r12_other_naming_keeps_patients_together(tmp_path):
    """Both namings, three ways in: the preset's builder, --image_glob with the preset,
    a manifest with a patient_id column."""
    root = atlas_r12_cst_tree(tmp_path)
    built = releases.build_manifest("atlas_r12", root)
    assert [(s.subject_id, s.patient) for s in built.subjects] == [
        ("c0001s0001t01", "c0001s0001"), ("c0003s0002t01", "c0003s0002"),
        ("c0003s0002t02", "c0003s0002"), ("c0004s0001t01", "c0004s0001")]
    assert built.subjects[1].labels["mask"][0].endswith("c0003s0002t01_LesionSmooth_stx.nii.gz")
    globbed = releases.build_manifest("atlas_r12", root, image_glob="**/*_t1w_stx.nii.gz",
                                      label_glob="**/{subject}_LesionSmooth*_stx.nii.gz")
    assert [(s.subject_id, s.patient) for s in globbed.subjects] == \
        [(s.subject_id, s.patient) for s in built.subjects]
    csv = tmp_path / "atlas.csv"
    mf.write_manifest(globbed, str(csv))
    read = mf.read_manifest(str(csv))
    assert [s.patient for s in read.subjects] == [s.patient for s in built.subjects]
    for m in (built, globbed, read):
        _one_split_per_patient(m)


def test_atlas_r12_release_naming_through_glob_and_patient_regex(tmp_path):
    globbed = releases.build_manifest("atlas_r12", atlas_r12_tree(tmp_path),
                                      image_glob="**/Site*/*/t0*/*_t1w_deface_stx.nii.gz")
    assert [(s.subject_id, s.patient) for s in globbed.subjects][2:4] == [
        ("031900", "031900"), ("031900_t02", "031900")]
    # Any layout: --subject_regex / --patient_regex with the glob preset.
    generic = releases.build_manifest(
        "glob", atlas_r12_cst_tree(tmp_path), image_glob="**/*_t1w_stx.nii.gz",
        label_glob="**/{subject}_LesionSmooth*_stx.nii.gz",
        subject_regex=r"(c\d+s\d+t\d+)_", patient_regex=r"(?P<patient>c\d+s\d+)t\d+_")
    assert [s.patient for s in generic.subjects] == ["c0001s0001", "c0003s0002", "c0003s0002",
                                                     "c0004s0001"]
    _one_split_per_patient(generic)


def test_a_release_preset_added_in_the_test(tmp_path, monkeypatch):
    """docs/extending.md, "Adding a data release preset", done as written there."""
    from tfrecords_tools.manifests.manifest import Manifest, Subject
    from tfrecords_tools.manifests.releases import Preset, _find, _manifest_of

    def build_toy_release(root: str, **_) -> Manifest:
        images = _find(root, os.path.join("**", "*_t1.nii.gz"))

        def read(image):
            mask = image.replace("_t1.nii.gz", "_lesion.nii.gz")
            problem = None if os.path.isfile(mask) else f"{image}: no lesion mask {mask}"
            sid = os.path.basename(image).split("_t1")[0]
            return Subject(sid, image, {"mask": (mask,)}), problem
        return _manifest_of(root, images, f"{root}: no '*_t1.nii.gz' files", read,
                            "problem(s)")

    monkeypatch.setitem(releases.PRESETS, "toy_release", Preset(
        crop_top=29, skip_registration=True, split_counts={"train": 2, "test": 1},
        builder=build_toy_release, description="a toy release"))
    for sid in ("a", "b", "c"):
        touch_nifti(tmp_path, f"site/{sid}_t1.nii.gz", f"site/{sid}_lesion.nii.gz")
    m = releases.build_manifest("toy_release", str(tmp_path))
    assert [s.subject_id for s in m.subjects] == ["a", "b", "c"]
    assert m.subjects[0].labels["mask"] == (str(tmp_path / "site" / "a_lesion.nii.gz"),)
    assert releases.get_preset("toy_release").crop_top == 29
    os.remove(tmp_path / "site" / "b_lesion.nii.gz")
    with pytest.raises(mf.ManifestError, match=r"1 problem\(s\): .*b_t1.nii.gz: no lesion "):
        releases.build_manifest("toy_release", str(tmp_path))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(mf.ManifestError, match="no '\\*_t1.nii.gz' files"):
        releases.build_manifest("toy_release", str(tmp_path / "empty"))
