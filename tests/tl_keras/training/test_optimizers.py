"""The fused Adam updates equal Keras' element-wise ones, and restore their checkpoints."""
import numpy as np
import pytest

LR, WD, EPS = 1e-2, 2e-3, 1e-8
#: Weights are of unit scale and move by ~LR per step. TensorFlow's kernel rounds 1 - beta_2
#: in float32 (0.0009999871 instead of 0.001), so v, and the update, differ by ~1e-5 relative.
ATOL = 1e-6


def _random_problem(seed=0):
    rng = np.random.default_rng(seed)
    w0 = [rng.normal(size=s).astype(np.float32) for s in ((3, 3, 4, 8), (8,), (5,))]
    grads = [[rng.normal(size=w.shape).astype(np.float32) for w in w0] for _ in range(5)]
    return w0, grads


def _run(opt, w0, grads):
    import keras
    variables = [keras.Variable(w) for w in w0]
    for g in grads:
        opt.apply([keras.ops.convert_to_tensor(x) for x in g], variables)
    return variables


def _reference_adamw():
    # Keras' AdamW decays by weight_decay * lr; with a constant lr, WD / LR gives w -= WD * w.
    import keras
    return keras.optimizers.AdamW(learning_rate=LR, weight_decay=WD / LR, epsilon=EPS)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_decoupled_adamw_equals_keras_adamw_over_steps(amsgrad):
    import keras
    from tl_keras.training.optimizers import DecoupledAdamW
    w0, grads = _random_problem()
    ours_opt = DecoupledAdamW(learning_rate=LR, weight_decay=WD, epsilon=EPS, amsgrad=amsgrad)
    ref_opt = keras.optimizers.AdamW(learning_rate=LR, weight_decay=WD / LR, epsilon=EPS,
                                     amsgrad=amsgrad)
    ours, ref = _run(ours_opt, w0, grads), _run(ref_opt, w0, grads)
    for a, b, w in zip(ours, ref, w0):
        assert not np.allclose(a.numpy(), w)  # the weights moved
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=ATOL)
    for a, b in zip(ours_opt.variables, ref_opt.variables):  # iterations, m, v
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=ATOL)


def test_fused_adam_equals_keras_adam_in_a_tf_function():
    import keras
    import tensorflow as tf
    from tl_keras.training.optimizers import make_generator_optimizer
    w0, grads = _random_problem(1)

    def train(opt):
        variables = [keras.Variable(w) for w in w0]
        opt.build(variables)
        apply = tf.function(lambda g: opt.apply(g, variables))
        for g in grads:
            apply([tf.constant(x) for x in g])
        return [v.numpy() for v in variables]

    results = [train(make_generator_optimizer(LR, 0.0)),
               train(keras.optimizers.Adam(LR, epsilon=EPS))]
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=ATOL)


@pytest.fixture
def bfloat16_policy():
    import keras
    from tl_keras.training.strategy import set_precision
    set_precision("bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def _train_bn_net(opt, seed=0):
    """Three steps of a conv + fused BN net under the current dtype policy; the weights."""
    import keras
    import tensorflow as tf
    from tl_keras.models.batchnorm import BatchNormalization
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.ReLU()(BatchNormalization()(x))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(x))
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32))
    y = tf.constant(rng.uniform(-1, 1, (2, 16, 16, 2)).astype(np.float32))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.cast(model(x, training=True), tf.float32) - y))
        opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)

    for _ in range(3):
        step()
    return [w.numpy() for w in model.weights]


def test_decoupled_adamw_equals_keras_adamw_under_mixed_bfloat16(bfloat16_policy):
    from tl_keras.training.optimizers import DecoupledAdamW
    ours = _train_bn_net(DecoupledAdamW(learning_rate=LR, weight_decay=WD, epsilon=EPS))
    ref = _train_bn_net(_reference_adamw())
    for a, b in zip(ours, ref):
        assert a.dtype == np.float32  # master weights stay float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("weight_decay", [WD, 0.0])
def test_checkpoint_of_keras_optimizer_restores(tmp_path, weight_decay):
    """Checkpoints written with Keras' own Adam/AdamW (before the fused update) restore."""
    import keras
    import tensorflow as tf
    from tl_keras.training.optimizers import make_generator_optimizer
    w0, grads = _random_problem(2)
    old = (keras.optimizers.AdamW(LR, weight_decay=weight_decay / LR, epsilon=EPS)
           if weight_decay else keras.optimizers.Adam(LR, epsilon=EPS))
    variables = _run(old, w0, grads[:3])
    path = tf.train.Checkpoint(optimizer=old).save(str(tmp_path / "ckpt"))
    new = make_generator_optimizer(LR, weight_decay)
    new.build(variables)
    tf.train.Checkpoint(optimizer=new).restore(path).assert_consumed()
    assert int(new.iterations.numpy()) == 3
    for a, b in zip(new.variables, old.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_installed_keras_is_the_pinned_tested_one():
    """The fused update uses Keras private members; setup.py allows only the minor version
    tested, and those members are there."""
    import re

    import keras
    from tests.helpers import ROOT
    setup = open(f"{ROOT}/setup.py").read()
    low, high = re.search(r'"keras>=(\d+\.\d+),<(\d+\.\d+)"', setup).groups()
    version = tuple(int(p) for p in keras.__version__.split(".")[:2])
    assert tuple(map(int, low.split("."))) <= version < tuple(map(int, high.split(".")))
    from tl_keras.training.optimizers import DecoupledAdamW
    opt = DecoupledAdamW(learning_rate=LR, weight_decay=WD)
    variables = [keras.Variable(np.zeros((2,), np.float32))]
    opt.build(variables)
    for name in ("_momentums", "_velocities", "_get_variable_index", "_apply_weight_decay",
                 "_use_weight_decay", "_distribution_strategy"):
        assert hasattr(opt, name), name
