"""Natural images -> shards: a folder with masks and class labels, and the skimage samples."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tfrecords_tools import convert_images as ci, manifest as mf, schema


def _folder(tmp_path, n=5):
    from skimage import io
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    rows = []
    for i in range(n):
        img = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
        mask = np.zeros((40, 50), np.uint8)
        mask[:20] = 1 + i % 3
        io.imsave(str(tmp_path / "img" / f"im{i}.png"), img, check_contrast=False)
        io.imsave(str(tmp_path / "mask" / f"im{i}.png"), mask, check_contrast=False)
        rows.append({"file": f"im{i}.png", "class": "cat" if i % 2 else "dog"})
    rows.append({"file": "im0.png", "class": "cat"})  # multi-label
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)


def test_folder_with_masks_and_labels_round_trip(tmp_path):
    from tl_keras.data.dataset import build_dataset
    _folder(tmp_path)
    items, seg, presence = ci.folder_items(str(tmp_path / "img"), 32,
                                           mask_dir=str(tmp_path / "mask"),
                                           labels_csv=str(tmp_path / "labels.csv"))
    assert seg == ["class_0", "class_1", "class_2", "class_3"] and presence == ["cat", "dog"]
    assert items[0].presence == (1.0, 1.0) and items[1].presence == (1.0, 0.0)
    out = str(tmp_path / "out")
    meta = ci.write_image_dataset(items, out, seg_classes=seg, presence_labels=presence,
                                  image_size=32, num_shards=2, split_counts={"train": 3,
                                                                             "test": 2},
                                  progress=False)
    assert meta["channels"] == 3 and meta["splits"]["train"]["slices"] == 3
    assert sorted(f for f in os.listdir(out) if f.endswith(".tfrecord")) == [
        "test-00000-of-00002.tfrecord", "test-00001-of-00002.tfrecord",
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    got = {}
    for split in ("train", "test"):
        for b in build_dataset(out, split, "raw", batch_size=2, training=False):
            for k, sid in enumerate(b["subject_id"].numpy()):
                got[sid.decode()] = (b["image"][k].numpy(), b["tissue"][k].numpy(),
                                     b["presence"][k].numpy(), b["mask"][k].numpy())
    rgb, labels = items[2].load()
    image, tissue, pres, mask = got["im2"]
    assert image.shape == (32, 32, 3)
    np.testing.assert_allclose(image, rgb, atol=0.5 / schema.DEFAULT_QUANT_MAX + 1e-6)
    np.testing.assert_array_equal(tissue, labels)
    assert set(np.unique(tissue)) == {0, 3} and mask.max() == 0
    np.testing.assert_array_equal(pres, [0.0, 1.0])


def test_missing_masks_and_labels_reported_together(tmp_path):
    _folder(tmp_path, n=3)
    os.remove(tmp_path / "mask" / "im1.png")
    pd.DataFrame([{"file": "im0.png", "class": "x"}]).to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(mf.ManifestError) as err:
        ci.folder_items(str(tmp_path / "img"), 32, mask_dir=str(tmp_path / "mask"),
                        labels_csv=str(tmp_path / "l.csv"))
    assert "3 problem(s)" in str(err.value) and "im1: no mask" in str(err.value)


def test_skimage_samples_cli(tmp_path):
    out = tmp_path / "nat"
    args = [sys.executable, "-m", "tfrecords_tools.convert_images", "--from_skimage_samples",
            "--num_images", "12", "--image_size", "32", "--num_seg_classes", "4",
            "--splits", "train=8,val=2,test=2", "--num_shards", "2", "--out_dir", str(out)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = schema.read_meta(str(out))
    assert meta["synthetic"] is True and meta["channels"] == 3
    assert meta["presence_labels"][0] == "astronaut" and meta["num_tissue_classes"] == 4
    assert {k: v["slices"] for k, v in meta["splits"].items()} == {"train": 8, "val": 2,
                                                                   "test": 2}
    table = pd.read_csv(out / schema.SUBJECTS_CSV)
    assert len(table) == 12 and table.subject_id.is_unique
    # Rerun (in process, same flags) resumes: nothing rewritten.
    shard = out / "train-00000-of-00002.tfrecord"
    before = os.stat(shard).st_mtime_ns
    again = ci.run_flags(ci.ImageFlags(
        image_dir="", mask_dir="", labels_csv="", from_skimage_samples=True, num_images=12,
        num_seg_classes=4, out_dir=str(out), image_size=32, num_shards=2,
        splits="train=8,val=2,test=2", seed=0, synthetic=False, progress=False))
    assert again["splits"] == meta["splits"] and os.stat(shard).st_mtime_ns == before


def test_skimage_sample_labels_deterministic_and_varied():
    from tfrecords_tools import natural_samples as ns
    a = ns.sample_items(4, 32, 4, seed=3)
    b = ns.sample_items(4, 32, 4, seed=3)
    assert [i.key for i in a] == [i.key for i in b]
    rgb, labels = a[0].load()
    rgb2, labels2 = b[0].load()
    np.testing.assert_array_equal(labels, labels2)
    assert rgb.shape == (32, 32, 3) and 0 <= rgb.min() and rgb.max() <= 1
    assert len(np.unique(labels)) >= 2 and labels.max() < 4
    assert a[1].presence == (0.0, 1.0) + (0.0,) * 6
