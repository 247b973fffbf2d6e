import numpy as np
import pytest

from tfrecords_tools import schema

from tests.helpers import make_tiny_dataset


def test_round_trip_and_reader(tmp_path):
    import tensorflow as tf

    from tfrecords_tools import schema
    from tl_keras.data import build_dataset

    rng = np.random.default_rng(1)
    img = rng.random((32, 32)).astype(np.float32)
    mask = (rng.random((32, 32)) > 0.5).astype(np.uint8)
    tissue = rng.integers(0, 4, (32, 32))
    rec = schema.make_example(subject_id="s1", slice_index=7, image=img, mask=mask,
                              tissue=tissue, num_tissue_classes=4, presence=[1, 0, 1])
    meta = {"image_size": [32, 32], "channels": 1, "num_mask_classes": 2,
            "num_tissue_classes": 4, "presence_labels": ["a", "b", "c"], "splits": {}}
    ex = schema.parse_fn(meta)(tf.constant(rec))
    assert np.abs(ex["image"].numpy()[..., 0] - img).max() <= 0.5 / schema.DEFAULT_QUANT_MAX + 1e-7
    np.testing.assert_array_equal(ex["mask"].numpy(), mask)
    np.testing.assert_array_equal(ex["tissue"].numpy(), tissue)
    np.testing.assert_array_equal(ex["mask_counts"].numpy(), np.bincount(mask.ravel(), minlength=2))
    assert ex["subject_id"].numpy() == b"s1" and int(ex["slice_index"]) == 7

    make_tiny_dataset(str(tmp_path), size=32)
    ds = build_dataset(str(tmp_path), "train", "segmentation", 2, training=True,
                       subjects=["train000", "train001"], seed=3)
    n = 0
    for x, y in ds:
        assert x.shape == (2, 32, 32, 3) and y.shape == (2, 32, 32)
        assert float(tf.reduce_min(x)) >= -1.0 and float(tf.reduce_max(x)) <= 1.0
        n += x.shape[0]
    assert n == 6  # 2 subjects x 3 slices


def test_parse_selected_fields_and_tasks(tmp_path):
    import tensorflow as tf

    from tfrecords_tools import schema
    from tl_keras.data import build_dataset
    meta = make_tiny_dataset(str(tmp_path), size=32)
    rec = next(iter(tf.data.TFRecordDataset(
        sorted(str(p) for p in tmp_path.glob("train-*.tfrecord")))))
    ex = schema.parse_fn(meta, ("image", "mask"))(rec)
    assert set(ex) == {"image", "mask"}
    full = schema.parse_fn(meta)(rec)
    np.testing.assert_array_equal(ex["mask"].numpy(), full["mask"].numpy())
    try:
        schema.parse_fn(meta, ("image", "nope"))
    except ValueError as e:
        assert "nope" in str(e)
    else:
        raise AssertionError("unknown field accepted")
    shapes = {"segmentation": (2, 32, 32), "target": (2, 32, 32), "classification": (2, 16),
              "autoencoding": (2, 32, 32, 1)}
    for task, shape in shapes.items():
        x, y = next(iter(build_dataset(str(tmp_path), "val", task, 2, training=False,
                                       input_channels=1)))
        assert x.shape == (2, 32, 32, 1) and tuple(y.shape) == shape, task
        if task == "autoencoding":
            np.testing.assert_array_equal(x.numpy(), y.numpy())
    # the augmentation hook sees [0, 1] images before batching
    flip = lambda img, y: (1.0 - img, y)  # noqa: E731
    x0, _ = next(iter(build_dataset(str(tmp_path), "val", "target", 2, training=False)))
    x1, _ = next(iter(build_dataset(str(tmp_path), "val", "target", 2, training=False,
                                    augment=flip)))
    np.testing.assert_allclose(x1.numpy(), -x0.numpy(), atol=1e-6)


def _write(tmp_path, meta):
    import json
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    return str(tmp_path)


_FIRST_VERSION = {  # the keys the first conversions wrote: no checksums, versions,
    "image_size": [32, 32], "channels": 1, "num_mask_classes": 2,  # ignore_class, nor
    "num_tissue_classes": 4, "presence_labels": [],  # a split's "complete"
    "splits": {"train": {"subjects": ["a", "b"], "slices": 6, "shards": 1}}}


def test_dataset_meta_reads_files_of_earlier_versions(tmp_path):
    from tfrecords_tools.dataset_meta import DatasetMeta, SplitInfo
    meta = schema.read_meta(_write(tmp_path, _FIRST_VERSION))
    assert isinstance(meta, DatasetMeta)
    assert meta.image_size == (32, 32) and meta.num_mask_classes == 2
    assert meta.split("train") == SplitInfo(("a", "b"), 6, 1, complete=True)
    assert meta.checksums == {} and meta.ignore_class is None and meta.complete
    assert meta.quant_max == schema.DEFAULT_QUANT_MAX and meta.split("val") is None
    assert meta.splits["train"].subjects == ("a", "b") and meta.errors == 0
    assert meta.context_slices == 0  # written before 2.5-D: no neighbours stored
    with pytest.raises(TypeError):  # read by attribute only: no key access to dig into
        meta["splits"]
    assert DatasetMeta.from_dict(meta.to_dict()) == meta
    # A square size written as one number.
    assert schema.read_meta(_write(tmp_path, {**_FIRST_VERSION, "image_size": 16})
                            ).image_size == (16, 16)


@pytest.mark.parametrize("change, key", [
    ({"channels": "one"}, "'channels'"),
    ({"splits": {"train": {"subjects": ["a"], "slices": 1.5, "shards": 1}}}, "'slices'"),
    ({"splits": {"train": {"subjects": ["a"], "shards": 1}}}, "'slices'"),
    ({"image_size": [1, 2, 3]}, "'image_size'"),
    ({"num_classes": 2}, "num_classes"),
    ({"num_mask_classes": None}, "'num_mask_classes'"),
    ({"context_slices": 2}, "'context_slices' = 2: must be 0 or 1"),
])
def test_dataset_meta_errors_name_the_file_and_key(tmp_path, change, key):
    from tl_common.cli import UserError
    path = _write(tmp_path, {**_FIRST_VERSION, **change})
    with pytest.raises(UserError) as e:
        schema.read_meta(path)
    assert str(tmp_path / "dataset.json") in str(e.value) and key in str(e.value)
    assert "\n" not in str(e.value)


def test_dataset_json_is_checked_before_it_is_written(tmp_path):
    from tfrecords_tools.shards import writer as shards
    from tl_common.records import RecordError
    with pytest.raises(RecordError, match="missing key 'splits'"):
        shards.write_dataset_json(str(tmp_path), {k: v for k, v in _FIRST_VERSION.items()
                                                  if k != "splits"})
    assert not (tmp_path / "dataset.json").exists()
