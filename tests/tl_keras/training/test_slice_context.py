"""2.5-D input: conversion stores each slice's axial neighbours (--context_slices) and
training stacks [previous, slice, next] as the 3 input channels (--slice_context)."""
import json
import os
import shutil

import numpy as np
import pytest

from tests.helpers import make_mni_cohort, mni_cohort_config
from tfrecords_tools import schema
from tfrecords_tools.conversion import pipeline as cv, subject_cache

TOL = 0.5 / schema.DEFAULT_QUANT_MAX + 1e-6


@pytest.fixture(scope="module")
def context_data(tmp_path_factory):
    """The 4 mm MNI cohort converted without and then (a copy) with neighbours."""
    base = tmp_path_factory.mktemp("context")
    manifest = make_mni_cohort(str(base / "scans"))
    plain = str(base / "plain")
    cv.convert(manifest, plain, mni_cohort_config(), num_shards=2, progress=False)
    ctx = str(base / "ctx")
    shutil.copytree(plain, ctx)  # the subject caches are reused: only shards are rewritten
    meta = cv.convert(manifest, ctx, mni_cohort_config(), num_shards=2, progress=False,
                      overwrite=True, context_slices=1)
    return plain, ctx, meta


def test_neighbours_repeat_the_edge_slices():
    volume = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2)
    np.testing.assert_array_equal(schema.neighbours(volume, 0)[..., 0], volume[0])
    np.testing.assert_array_equal(schema.neighbours(volume, 0)[..., 1], volume[1])
    np.testing.assert_array_equal(schema.neighbours(volume, 1)[..., 0], volume[0])
    np.testing.assert_array_equal(schema.neighbours(volume, 2)[..., 1], volume[2])


def test_conversion_stores_the_adjacent_slices(context_data):
    from tl_keras.data.dataset import build_dataset
    plain, ctx, meta = context_data
    assert meta.context_slices == 1
    assert schema.context_slices(schema.read_meta(plain)) == 0
    volume = subject_cache.load_cache(subject_cache.cache_path(ctx, "sub03"))["image"]
    batches = list(build_dataset(ctx, "test", "raw", 4, training=False, slice_context=True))
    image = np.concatenate([b["image"].numpy() for b in batches])
    idx = np.concatenate([b["slice_index"].numpy() for b in batches])
    assert image.shape == (13, 64, 64, 3) and list(idx) == list(range(15, 28))
    z = np.arange(13)
    np.testing.assert_allclose(image[..., 1], volume, atol=TOL)
    np.testing.assert_allclose(image[..., 0], volume[np.maximum(z - 1, 0)], atol=TOL)
    np.testing.assert_allclose(image[..., 2], volume[np.minimum(z + 1, 12)], atol=TOL)
    assert np.abs(image[..., 0] - image[..., 1]).max() > 0.05  # real neighbours, not copies
    # Without --slice_context the same shards read as single grey slices.
    single = next(iter(build_dataset(ctx, "test", "raw", 4, training=False)))
    assert single["image"].shape[-1] == 1 and "context" not in single


def test_training_input_is_the_scaled_stack(context_data):
    from tl_keras.data.dataset import build_dataset
    _, ctx, _ = context_data
    raw = next(iter(build_dataset(ctx, "train", "raw", 3, training=False,
                                  slice_context=True)))["image"].numpy()
    x, y = next(iter(build_dataset(ctx, "train", "target", 3, training=False,
                                   slice_context=True)))
    assert x.shape == (3, 64, 64, 3) and y.shape == (3, 64, 64)
    np.testing.assert_allclose(x.numpy(), raw * 2 - 1, atol=1e-6)
    assert x.numpy().min() >= -1 and x.numpy().max() <= 1


def test_finetune_cli_trains_and_evaluates_with_context(context_data, tmp_path, capsys):
    from tl_keras import finetune
    _, ctx, _ = context_data
    run = tmp_path / "run"
    code = finetune.main(["tl_keras.finetune", f"--data_dir={ctx}", f"--model_dir={run}",
                          "--slice_context", "--network=tiny", "--decoder_variant=unet",
                          "--max_steps=2", "--batch_size=2", "--mixed_precision=none",
                          "--novalidate", "--eval_split=test"])
    assert code == 0, capsys.readouterr().err[-2000:]
    with open(run / "export" / "model.json") as f:
        exported = json.load(f)
    assert exported["slice_context"] is True and exported["input_channels"] == 3
    with open(run / "result.json") as f:
        result = json.load(f)
    assert result["test_n_slices"] == 13 and 0 <= result["test_dice"] <= 1


@pytest.mark.parametrize("args,data,message", [
    (["--slice_context", "--input_channels=1"], "ctx", "needs --input_channels 3"),
    (["--slice_context"], "plain", "converted without --context_slices"),
])
def test_bad_context_flags_are_one_line(context_data, tmp_path, capsys, args, data, message):
    from tl_keras import finetune
    plain, ctx, _ = context_data
    code = finetune.main(["tl_keras.finetune", f"--data_dir={ {'plain': plain, 'ctx': ctx}[data] }",
                          f"--model_dir={tmp_path / 'run'}", *args])
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("tl_keras.finetune: error:")]
    assert code == 1 and len(lines) == 1 and message in lines[0], err[-2000:]
    assert not os.path.exists(tmp_path / "run")


def test_dataset_refuses_context_it_does_not_have(context_data):
    from tfrecords_tools.errors import DataSetError
    from tl_keras.data.dataset import build_dataset
    plain, ctx, _ = context_data
    with pytest.raises(DataSetError, match="--context_slices"):
        build_dataset(plain, "test", "raw", 2, training=False, slice_context=True)
    with pytest.raises(DataSetError, match="input_channels=1"):
        build_dataset(ctx, "test", "target", 2, training=False, slice_context=True,
                      input_channels=1)


def test_convert_cli_flag_and_changed_context_refused(context_data, tmp_path, capsys):
    from tfrecords_tools import convert
    plain, _, _ = context_data
    manifest = os.path.join(os.path.dirname(plain), "scans", "manifest.csv")
    out = tmp_path / "out"
    shutil.copytree(plain, out)
    # Switching --context_slices on an existing conversion needs --overwrite.
    code = convert.main(["convert", f"--manifest={manifest}", f"--out_dir={out}",
                         "--num_shards=2", "--context_slices", "--noprogress",
                         "--skip_registration", "--resolution=4", "--crop_top=80",
                         "--crop_bottom=60"])
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if "error:" in l]
    assert code == 1 and len(lines) == 1 and "context_slices: 0 -> 1" in lines[0], err[-2000:]


def test_prediction_from_a_scan_stacks_the_neighbours():
    from tests.helpers import threshold_model
    from tl_keras.evaluation.predict import predict_slices
    model = threshold_model(size=8)
    kernel, bias = model.get_layer("logits").get_weights()
    kernel[:] = 0
    kernel[0, 0, 0, 1] = 1.0  # class 1 where the first channel (the previous slice) is bright
    model.get_layer("logits").set_weights([kernel, bias])
    slices = np.stack([np.full((8, 8), v, np.float32) for v in (0.9, 0.1, 0.9)])
    label = lambda probs: probs.argmax(-1)[:, 0, 0].tolist()  # noqa: E731
    assert label(predict_slices(model, slices, 3)) == [1, 0, 1]  # the slice itself
    # 2.5-D: the previous slice, the first one standing in for its own
    assert label(predict_slices(model, slices, 3, slice_context=True)) == [1, 1, 0]
