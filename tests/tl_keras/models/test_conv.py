"""``models.conv.Conv2D``: Keras' outputs and gradients, a matrix-product kernel gradient."""
import numpy as np
import pytest


def _pair(kernel, padding, strides, use_bias, seed=0):
    """(ours, Keras') single-layer models with the same weights."""
    import keras
    from tl_keras.models.conv import Conv2D
    models = []
    for cls in (Conv2D, keras.layers.Conv2D):
        inputs = keras.Input((9, 10, 3))
        layer = cls(4, kernel, strides=strides, padding=padding, use_bias=use_bias, name="c")
        models.append(keras.Model(inputs, layer(inputs)))
    rng = np.random.default_rng(seed)
    models[1].set_weights([rng.normal(size=w.shape).astype(np.float32)
                           for w in models[1].get_weights()])
    models[0].set_weights(models[1].get_weights())
    return models


def _outputs_and_gradients(model, x):
    import tensorflow as tf
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.cast(model(x, training=True), tf.float32)
        loss = tf.reduce_sum(y * tf.cos(y))
    return [y] + tape.gradient(loss, [x] + model.trainable_variables)


@pytest.mark.parametrize("kernel,padding,strides,use_bias", [
    (1, "same", 1, False), (3, "same", 1, True), (4, "same", 1, False),
    (1, "valid", 1, False), (3, "valid", 1, False), (3, "same", 2, True)])
@pytest.mark.parametrize("policy,rtol", [("float32", 1e-5), ("mixed_bfloat16", 2e-2)])
@pytest.mark.parametrize("method", ["taps", "patches"])
def test_outputs_and_gradients_equal_keras(kernel, padding, strides, use_bias, policy, rtol,
                                          method, monkeypatch):
    import keras
    import tensorflow as tf
    from tl_keras.models import conv
    # Take each matrix-product form for every kernel size and precision wherever it is
    # exact (a measurement may choose it for any of them).
    monkeypatch.setattr(conv, "gradient_method", lambda *a: method)
    keras.mixed_precision.set_global_policy(policy)
    try:
        ours, ref = _pair(kernel, padding, strides, use_bias)
        x = tf.constant(np.random.default_rng(1).normal(size=(2, 9, 10, 3)).astype(np.float32))
        got, want = _outputs_and_gradients(ours, x), _outputs_and_gradients(ref, x)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for a, b in zip(got, want):
        scale = float(np.max(np.abs(b.numpy())))
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol, atol=rtol * scale)


def test_matmul_gradient_only_where_exact():
    from tl_keras.models.conv import Conv2D
    applies = lambda **kw: Conv2D(2, dtype="mixed_bfloat16",  # noqa: E731
                                  **kw)._matmul_gradient_applies()
    assert applies(kernel_size=3, padding="same") and applies(kernel_size=1, padding="valid")
    assert not applies(kernel_size=3, padding="valid")
    assert not applies(kernel_size=3, padding="same", strides=2)
    assert not applies(kernel_size=3, padding="same", dilation_rate=2)


def test_fixed_rule_keeps_float32_on_tensorflows_kernel_gradient():
    from tl_keras.models.conv import matmul_gradient_pays
    assert matmul_gradient_pays((1, 1, 4, 4), "bfloat16")
    assert not matmul_gradient_pays((1, 1, 4, 4), "float32")


def test_every_choice_is_remembered_for_the_run_record(monkeypatch):
    """gradient_method remembers each shape's method (an unknown batch as '?'); taken()
    filters by compute dtype; a mocked GPU takes TensorFlow's kernel gradient."""
    from tl_keras.models import conv, machine
    monkeypatch.setattr(conv, "_taken", {})
    monkeypatch.setenv("TL_KERAS_KERNEL_GRADIENT", "rule")
    assert conv.gradient_method((2, 8, 8, 4), (1, 1, 4, 4), "bfloat16") == "taps"
    assert conv.gradient_method((None, 8, 8, 4), (3, 3, 4, 4), "float32") == "tensorflow"
    assert conv.taken() == {"bfloat16 2x8x8x4 1x1 -> 4": "taps",
                            "float32 ?x8x8x4 3x3 -> 4": "tensorflow"}
    assert conv.taken("bfloat16") == {"bfloat16 2x8x8x4 1x1 -> 4": "taps"}
    monkeypatch.setattr(machine, "device_types", lambda: {"CPU", "GPU"})
    assert conv.gradient_method((2, 8, 8, 4), (1, 1, 4, 4), "bfloat16") == "tensorflow"
    assert conv.taken("bfloat16") == {"bfloat16 2x8x8x4 1x1 -> 4": "tensorflow"}
    conv.clear_taken()
    assert conv.taken() == {}


