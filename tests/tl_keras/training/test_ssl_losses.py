"""Losses, heads and steps of the self-supervised tasks: the masked loss scores the masked
pixels only, SimSiam's stop-gradient stops the gradient, identical views score -1."""
import numpy as np
import tensorflow as tf

from tl_keras.training import losses


def test_masked_l1_scores_the_masked_pixels_only():
    rng = np.random.default_rng(0)
    target = rng.uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    mask = np.zeros((2, 8, 8, 1), np.float32)
    mask[:, :4] = 1
    packed = np.concatenate([target, mask], -1)
    prediction = target.copy()
    prediction[:, 4:] += 1.0                  # wrong only where nothing is masked
    np.testing.assert_allclose(losses.masked_l1_loss(packed, prediction).numpy(), 0.0)
    prediction[:, :4] += 0.5
    np.testing.assert_allclose(losses.masked_l1_loss(packed, prediction).numpy(), 0.5,
                               rtol=1e-6)
    assert losses.masked_l1_loss(np.concatenate([target, 0 * mask], -1),
                                 target + 1).numpy().tolist() == [0.0, 0.0]


def test_simsiam_loss_of_identical_views_is_minus_one_and_stops_the_target_gradient():
    p = tf.constant(np.random.default_rng(1).normal(size=(4, 16)), tf.float32)
    np.testing.assert_allclose(losses.simsiam_loss(p, p, p, p).numpy(), -1.0, rtol=1e-6)
    np.testing.assert_allclose(losses.simsiam_loss(p, p, -p, -p).numpy(), 1.0, rtol=1e-6)
    z = tf.Variable(tf.random.stateless_normal((4, 16), [0, 1]))
    q = tf.Variable(tf.random.stateless_normal((4, 16), [0, 2]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(losses.negative_cosine(q, z))
    grad_q, grad_z = tape.gradient(loss, [q, z])
    assert grad_z is None and float(tf.reduce_max(tf.abs(grad_q))) > 0


def test_mse_is_the_mean_square():
    np.testing.assert_allclose(losses.mse_loss(np.zeros((2, 4, 4, 1)),
                                               np.full((2, 4, 4, 1), 0.5)).numpy(), 0.25)


def test_simsiam_head_follows_simsiam_and_pools_wide_latents():
    from tl_keras.models.simsiam import FLATTEN_LIMIT, build_simsiam_head
    head = build_simsiam_head((4, 4, 8), dim=32, pred_dim=8)
    z, p = head(tf.random.stateless_normal((3, 4, 4, 8), [0, 3]), training=True)
    assert z.shape == p.shape == (3, 32) and z.dtype == p.dtype == tf.float32
    names = {w.path for w in head.weights}
    assert "projector2_bn/gamma" not in names and "projector2_bn/beta" not in names
    assert "projector0_bn/gamma" in names and "predictor1/bias" in names
    assert not any(n.startswith(("projector0/bias", "predictor0/bias")) for n in names)
    # Projected outputs are batch-normalised without affine: zero mean per feature.
    np.testing.assert_allclose(tf.reduce_mean(z, 0).numpy(), 0.0, atol=1e-4)
    wide = build_simsiam_head((8, 8, FLATTEN_LIMIT // 32), dim=16, pred_dim=4)
    assert wide.get_layer("representation").output.shape == (None, FLATTEN_LIMIT // 32)
    assert head.get_layer("representation").output.shape == (None, 128)
