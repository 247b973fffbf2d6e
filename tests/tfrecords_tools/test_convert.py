"""End to end: tiny NIfTI cohort in MNI space (4 mm) -> shards, metadata, round trip."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.helpers import make_mni_cohort, mni_cohort_config
from tfrecords_tools import convert as convert_cli, schema
from tfrecords_tools.conversion import pipeline as cv, subject_cache
from tfrecords_tools.shards import assemble



@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    base = tmp_path_factory.mktemp("convert")
    manifest = make_mni_cohort(str(base / "scans"))
    out = str(base / "out")
    meta = cv.convert(manifest, out, mni_cohort_config(), num_shards=2, progress=False)
    return manifest, out, meta


def test_shards_metadata_and_subjects_csv(converted):
    manifest, out, meta = converted
    names = sorted(f for f in os.listdir(out) if f.endswith(".tfrecord"))
    assert names == ["test-00000-of-00001.tfrecord", "train-00000-of-00002.tfrecord",
                     "train-00001-of-00002.tfrecord"]
    # 48 slices at 4 mm; crops 80 / 60 mm -> 20 / 15 slices dropped -> 13 kept.
    assert meta.splits["train"].to_dict() == {"subjects": ["sub00", "sub01", "sub02"], "slices": 39,
                                       "shards": 2, "complete": True}
    assert meta.splits["test"].slices == 13
    on_disk = schema.read_meta(out)
    assert on_disk.image_size == (64, 64) and on_disk.channels == 1
    assert on_disk.synthetic is True and on_disk.complete is True
    assert on_disk.tissue_classes == ("background", "CSF", "GM", "WM")
    assert len(on_disk.presence_labels) == 16 and on_disk.num_mask_classes == 2
    assert on_disk.preprocessing["crop_top"] == 80
    assert on_disk.preprocessing["skip_registration"] is True
    assert on_disk.schema_version == schema.SCHEMA_VERSION and on_disk.tool_version
    table = pd.read_csv(os.path.join(out, schema.SUBJECTS_CSV))
    assert list(table.subject_id) == ["sub03", "sub00", "sub01", "sub02"]  # by split, id
    assert set(table.slices) == {13} and set(table.first_slice) == {15}
    assert json.loads(table.native_shape[0]) == [50, 59, 48]
    assert all(os.path.exists(os.path.join(out, f)) for f in table.transform_file)


def test_round_trip_through_reader(converted):
    import tensorflow as tf
    from tl_keras.data.dataset import build_dataset
    _, out, _ = converted
    cache = subject_cache.load_cache(subject_cache.cache_path(out, "sub03"))
    ds = build_dataset(out, "test", "raw", batch_size=2, training=False)
    got = [b for b in ds]
    image = np.concatenate([b["image"].numpy() for b in got])[..., 0]
    mask = np.concatenate([b["mask"].numpy() for b in got])
    tissue = np.concatenate([b["tissue"].numpy() for b in got])
    presence = np.concatenate([b["presence"].numpy() for b in got])
    assert image.shape == (13, 64, 64)
    np.testing.assert_allclose(image, cache["image"], atol=0.5 / schema.DEFAULT_QUANT_MAX + 1e-6)
    np.testing.assert_array_equal(mask, cache["mask"])
    np.testing.assert_array_equal(tissue, cache["tissue"])
    np.testing.assert_array_equal(presence, cache["presence"])
    assert mask.sum() > 0 and set(np.unique(mask)) <= {0, 1}   # two halves unioned
    assert tissue.max() == 3 and image.max() > 0.9
    idx = np.concatenate([b["slice_index"].numpy() for b in got])
    np.testing.assert_array_equal(idx, np.arange(15, 28))
    assert tf.reduce_all(got[0]["subject_id"] == b"sub03")


def test_rerun_skips_completed_subjects_and_shards(converted):
    manifest, out, _ = converted
    files = [os.path.join(out, f) for f in os.listdir(out) if f.endswith(".tfrecord")]
    files += [subject_cache.cache_path(out, f"sub{i:02d}") for i in range(4)]
    before = {f: os.stat(f).st_mtime_ns for f in files}
    meta = cv.convert(manifest, out, mni_cohort_config(), num_shards=2, progress=False)
    assert {f: os.stat(f).st_mtime_ns for f in files} == before
    assert meta.complete


def test_shard_jobs_then_merge(converted, tmp_path):
    manifest, full_out, _ = converted
    out = str(tmp_path / "jobs")
    meta0 = cv.convert(manifest, out, mni_cohort_config(), num_shards=2, shard_job=(0, 2),
                       progress=False)
    assert not meta0.complete
    assert sorted(f for f in os.listdir(out) if f.endswith(".tfrecord")) == [
        "test-00000-of-00001.tfrecord", "train-00000-of-00002.tfrecord"]
    assert sorted(os.listdir(os.path.join(out, "subjects"))) == [
        "sub00.npz", "sub02.npz", "sub03.npz"]
    cv.convert(manifest, out, mni_cohort_config(), num_shards=2, shard_job=(1, 2), progress=False)
    assert os.path.exists(os.path.join(out, "train-00001-of-00002.tfrecord"))
    merged = cv.convert(manifest, out, mni_cohort_config(), num_shards=2, progress=False)
    assert merged.complete
    assert merged.splits == schema.read_meta(full_out).splits


def test_on_error_fail_and_skip(tmp_path):
    manifest = make_mni_cohort(str(tmp_path / "scans"), n=3, nan_subject="sub01")
    out = str(tmp_path / "out")
    with pytest.raises(cv.ConversionError, match="sub01.*sub01_t1.nii.gz"):
        cv.convert(manifest, out, mni_cohort_config(), num_shards=1, progress=False)
    assert not [f for f in os.listdir(out) if f.endswith(".tfrecord")]
    errors = pd.read_csv(os.path.join(out, "errors.csv"))
    assert list(errors.subject) == ["sub01"] and "finite" in errors.problem[0].lower()
    meta = cv.convert(manifest, out, mni_cohort_config(), num_shards=1, on_error="skip",
                      progress=False)
    assert meta.splits["train"].subjects == ("sub00",) and not meta.complete
    assert list(pd.read_csv(os.path.join(out, "errors.csv")).subject) == ["sub01"]


def test_interrupted_write_leaves_no_shard(converted, tmp_path, monkeypatch):
    _, out, _ = converted
    calls = {"n": 0}
    real = schema.make_example

    def flaky(**kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated interruption")
        return real(**kw)

    monkeypatch.setattr(schema, "make_example", flaky)
    plan = assemble.ShardPlan("train", 0, 1, ("sub00", "sub01"))
    fps = {"sub00": "x", "sub01": "y"}
    info = cv.class_info(mni_cohort_config())
    target = tmp_path / "shards"
    os.makedirs(target / "subjects")
    for sid in plan.subjects:
        os.link(subject_cache.cache_path(out, sid), target / "subjects" / f"{sid}.npz")
    with pytest.raises(KeyboardInterrupt):
        assemble.write_planned_shard(str(target), plan, list(plan.subjects), fps, info)
    assert sorted(os.listdir(target)) == ["subjects"]


def test_cli_exit_code_and_one_line_error(tmp_path):
    (tmp_path / "m.csv").write_text("subject_id,image\na,missing_a.nii.gz\nb,missing_b.nii.gz\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecords_tools.convert", "--manifest", str(tmp_path / "m.csv"),
         "--out_dir", str(tmp_path / "out"), "--resolution", "4", "--skip_registration"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("convert: error:") and "2 missing file(s)" in lines[-1]
    assert "missing_a.nii.gz" in lines[-1] and "missing_b.nii.gz" in lines[-1]
    assert "Traceback" not in proc.stderr


def test_cli_parallel_workers_skip_bad_subject(tmp_path):
    manifest = make_mni_cohort(str(tmp_path / "scans"), n=3, nan_subject="sub02")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecords_tools.convert", "--manifest", manifest,
         "--out_dir", str(out), "--resolution", "4", "--skip_registration", "--crop_top", "80",
         "--crop_bottom", "60", "--workers", "2", "--on_error", "skip", "--num_shards", "1"],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 subject(s) skipped" in proc.stdout
    assert "pre-processing" in proc.stderr and "scan/s" in proc.stderr  # tqdm bar with rate
    meta = schema.read_meta(str(out))
    assert meta.splits["train"].subjects == ("sub00", "sub01")
    assert list(pd.read_csv(out / "errors.csv").subject) == ["sub02"]


def test_phantom_cohort_registered_multiclass_anatomy(tmp_path):
    """The phantom manifest (label + anatomy columns, SYNTHETIC marker), registration on."""
    from tfrecords_tools.synthetic import phantoms
    from tfrecords_tools.manifests.releases import get_preset
    manifest = phantoms.make_cohort(str(tmp_path / "ph"), 2, lesions="stroke", seed=0,
                                    resolution=4)
    config = convert_cli.preprocess_config(get_preset("stroke"), {
        "resolution": 4.0, "mask_mode": "multiclass",
        "label_mapping": str(tmp_path / "ph" / "anatomy_mapping.csv")})
    assert not config.skip_registration and config.crop_top == 29
    meta = cv.convert(manifest, str(tmp_path / "out"), config, num_shards=1, progress=False)
    assert meta.synthetic is True and meta.num_mask_classes == 7
    assert meta.mask_classes[:2] == ("background", "CSF")
    cache = subject_cache.load_cache(subject_cache.cache_path(str(tmp_path / "out"),
                                                              "synthetic000"))
    assert cache["mask"].max() >= 4                   # anatomy classes, not the lesion
    assert os.path.getsize(os.path.join(tmp_path / "out", cache["meta"]["transform_file"]))


def test_conversion_records_flags_seed_and_versions(converted):
    """The conversion's output folder records its parameters, seed and package versions."""
    _, out, _ = converted
    with open(os.path.join(out, "convert.json")) as f:
        record = json.load(f)
    assert record["seed"] == 0 and "tensorflow" in record["versions"]
    assert record["flags"]["preprocessing"]["slice_size"] > 0
    with open(os.path.join(out, "dataset.json")) as f:
        assert "numpy" in json.load(f)["versions"]
