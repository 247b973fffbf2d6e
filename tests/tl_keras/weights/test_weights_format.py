"""Our encoder format (save / load / init_encoder specs) and the Keras Applications mapping."""
import re

import numpy as np
import pytest


def _randomise(model, seed):
    """Give every weight (BN statistics included) distinct random values."""
    rng = np.random.default_rng(seed)
    for var in model.weights:
        low = 0.5 if "variance" in var.path else -0.5
        var.assign(rng.uniform(low, low + 1.0, var.shape).astype("float32"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from tl_keras.models import build_encoder
    from tl_keras.weights import save_encoder
    enc = build_encoder(32, 3, latent_channels=4)
    _randomise(enc, 0)
    out = tmp_path_factory.mktemp("enc") / "brain_ae"
    save_encoder(enc, str(out), source_task="autoencoding", domain="brain-mri",
                 provenance={"run": "unit-test"})
    return enc, str(out)


def test_save_and_load_round_trip_exactly(saved):
    import tl_keras
    from tl_keras.weights import load_encoder, read_encoder_meta
    enc, path = saved
    meta = read_encoder_meta(path)
    assert meta.source_task == "autoencoding" and meta.domain == "brain-mri"
    assert (meta.input_channels, meta.latent_channels, meta.image_size) == (3, 4, (32, 32))
    assert meta.provenance == {"run": "unit-test"}
    assert meta.tl_keras_version == tl_keras.__version__
    loaded = load_encoder(path + "/encoder.json")
    for a, b in zip(enc.weights, loaded.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(enc(x, training=False).numpy(), loaded(x, training=False).numpy())


def test_init_encoder_from_dir_at_another_size_and_grey(saved):
    from tl_keras.models import build_encoder
    from tl_keras.weights import init_encoder, weight_map
    enc, path = saved
    bigger = build_encoder(64, 1, latent_channels=4)
    report = init_encoder(bigger, path)
    assert report.ok and len(report.matched) == 270
    src, dst = weight_map(enc), weight_map(bigger)
    for name, var in dst.items():
        expected = src[name].numpy()
        if name == "encoder/conv1/weights":
            expected = expected.sum(axis=2, keepdims=True)
        np.testing.assert_array_equal(var.numpy(), expected)


def test_init_encoder_specs_and_errors(saved, tmp_path):
    from tl_keras.models import build_encoder
    from tl_keras.weights import WeightLoadError, init_encoder
    _, path = saved
    enc = build_encoder(32, 3, latent_channels=8)
    before = enc.get_layer("compress1").kernel.numpy().copy()
    report = init_encoder(enc, "scratch")
    assert report.ok and not report.matched and "random" in report.summary()
    with pytest.raises(WeightLoadError, match=r"compress1/weights \(3, 3, 2048, 4\) vs \(3, 3, 2048, 8\)"):
        init_encoder(enc, path)  # latent channels differ
    np.testing.assert_array_equal(enc.get_layer("compress1").kernel.numpy(), before)
    with pytest.raises(WeightLoadError, match="does not exist"):
        init_encoder(enc, f"taskonomy:{tmp_path}/absent/model.permanent-ckpt")
    with pytest.raises(WeightLoadError, match="unknown kind 'imagenett'"):
        init_encoder(enc, "imagenett:/x")
    with pytest.raises(WeightLoadError, match="no encoder.json"):
        init_encoder(enc, str(tmp_path))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "encoder.json").write_text("{not json")
    with pytest.raises(WeightLoadError, match=re.escape(str(tmp_path / "broken" / "encoder.json"))):
        init_encoder(enc, str(tmp_path / "broken"))


def _keras_to_ours(name):
    """Independent re-statement of the Keras ResNet50 -> slim naming used by the loader."""
    if name.startswith("conv1_"):
        return "encoder__conv1" + ("__BatchNorm" if name.endswith("_bn") else "")
    stage, unit, branch, kind = re.fullmatch(r"conv(\d)_block(\d)_(\d)_(conv|bn)", name).groups()
    part = ["shortcut", "conv1", "conv2", "conv3"][int(branch)]
    out = f"encoder__block{int(stage) - 1}__unit_{unit}__bottleneck_v1__{part}"
    return out + ("__BatchNorm" if kind == "bn" else "")


def test_keras_applications_resnet50_weights_land_on_mapped_layers(tmp_path):
    import keras

    from tl_keras.models import build_encoder
    from tl_keras.weights import init_encoder
    k = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    _randomise(k, 2)
    path = str(tmp_path / "resnet50_notop.weights.h5")
    k.save_weights(path)
    enc = build_encoder(32)
    report = init_encoder(enc, "imagenet:" + path)
    assert report.ok and len(report.matched) == 53 * 5
    assert sorted(report.left_random)[0] == "compress1/BatchNorm/beta" and len(report.left_random) == 5
    checked = 0
    for layer in k.layers:
        if not layer.weights:
            continue
        ours = enc.get_layer(_keras_to_ours(layer.name))
        if layer.name.endswith("_conv"):
            np.testing.assert_array_equal(ours.kernel.numpy(), layer.kernel.numpy())
        else:
            bias = k.get_layer(layer.name[:-2] + "conv").bias.numpy()
            np.testing.assert_array_equal(ours.gamma.numpy(), layer.gamma.numpy())
            np.testing.assert_array_equal(ours.beta.numpy(), layer.beta.numpy())
            np.testing.assert_allclose(ours.moving_mean.numpy(), layer.moving_mean.numpy() - bias,
                                       rtol=1e-6)
            np.testing.assert_allclose(ours.moving_variance.numpy(),
                                       layer.moving_variance.numpy() + 1e-8, rtol=1e-6)
        checked += 1
    assert checked == 106  # 53 convs + 53 BNs: every Keras conv/BN weight was placed


def test_non_taskonomy_encoder_round_trips_through_init_encoder(tmp_path):
    """A custom Keras encoder (the quickstart's tiny network) is saved as Keras JSON and
    loads back into an encoder of the same architecture through init_encoder."""
    import numpy as np

    from tl_keras.models.small import tiny_encoder
    from tl_keras.weights import init_encoder, read_encoder_meta, save_encoder
    src = tiny_encoder(32, 3)
    save_encoder(src, str(tmp_path / "enc"), source_task="segmentation", domain="t1")
    assert read_encoder_meta(str(tmp_path / "enc")).architecture == "keras_json"
    dst = tiny_encoder(32, 3)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    assert not np.allclose(src(x).numpy(), dst(x).numpy())
    init_encoder(dst, str(tmp_path / "enc"))
    np.testing.assert_array_equal(src(x).numpy(), dst(x).numpy())
