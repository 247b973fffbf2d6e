"""The fused BatchNormalization: same training function, moving statistics, variables and
files as Keras' own, with the fused kernel in training."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tl_keras.models.batchnorm import fused_keras_json
from tl_keras.models.batchnorm import BatchNormalization as FusedBN


def _pair(policy="float32", **kwargs):
    """A Keras BN and a fused BN with equal (non-trivial) weights."""
    layers = []
    for cls in (keras.layers.BatchNormalization, FusedBN):
        layer = cls(momentum=0.9, epsilon=1e-5, dtype=policy, **kwargs)
        layer.build((None, 6, 5, 4))
        layers.append(layer)
    rng = np.random.default_rng(0)
    for ref, fused in zip(layers[0].weights, layers[1].weights):
        value = rng.uniform(0.5, 1.5, ref.shape).astype("float32")
        ref.assign(value)
        fused.assign(value)
    return layers


def _train(layer, xs):
    """Outputs and input gradients of a few training calls (one per batch)."""
    outputs, grads = [], []
    for x in xs:
        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 3)
        outputs.append(tf.cast(y, tf.float32).numpy())
        grads.append(tf.cast(tape.gradient(loss, x), tf.float32).numpy())
    return outputs, grads


@pytest.mark.parametrize("policy,dtype,tol", [("float32", "float32", 1e-5),
                                              ("mixed_bfloat16", "bfloat16", 3e-2)])
def test_training_matches_keras(policy, dtype, tol):
    ref, fused = _pair(policy)
    rng = np.random.default_rng(1)
    xs = [tf.cast(rng.normal(2.0, 3.0, (3, 6, 5, 4)).astype("float32"), dtype)
          for _ in range(4)]
    (y_ref, g_ref), (y_fused, g_fused) = _train(ref, xs), _train(fused, xs)
    for a, b in zip(y_ref + g_ref, y_fused + g_fused):
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol * max(1.0, np.abs(a).max()))
    # Moving statistics: Keras momentum and the *biased* batch variance (the fused
    # kernel's unbiased variance differs by n / (n - 1) = 90 / 89 here, above 1e-6).
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(getattr(fused, name).numpy(), getattr(ref, name).numpy(),
                                   rtol=1e-6 if dtype == "float32" else 1e-2)
    assert fused.moving_variance.dtype == "float32"


def test_inference_unchanged_and_frozen_layer_uses_moving_statistics():
    ref, fused = _pair()
    x = tf.random.stateless_normal((2, 6, 5, 4), seed=(1, 2))
    np.testing.assert_array_equal(fused(x, training=False).numpy(),
                                  ref(x, training=False).numpy())
    fused.trainable = ref.trainable = False
    before = fused.moving_mean.numpy()
    np.testing.assert_array_equal(fused(x, training=True).numpy(),
                                  ref(x, training=True).numpy())
    np.testing.assert_array_equal(fused.moving_mean.numpy(), before)


def test_dense_input_falls_back_to_keras():
    ref = keras.layers.BatchNormalization()
    fused = FusedBN()
    x = tf.random.stateless_normal((4, 7), seed=(3, 4))
    np.testing.assert_allclose(fused(x, training=True).numpy(),
                               ref(x, training=True).numpy(), atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance.numpy(), ref.moving_variance.numpy(),
                               rtol=1e-6)


def _model(bn_cls):
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    x = bn_cls(name="conv_bn")(x)
    return keras.Model(inputs, x)


def test_weights_file_and_keras_json_compatible(tmp_path):
    old = _model(keras.layers.BatchNormalization)
    rng = np.random.default_rng(2)
    for w in old.weights:
        w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    path = str(tmp_path / "m.weights.h5")
    old.save_weights(path)
    new = _model(FusedBN)
    new.load_weights(path)
    assert [w.path for w in new.weights] == [w.path for w in old.weights]
    x = tf.random.stateless_normal((2, 8, 8, 2), seed=(5, 6))
    np.testing.assert_array_equal(new(x).numpy(), old(x).numpy())
    # JSON written before the fused layer ("BatchNormalization") loads as fused.
    loaded = keras.models.model_from_json(fused_keras_json(old.to_json()))
    assert isinstance(loaded.get_layer("conv_bn"), FusedBN)
    # The fused layer's own JSON and a whole saved model load without custom objects.
    config = json.loads(new.to_json())
    assert "tl_keras>BatchNormalization" in json.dumps(config)
    assert isinstance(keras.models.model_from_json(new.to_json()).get_layer("conv_bn"),
                      FusedBN)
    new.save(str(tmp_path / "m.keras"))
    reloaded = keras.models.load_model(str(tmp_path / "m.keras"))
    np.testing.assert_array_equal(reloaded(x).numpy(), old(x).numpy())


@pytest.mark.parametrize("devices,fused", [({"CPU"}, True), ({"CPU", "GPU"}, True),
                                           ({"CPU", "TPU"}, False)])
def test_fused_kernel_only_where_every_device_has_it(devices, fused, monkeypatch):
    """A mocked device list: CPU and GPU run FusedBatchNormV3, another device Keras' code."""
    import tensorflow as tf
    from tl_keras.models import machine
    monkeypatch.setattr(machine, "device_types", lambda: set(devices))
    layer = FusedBN()
    layer.build((2, 4, 4, 3))
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(
        tf.TensorSpec((2, 4, 4, 3))).graph
    ops = {op.type for op in graph.get_operations()}
    assert ("FusedBatchNormV3" in ops) == fused, sorted(ops)
