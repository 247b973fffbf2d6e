"""Natural images -> shards: a folder with masks and class labels, and the skimage samples."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tfrecords_tools import convert_images as ci, schema
from tfrecords_tools.images import dataset as images
from tfrecords_tools.manifests import manifest as mf


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
    items, seg, presence = images.folder_items(str(tmp_path / "img"), 32,
                                           mask_dir=str(tmp_path / "mask"),
                                           labels_csv=str(tmp_path / "labels.csv"))
    assert seg == ["class_0", "class_1", "class_2", "class_3"] and presence == ["cat", "dog"]
    assert items[0].presence == (1.0, 1.0) and items[1].presence == (1.0, 0.0)
    out = str(tmp_path / "out")
    meta = images.write_image_dataset(items, out, seg_classes=seg, presence_labels=presence,
                                  image_size=32, num_shards=2, split_counts={"train": 3,
                                                                             "test": 2},
                                  progress=False)
    assert meta.channels == 3 and meta.splits["train"].slices == 3
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
        images.folder_items(str(tmp_path / "img"), 32, mask_dir=str(tmp_path / "mask"),
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
    assert meta.synthetic is True and meta.channels == 3
    assert meta.presence_labels[0] == "astronaut" and meta.num_tissue_classes == 4
    assert {k: v.slices for k, v in meta.splits.items()} == {"train": 8, "val": 2,
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
    assert again.splits == meta.splits and os.stat(shard).st_mtime_ns == before


def test_skimage_sample_labels_deterministic_and_varied():
    from tfrecords_tools.synthetic import natural_samples as ns
    a = ns.sample_items(4, 32, 4, seed=3)
    b = ns.sample_items(4, 32, 4, seed=3)
    assert [i.key for i in a] == [i.key for i in b]
    rgb, labels = a[0].load()
    rgb2, labels2 = b[0].load()
    np.testing.assert_array_equal(labels, labels2)
    assert rgb.shape == (32, 32, 3) and 0 <= rgb.min() and rgb.max() <= 1
    assert len(np.unique(labels)) >= 2 and labels.max() < 4
    assert a[1].presence == (0.0, 1.0) + (0.0,) * 6


def _taskonomy_tree(root, omnidata=False):
    """Two buildings, one folder per domain in each (or omnidata's domain/taskonomy/building).

    Label PNGs hold Taskonomy's values: 0 = unlabelled, 1..4 = classes here.
    Both buildings have a point 0 view 0, so pairing must be per building.
    """
    from skimage import io
    rng = np.random.default_rng(1)
    truth = {}
    for building, views in (("allensville", [(0, 0), (0, 1), (3, 2)]), ("beechwood", [(0, 0)])):
        for point, view in views:
            stem = f"point_{point}_view_{view}_domain_"
            for domain, folder in (("rgb", "rgb"), ("segmentsemantic", "segment_semantic"
                                                    if omnidata else "segmentsemantic"),
                                   ("depth_zbuffer", "depth_zbuffer")):
                where = (root / folder / "taskonomy" / building) if omnidata else \
                    (root / building / folder)
                where.mkdir(parents=True, exist_ok=True)
                if domain == "segmentsemantic":
                    labels = rng.integers(0, 5, (24, 24)).astype(np.uint8)
                    truth[f"{building}_point_{point}_view_{view}"] = labels
                    io.imsave(str(where / f"{stem}{domain}.png"), labels, check_contrast=False)
                else:
                    io.imsave(str(where / f"{stem}{domain}.png"),
                              (rng.random((24, 24, 3)) * 255).astype(np.uint8),
                              check_contrast=False)
                (where / ".DS_Store").write_bytes(b"\0")
                (where / f"point_{point}_view_{view}_domain_point_info.json").write_text("{}")
    (root / "README.md").write_text("taskonomy sample")
    return truth


def test_taskonomy_layout_pairs_by_building_point_view_with_ignore_label(tmp_path):
    from tl_keras.data.dataset import build_dataset
    truth = _taskonomy_tree(tmp_path / "taskonomy")
    out = tmp_path / "out"
    ci.run_flags(ci.ImageFlags(
        image_dir="", mask_dir="", labels_csv="", from_skimage_samples=False, num_images=0,
        num_seg_classes=0, out_dir=str(out), image_size=24, num_shards=1, splits="train=4",
        seed=0, synthetic=False, progress=False, taskonomy_dir=str(tmp_path / "taskonomy")))
    meta = schema.read_meta(str(out))
    # Values 1..4 -> classes 0..3 (names keep the value); unlabelled 0 -> last class "ignore".
    assert meta.tissue_classes == ("class_1", "class_2", "class_3", "class_4", "ignore")
    assert meta.ignore_class == 4 and meta.preprocessing["ignore_label"] == 0
    got = {}
    for b in build_dataset(str(out), "train", "raw", batch_size=4, training=False):
        for k, sid in enumerate(b["subject_id"].numpy()):
            got[sid.decode()] = b["tissue"][k].numpy()
    assert sorted(got) == sorted(truth) == ["allensville_point_0_view_0",
                                            "allensville_point_0_view_1",
                                            "allensville_point_3_view_2",
                                            "beechwood_point_0_view_0"]
    for sid, labels in truth.items():
        np.testing.assert_array_equal(got[sid], np.where(labels == 0, 4, labels - 1))


def test_omnidata_layout_pairs_the_same_way(tmp_path):
    from tfrecords_tools.images.taskonomy_layout import taskonomy_pairs
    truth = _taskonomy_tree(tmp_path, omnidata=True)
    pairs = taskonomy_pairs(str(tmp_path))
    assert [p[0] for p in pairs] == sorted(truth)
    for sid, image, mask in pairs:
        building = sid.split("_point_")[0]
        assert os.path.join("rgb", "taskonomy", building) in image
        assert os.path.join("segment_semantic", "taskonomy", building) in mask
        assert os.path.basename(image)[:-len("rgb.png")] == \
            os.path.basename(mask)[:-len("segmentsemantic.png")]


def test_taskonomy_missing_labels_listed(tmp_path):
    from tfrecords_tools.images.taskonomy_layout import taskonomy_pairs
    _taskonomy_tree(tmp_path)
    os.remove(tmp_path / "beechwood" / "segmentsemantic" /
              "point_0_view_0_domain_segmentsemantic.png")
    with pytest.raises(mf.ManifestError, match="1 image.*beechwood_point_0_view_0: no point_0"):
        taskonomy_pairs(str(tmp_path))
    assert len(taskonomy_pairs(str(tmp_path), mask_domain="")) == 4


@pytest.mark.parametrize("method", ["median_frequency", "none"])
def test_ignored_pixels_are_left_out_of_the_loss(tmp_path, method):
    """Class weight 0 for the ignore class: the loss does not change with the logits there."""
    import tensorflow as tf
    from tfrecords_tools.images.taskonomy_layout import taskonomy_pairs
    from tl_keras.training.class_weights import class_weights_for
    from tl_keras.training.losses import weighted_cross_entropy
    truth = _taskonomy_tree(tmp_path / "t")
    pairs = taskonomy_pairs(str(tmp_path / "t"))
    items, seg, presence = images.image_items(pairs, 24, ignore_label=0)
    meta = images.write_image_dataset(items, str(tmp_path / "out"), seg_classes=seg,
                                  presence_labels=presence, image_size=24, num_shards=1,
                                  split_counts={"train": 4}, progress=False)
    weights = class_weights_for(str(tmp_path / "out"), "train", "tissue", meta, method)
    assert weights[meta.ignore_class] == 0 and (weights[:4] > 0).all()
    labels = np.stack([np.where(v == 0, 4, v - 1) for v in truth.values()]).astype(np.int32)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=labels.shape + (5,)).astype(np.float32)
    other = logits.copy()
    other[labels == 4] = rng.normal(size=(int((labels == 4).sum()), 5)) * 10
    a = weighted_cross_entropy(tf.constant(labels), tf.constant(logits), weights)
    b = weighted_cross_entropy(tf.constant(labels), tf.constant(other), weights)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    changed = logits.copy()
    changed[labels == 0, 0] += 3.0  # a labelled pixel's true-class logit does count
    c = weighted_cross_entropy(tf.constant(labels), tf.constant(changed), weights)
    assert not np.allclose(a.numpy(), c.numpy())