def test_matmul_gradient_pays_for_1x1_and_wide_kernels_only():
    from tl_keras.models.conv import MATMUL_MIN_CHANNELS, matmul_gradient_pays
    assert matmul_gradient_pays((1, 1, 16, 2)) and matmul_gradient_pays((1, 1, 2048, 512))
    wide = MATMUL_MIN_CHANNELS
    assert matmul_gradient_pays((3, 3, wide, wide))
    assert not matmul_gradient_pays((3, 3, wide, wide - 1))  # decoder conv7: 256 -> 128
    assert not matmul_gradient_pays((3, 3, 16, 16))          # 256 px decoder output layer
    assert not matmul_gradient_pays((3, 3, 2048, 8))         # compress1


@pytest.mark.parametrize("kernel,channels,devices,expect_matmul", [
    (1, 4, {"CPU"}, True), (3, 4, {"CPU"}, False), (1, 4, {"CPU", "GPU"}, False)])
def test_gradient_graph_uses_the_chosen_kernel(kernel, channels, devices, expect_matmul,
                                               monkeypatch):
    """Under mixed bfloat16 on a CPU a 1x1 kernel gradient is a MatMul, a narrow 3x3 one
    oneDNN's; with a GPU (a mocked device list) always TensorFlow's."""
    import keras
    import tensorflow as tf
    from tl_keras.models import machine
    from tl_keras.models.conv import Conv2D
    monkeypatch.setattr(machine, "device_types", lambda: set(devices))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = Conv2D(channels, kernel, padding="same", use_bias=False)
        layer.build((2, 8, 8, channels))

        @tf.function
        def grad(x):
            with tf.GradientTape() as tape:
                y = tf.reduce_sum(tf.cast(layer(x), tf.float32))
            return tape.gradient(y, layer.kernel)
        graph = grad.get_concrete_function(tf.TensorSpec((2, 8, 8, channels))).graph
    finally:
        keras.mixed_precision.set_global_policy("float32")
    ops = {op.type for op in graph.get_operations()}
    for fn in graph._functions.values():  # the custom gradient's function body
        ops |= {op.type for op in fn.graph.get_operations()} if hasattr(fn, "graph") else set()
    assert ("MatMul" in ops or "BatchMatMulV2" in ops) == expect_matmul, sorted(ops)
    assert ("Conv2DBackpropFilter" in ops) != expect_matmul, sorted(ops)


