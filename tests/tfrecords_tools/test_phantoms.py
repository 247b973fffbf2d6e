"""The SYNTHETIC phantom cohort: deterministic, labelled synthetic, offline, sensible labels."""
import os
import socket
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tfrecords_tools.scans import labels as labels_lib
from tfrecords_tools.synthetic import phantoms


def _arrays(manifest):
    rows = pd.read_csv(manifest)
    return {(sid, col): np.asarray(nib.load(path).dataobj)
            for sid, r in rows.set_index("subject_id").iterrows()
            for col, path in r.items() if col != "split"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return phantoms.make_cohort(str(tmp_path_factory.mktemp("a")), 3, "ms", seed=7,
                                resolution=4.0)


def test_cohort_is_deterministic_by_seed(cohort, tmp_path):
    again = phantoms.make_cohort(str(tmp_path / "b"), 3, "ms", seed=7, resolution=4.0)
    other = phantoms.make_cohort(str(tmp_path / "c"), 1, "ms", seed=8, resolution=4.0)
    first, second = _arrays(cohort), _arrays(again)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=str(key))
    assert not np.array_equal(first[("synthetic000", "image")],
                              _arrays(other)[("synthetic000", "image")])
    split = pd.read_csv(cohort)["split"].tolist()
    assert sorted(split) == ["test", "train", "val"]


def test_cohort_says_it_is_synthetic(cohort):
    directory = os.path.dirname(cohort)
    rows = pd.read_csv(cohort)
    assert os.path.basename(cohort) == "synthetic_manifest.csv"
    assert list(rows.columns) == list(phantoms.MANIFEST_COLUMNS)
    assert rows["subject_id"].str.startswith("synthetic").all()
    assert "SYNTHETIC" in open(os.path.join(directory, "SYNTHETIC_README.txt")).read()
    for path in rows.iloc[0, 1:].drop("split"):
        assert b"SYNTHETIC" in nib.load(path).header["descrip"].tobytes()


def test_labels_are_consistent(cohort):
    arrays = _arrays(cohort)
    tissue, structures = arrays[("synthetic000", "tissue")], arrays[("synthetic000", "structures")]
    lesion, anatomy = arrays[("synthetic000", "label")], arrays[("synthetic000", "anatomy")]
    assert set(np.unique(tissue)) == {0, 1, 2, 3}
    assert set(np.unique(structures)) - {0} <= set(labels_lib.STRUCTURE_CODES)
    assert len(set(np.unique(structures)) - {0}) >= 10
    assert set(np.unique(anatomy)) == set(range(7))
    assert lesion.any() and set(np.unique(lesion)) == {0, 1}
    assert np.all(tissue[lesion > 0] > 0)  # lesions lie inside the brain
    np.testing.assert_array_equal(arrays[("synthetic000", "brain")], tissue > 0)
    image = arrays[("synthetic000", "image")]
    wm, gm = image[tissue == 3].mean(), image[tissue == 2].mean()
    assert wm > gm > image[tissue == 1].mean()  # T1 contrast
    assert image[lesion > 0].mean() < wm


def test_no_network_and_native_space(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    phantoms._mni.cache_clear()
    ph = phantoms.synthesise(0, 0, "stroke", 4.0)
    assert nib.aff2axcodes(ph.affine) == ("L", "A", "S")
    assert not np.allclose(ph.native_to_mni, np.eye(4))
    assert ph.lesion.sum() > 0


def test_cli(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "tfrecords_tools.phantoms", f"--out_dir={out}",
           "--subjects=1", "--lesions=stroke", "--seed=1", "--resolution=4"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (out / "synthetic_manifest.csv").exists()
    bad = subprocess.run(cmd[:4] + ["--subjects=0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "subjects must be >= 1" in bad.stderr
