"""Conversion reliability: folder locks, parameter checks, shard checksums, signals, errors.

Concurrency and kill tests run real processes (docs/conversion.md, "Reliability").
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import needs_mount, read_only_error_lines
from tests.helpers import make_mni_cohort, mni_cohort_config
from tfrecords_tools import schema
from tfrecords_tools.conversion import outdir, pipeline as cv, subject_cache
from tfrecords_tools.shards import assemble
from tl_common import lock
from tl_common.io import sha256_file

CLI = [sys.executable, "-m", "tfrecords_tools.convert", "--resolution", "4",
       "--crop_bottom", "60", "--num_shards", "1", "--noprogress"]


def _cli(manifest, out, *extra, timeout=240):
    return subprocess.run(CLI + ["--manifest", manifest, "--out_dir", str(out),
                                 "--skip_registration", "--crop_top", "80", *extra],
                          capture_output=True, text=True, timeout=timeout)


def _one_line_error(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[-1]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_mni_cohort(str(tmp_path_factory.mktemp("rel") / "scans"), n=2)


def test_convert_refused_while_locked_and_stale_lock_taken_over(cohort, tmp_path):
    """A live lock holder (another process) refuses the run; after kill -9 of the
    holder the lock is stale and taken over with a message."""
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tl_common import lock; "
         "lock.acquire(sys.argv[1]); print('held', flush=True); time.sleep(300)", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = _cli(cohort, out)
        assert proc.returncode == 1
        line = _one_line_error(proc)
        assert line.startswith("convert: error:") and f"pid {holder.pid}" in line
        assert not os.path.exists(out / schema.DATASET_JSON)
    finally:
        holder.kill()
        holder.wait()
    proc = _cli(cohort, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"taking over the lock left by pid {holder.pid}" in proc.stderr
    assert not os.path.exists(out / lock.LOCK_NAME)  # released at the end


def test_two_concurrent_converts_with_different_crops(cohort, tmp_path):
    """The issue's case: crop 0 and crop 20 at once. One run is refused (lock, or
    parameters once the other finished); the folder holds exactly the other's data."""
    out = tmp_path / "out"
    procs = [subprocess.Popen(CLI + ["--manifest", cohort, "--out_dir", str(out),
                                     "--skip_registration", "--crop_top", str(crop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for crop in (0, 20)]
    results = [(p.wait(timeout=240), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    winner = 0 if results[0][0] == 0 else 20
    loser_err = [err for code, err in results if code == 1][0]
    assert "Traceback" not in loser_err
    assert "in use by" in loser_err or "other parameters" in loser_err
    meta = schema.read_meta(str(out))
    assert meta.preprocessing["crop_top"] == winner and meta.complete
    # Every subject cache in the shards was made with the winner's parameters.
    for sid in meta.splits["train"].subjects:
        cache = subject_cache.read_cache_meta(subject_cache.cache_path(str(out), sid))
        assert cache["slices"] == 48 - 15 - round(winner / 4)


def test_rerun_with_other_parameters_refused_unless_overwrite(cohort, tmp_path):
    out = str(tmp_path / "out")
    cv.convert(cohort, out, mni_cohort_config(), num_shards=1, progress=False)
    other = mni_cohort_config(clip_percentiles=(2.0, 98.0))
    with pytest.raises(outdir.OutDirError, match=r"clip_percentiles: \[1.0, 99.0\] -> "
                                                  r"\[2.0, 98.0\].*--overwrite"):
        cv.convert(cohort, out, other, num_shards=1, progress=False)
    with pytest.raises(outdir.OutDirError, match="num_shards: 1 -> 2"):
        cv.convert(cohort, out, mni_cohort_config(), num_shards=2, progress=False)
    meta = cv.convert(cohort, out, other, num_shards=1, progress=False, overwrite=True)
    assert meta.preprocessing["clip_percentiles"] == [2.0, 98.0] and meta.complete
    assert schema.read_meta(out).preprocessing["clip_percentiles"] == [2.0, 98.0]


def test_conversion_without_convert_json_is_compared_by_its_dataset_json(tmp_path):
    """A folder converted before convert.json existed: its parameters are read from the
    dataset.json record (a damaged one is named), and other ones are refused."""
    from tfrecords_tools.shards import writer
    from tl_common.records import RecordError
    out = str(tmp_path / "old")
    os.makedirs(out)
    writer.write_dataset_json(out, {
        "image_size": [32, 32], "channels": 1, "num_mask_classes": 2, "num_tissue_classes": 4,
        "splits": {"train": {"subjects": ["a"], "slices": 3, "shards": 1}},
        "preprocessing": {"crop_top": 80}})
    outdir.claim(out, {"preprocessing": {"crop_top": 80}}).release()
    with pytest.raises(outdir.OutDirError, match="crop_top: 80 -> 90"):
        outdir.claim(out, {"preprocessing": {"crop_top": 90}})
    with open(os.path.join(out, "dataset.json"), "w") as f:
        json.dump({"image_size": [32, 32]}, f)
    with pytest.raises(RecordError, match="dataset.json: missing key"):
        outdir.claim(out, {"preprocessing": {"crop_top": 80}})


def test_damaged_shard_is_named_and_recreated(cohort, tmp_path, capfd):
    """400 flipped bytes: training names the shard before reading it, and a rerun of
    the conversion re-creates it (both used to pass it on silently)."""
    out = str(tmp_path / "out")
    cv.convert(cohort, out, mni_cohort_config(), num_shards=1, progress=False)
    shard = os.path.join(out, "train-00000-of-00001.tfrecord")
    good = sha256_file(shard)
    assert schema.read_meta(out).checksums["train-00000-of-00001.tfrecord"]["sha256"] == good
    with open(shard, "r+b") as f:  # the 400 flipped bytes
        f.seek(1000)
        data = bytearray(f.read(400))
        f.seek(1000)
        f.write(bytes(b ^ 0xFF for b in data))
    from tl_keras.data.dataset import build_dataset
    with pytest.raises(ValueError, match=f"{shard}: content differs from its SHA-256"):
        build_dataset(out, "train", "target", 2, training=True)  # named at training start
    from tl_keras.training.class_weights import read_slice_counts
    with pytest.raises(ValueError, match=f"{shard}: content differs"):  # read before that
        read_slice_counts(out, "train", "mask", schema.read_meta(out))
    capfd.readouterr()
    meta = cv.convert(cohort, out, mni_cohort_config(), num_shards=1, progress=False)
    assert f"{shard}: damaged" in capfd.readouterr().err
    assert sha256_file(shard) == good and meta.complete


def test_identical_inputs_give_byte_identical_shards(cohort, tmp_path):
    hashes = []
    for name in ("a", "b"):
        out = str(tmp_path / name)
        cv.convert(cohort, out, mni_cohort_config(), num_shards=1, progress=False)
        hashes.append({os.path.basename(p): sha256_file(p)
                       for p in glob.glob(os.path.join(out, "*.tfrecord"))})
    assert hashes[0] == hashes[1] and len(hashes[0]) == 2


def test_shard_record_holds_the_fingerprints_actually_read(cohort, tmp_path):
    """A cache replaced under the run (another process) is recorded as read, so a
    rerun rewrites the shard instead of trusting what the run expected."""
    out = str(tmp_path / "out")
    cv.convert(cohort, out, mni_cohort_config(), num_shards=1, progress=False)
    plan = [p for p in assemble.plan_shards(_manifest(cohort), 1)
            if p.split == "train"][0]
    with open(os.path.join(out, ".shards", plan.name + ".json")) as f:
        expected = json.load(f)["fingerprints"]
    wrong = {sid: "0" * 16 for sid in plan.subjects}
    from tfrecords_tools.errors import DataSetError  # a user error: one line, rerun
    with pytest.raises(DataSetError, match="changed while the shard was written"):
        assemble.write_planned_shard(out, plan, list(plan.subjects), wrong,
                                     cv.class_info(mni_cohort_config()))
    with open(os.path.join(out, ".shards", plan.name + ".json")) as f:
        assert json.load(f)["fingerprints"] == expected
    assert assemble.shard_state(out, plan, list(plan.subjects), wrong) == "changed"


def _manifest(path):
    from tfrecords_tools.manifests import manifest as mf
    return mf.assign_splits(mf.read_manifest(path))


def test_temp_debris_of_killed_runs_removed_on_rerun(cohort, tmp_path):
    out = str(tmp_path / "out")
    cv.convert(cohort, out, mni_cohort_config(), num_shards=1, progress=False)
    debris = [os.path.join(out, ".tmp-train-00000-of-00001.tfrecord.abc"),
              os.path.join(out, "subjects", ".tmp-sub00.npz.xyz"),
              os.path.join(out, ".shards", ".tmp-test.json.q")]
    for path in debris:
        with open(path, "wb") as f:
            f.write(b"x" * 1000)
    cv.convert(cohort, out, mni_cohort_config(), num_shards=1, progress=False)
    assert not [p for p in debris if os.path.exists(p)]


def test_out_dir_that_is_a_file(cohort, tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    proc = _cli(cohort, target)
    assert proc.returncode == 1
    assert _one_line_error(proc) == (f"convert: error: {target}: --out_dir is an existing "
                                     "file, not a folder")


@needs_mount
def test_read_only_out_dir_is_one_line(cohort, tmp_path):
    """A read-only --out_dir (a read-only bind mount: root ignores folder permissions)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    lines = read_only_error_lines("tfrecords_tools.convert",
                                  ["--manifest", cohort, "--out_dir", str(ro),
                                   "--skip_registration", "--crop_top", "80"], ro)
    assert lines == [f"convert: error: {ro}: the output folder is not writable (read-only?)"]


def test_disk_full_while_writing_a_shard_names_the_shard(cohort, tmp_path, monkeypatch):
    """ResourceExhaustedError from the TFRecord writer becomes an OSError naming the
    shard (not its temporary file) and leaves nothing behind."""
    import tensorflow as tf
    from tfrecords_tools.shards import writer as shards
    from tl_common.cli import one_line

    class FullWriter:
        def __init__(self, path):
            self.path = path

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, record):
            raise tf.errors.ResourceExhaustedError(None, None, f"{self.path}; No space left "
                                                   "on device")

    monkeypatch.setattr(tf.io, "TFRecordWriter", FullWriter)
    path = str(tmp_path / "train-00000-of-00001.tfrecord")
    with pytest.raises(OSError) as info:
        shards.write_shard(path, [b"abc"])
    line = one_line(info.value)
    assert line.startswith(f"{path}: cannot write the shard: ResourceExhaustedError")
    assert ".tmp-" not in line and os.listdir(tmp_path) == []


def _children(pid: int) -> list[int]:
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.split("/")[2]))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start_busy_conversion(tmp_path):
    """A --workers 2 conversion with registration; returns it once two workers run."""
    manifest = make_mni_cohort(str(tmp_path / "scans"), n=4, seed=1)
    parent = subprocess.Popen(CLI + ["--manifest", manifest, "--out_dir", str(tmp_path / "out"),
                                     "--workers", "2", "--crop_top", "80"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        workers = [c for c in _children(parent.pid)
                   if "resource_tracker" not in open(f"/proc/{c}/cmdline").read()]
        if len(workers) >= 2:  # killed while still starting up, they must die too
            return parent, workers
        assert parent.poll() is None, parent.stderr.read()
        time.sleep(0.2)
    parent.kill()
    pytest.fail("the workers did not start")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_the_parent(tmp_path, sig):
    parent, workers = _start_busy_conversion(tmp_path)
    parent.send_signal(sig)
    code = parent.wait(timeout=60)
    _, err = parent.communicate()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "orphaned workers"
    out = tmp_path / "out"
    if sig == signal.SIGTERM:
        assert code == 128 + signal.SIGTERM
        line = _one_line_error(type("P", (), {"stderr": err})())
        assert line.startswith("convert: stopped by SIGTERM")
        assert not [p for p in glob.glob(str(out / "**" / ".tmp-*"), recursive=True)]
        assert not os.path.exists(out / lock.LOCK_NAME)
    else:
        assert code == -signal.SIGKILL
    # Nothing writes into the folder any more, and a rerun finishes the job.
    before = sorted(os.listdir(out / "subjects")) if os.path.isdir(out / "subjects") else []
    time.sleep(1.5)
    after = sorted(os.listdir(out / "subjects")) if os.path.isdir(out / "subjects") else []
    assert before == after


def test_disk_full_while_caching_stops_naming_the_file(cohort, tmp_path, monkeypatch):
    """A full disk is not a subject's fault: the conversion stops (even with
    --on_error skip) naming the cache file, not its temporary name."""
    import errno

    import numpy as np

    from tl_common.cli import one_line

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full)
    out = str(tmp_path / "out")
    with pytest.raises(OSError) as info:
        cv.convert(cohort, out, mni_cohort_config(), num_shards=1, progress=False, on_error="skip")
    assert one_line(info.value) == (f"{subject_cache.cache_path(out, 'sub00')}: "
                                    "No space left on device")
    assert not glob.glob(os.path.join(out, "**", ".tmp-*"), recursive=True)
    assert not os.path.exists(os.path.join(out, lock.LOCK_NAME))


def test_damaged_subject_cache_is_named_and_redone(tmp_path, capsys):
    """A cache whose metadata still reads but whose image does not (a flipped byte) is
    rebuilt, not loaded into a 66-line BadZipFile traceback."""
    import types
    import numpy as np
    result = types.SimpleNamespace(image=np.random.default_rng(0).random((3, 64, 64)),
                                   slice_indices=[4, 5, 6], tissue=np.zeros((3, 64, 64)),
                                   presence=np.zeros((3, 16)), voxel_size=(1, 1, 1), mask=None)
    path = subject_cache.cache_path(str(tmp_path), "s1")
    subject_cache.save_cache(path, result, subject_id="s1", fp="abc", out_dir=str(tmp_path))
    assert subject_cache.is_complete(str(tmp_path), "s1", "abc")
    with open(path, "r+b") as f:
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert subject_cache.read_cache_meta(path)["fingerprint"] == "abc"  # still reads
    assert not subject_cache.is_complete(str(tmp_path), "s1", "abc")
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"convert: {path}: damaged (image.npy fails its checksum); "
                   "pre-processing subject s1 again"]


def test_disk_full_without_a_file_name_names_the_out_dir(tmp_path, monkeypatch):
    """An ENOSPC that names no file (raised inside a library) names --out_dir, never a bare
    '[Errno 28] No space left on device'."""
    import errno

    from tests.helpers import touch_nifti
    from tl_common.cli import one_line

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cv, "record_run", full)
    touch_nifti(tmp_path, "scans/a.nii.gz")
    (tmp_path / "scans" / "m.csv").write_text("subject_id,image\na,a.nii.gz\n")
    out = tmp_path / "out"
    with pytest.raises(OSError) as info:
        cv.convert(str(tmp_path / "scans" / "m.csv"), str(out), progress=False)
    assert one_line(info.value) == f"{out}: No space left on device"
    assert not os.path.exists(out / lock.LOCK_NAME)