@pytest.mark.parametrize("method", ["taps", "patches"])
def test_kernel_gradient_by_hand(method):
    """A hand-computed case: one channel in and out, 3x3 kernel, 2x2 image."""
    import tensorflow as tf
    from tl_keras.models.conv import kernel_gradient
    x = tf.constant([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None]
    dy = tf.ones((1, 2, 2, 1))
    grad = kernel_gradient(x, dy, (3, 3, 1, 1), method).numpy()[:, :, 0, 0]
    # dK[i, j] = sum over output positions (y, x) of input[y + i - 1, x + j - 1] (zero outside):
    # the corner taps see one input pixel, the edge taps two, the centre all four.
    np.testing.assert_array_equal(grad, [[1, 3, 2], [4, 10, 6], [3, 7, 4]])


def test_weights_file_loads_into_keras_conv(tmp_path):
    """Same class name as Keras' layer: .weights.h5 files are interchangeable."""
    import tensorflow as tf
    ours, ref = _pair(3, "same", 1, True)
    ref.set_weights([w * 0 + 0.5 for w in ref.get_weights()])
    path = str(tmp_path / "m.weights.h5")
    ours.save_weights(path)
    ref.load_weights(path)
    x = tf.ones((1, 9, 10, 3))
    np.testing.assert_array_equal(ours(x).numpy(), ref(x).numpy())


def test_keras_json_of_plain_conv_loads_as_ours():
    import keras
    from tl_keras.models.batchnorm import fused_keras_json
    from tl_keras.models.conv import Conv2D
    ours, ref = _pair(1, "same", 1, False)
    loaded = keras.models.model_from_json(fused_keras_json(ref.to_json()))
    assert isinstance(loaded.get_layer("c"), Conv2D)
    assert "tl_keras>Conv2D" in ours.to_json()
    assert isinstance(keras.models.model_from_json(ours.to_json()).get_layer("c"), Conv2D)


def test_kernel_gradient_measured_once_per_machine_and_shape(monkeypatch):
    """auto: a shape is measured once, kept in the speed cache and not measured again
    (another process: the cache alone); forced modes and GPUs measure nothing."""
    from tl_keras.models import conv, machine
    monkeypatch.setenv(conv.KERNEL_GRADIENT_ENV, "auto")
    monkeypatch.setattr(conv, "_choices", {})
    calls = []

    def fake(input_shape, kernel_shape, dtype):
        calls.append((tuple(input_shape), dtype))
        return {"matmul": True, "matmul_ms": 1.0, "tensorflow_ms": 2.0,  # against the rule
                "patches_ms": 3.0}
    monkeypatch.setattr(conv, "measure_kernel_gradients", fake)
    shape, kernel = (2, 8, 8, 4), (3, 3, 4, 4)
    assert not conv.matmul_gradient_pays(kernel, "bfloat16")
    assert conv.use_matmul_gradient(shape, kernel, "bfloat16") and len(calls) == 1
    assert conv.use_matmul_gradient(shape, kernel, "bfloat16") and len(calls) == 1
    monkeypatch.setattr(conv, "_choices", {})  # a new process: the cache answers
    assert conv.use_matmul_gradient(shape, kernel, "bfloat16") and len(calls) == 1
    key = conv.shape_key(shape, kernel, "bfloat16")
    assert machine.cached(conv.CACHE_SECTION, key)["tensorflow_ms"] == 2.0
    assert not conv.use_matmul_gradient((None, 8, 8, 4), kernel, "bfloat16")  # rule
    monkeypatch.setenv(conv.KERNEL_GRADIENT_ENV, "tensorflow")
    assert not conv.use_matmul_gradient(shape, kernel, "bfloat16")
    monkeypatch.setenv(conv.KERNEL_GRADIENT_ENV, "auto")
    monkeypatch.setattr(machine, "device_types", lambda: {"CPU", "GPU"})
    assert not conv.use_matmul_gradient((2, 4, 4, 8), (1, 1, 8, 8), "bfloat16")
    assert len(calls) == 1
    monkeypatch.setenv(conv.KERNEL_GRADIENT_ENV, "fast")
    with pytest.raises(ValueError, match="TL_KERAS_KERNEL_GRADIENT"):
        conv.kernel_gradient_mode()


def test_kernel_gradient_measurement_times_every_form():
    from tl_keras.models import conv
    entry = conv.measure_kernel_gradients((2, 8, 8, 4), (3, 3, 4, 8), "float32")
    assert entry["matmul_ms"] > 0 and entry["tensorflow_ms"] > 0 and entry["patches_ms"] > 0
    assert entry["matmul"] == (min(entry["matmul_ms"], entry["patches_ms"])
                               < entry["tensorflow_ms"])
    assert "patches_ms" not in conv.measure_kernel_gradients((2, 8, 8, 4), (1, 1, 4, 8),
                                                             "float32")


def test_fastest_form_taken_and_old_entries_measured_again(monkeypatch):
    """The fastest of the measured forms is taken; a k x k entry cached before the patch
    form existed (no ``patches_ms``) is measured again, a 1x1 one is not."""
    from tl_keras.models import conv, machine
    monkeypatch.setenv(conv.KERNEL_GRADIENT_ENV, "auto")
    monkeypatch.setattr(conv, "_choices", {})
    old = {"matmul": True, "matmul_ms": 2.0, "tensorflow_ms": 3.0}
    wide, narrow, shape = (3, 3, 4, 4), (1, 1, 4, 4), (2, 8, 8, 4)
    for kernel in (wide, narrow):
        machine.store(conv.CACHE_SECTION, conv.shape_key(shape, kernel, "bfloat16"), old)
    monkeypatch.setattr(conv, "measure_kernel_gradients",
                        lambda *a: {**old, "patches_ms": 1.0})
    assert conv.gradient_method(shape, wide, "bfloat16") == "patches"
    assert conv.gradient_method(shape, narrow, "bfloat16") == "taps"
    assert machine.cached(conv.CACHE_SECTION,
                          conv.shape_key(shape, wide, "bfloat16"))["patches_ms"] == 1.0


def test_inference_neither_chooses_nor_measures(monkeypatch):
    """Without a gradient tape (prediction, evaluation) no kernel gradient is timed."""
    import numpy as np
    from tl_keras.models import conv
    monkeypatch.setenv(conv.KERNEL_GRADIENT_ENV, "auto")
    monkeypatch.setattr(conv, "_choices", {})
    monkeypatch.setattr(conv, "use_matmul_gradient", lambda *a: pytest.fail("chose"))
    layer = conv.Conv2D(4, 1, padding="same")
    assert layer(np.ones((2, 8, 8, 4), np.float32)).shape == (2, 8, 8, 4)
