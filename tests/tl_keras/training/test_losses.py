"""Losses against NumPy formulas (docs/method.md sections 4 and 6)."""
import numpy as np
import pytest

from tl_keras.training import losses


def _sigmoid_ce(z, t):
    return np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_weighted_cross_entropy_matches_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 4, 4))
    w = np.array([0.5, 2.0, 3.0], np.float32)
    ce = -np.log(np.take_along_axis(_softmax(logits), labels[..., None], -1)[..., 0])
    expected = (ce * w[labels]).reshape(2, -1).mean(1)
    got = losses.weighted_cross_entropy(labels, logits, w).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    plain = losses.weighted_cross_entropy(labels, logits).numpy()
    np.testing.assert_allclose(plain, ce.reshape(2, -1).mean(1), rtol=1e-5)


def test_multilabel_bce_and_softmax_option():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 5)).astype(np.float32)
    labels = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], np.float32)
    got = losses.multilabel_cross_entropy(labels, logits).numpy()
    np.testing.assert_allclose(got, _sigmoid_ce(logits, labels).mean(1), rtol=1e-5)
    soft = losses.multilabel_cross_entropy(labels, logits, softmax=True).numpy()
    target = labels / np.maximum(labels.sum(1, keepdims=True), 1)
    expected = -(target * np.log(_softmax(logits))).sum(1)
    np.testing.assert_allclose(soft, expected, rtol=1e-5)
    assert soft[1] == 0.0  # no label present: no loss


def test_gan_losses_use_taskonomy_labels_and_weights():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(2, 4, 4, 1)).astype(np.float32)
    fake = rng.normal(size=(2, 4, 4, 1)).astype(np.float32)
    d = losses.discriminator_loss(real, fake)
    d_real = _sigmoid_ce(real, 0.9).reshape(2, -1).mean(1)
    d_fake = _sigmoid_ce(fake, 0.0).reshape(2, -1).mean(1)
    np.testing.assert_allclose(d["real"].numpy(), d_real, rtol=1e-5)
    np.testing.assert_allclose(d["total"].numpy(), 0.5 * d_real + 0.5 * d_fake, rtol=1e-5)
    target = rng.uniform(-1, 1, size=(2, 8, 8, 3)).astype(np.float32)
    recon = rng.uniform(-1, 1, size=(2, 8, 8, 3)).astype(np.float32)
    g = losses.generator_loss(target, recon, fake)
    l1 = np.abs(target - recon).reshape(2, -1).mean(1)
    adv = _sigmoid_ce(fake, 1.0).reshape(2, -1).mean(1)
    np.testing.assert_allclose(g["l1"].numpy(), l1, rtol=1e-5)
    np.testing.assert_allclose(g["total"].numpy(), 0.996 * l1 + 0.004 * adv, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_losses_are_float32_for_mixed_precision(dtype):
    import tensorflow as tf
    logits = tf.cast(tf.zeros((1, 2, 2, 2)), dtype)
    out = losses.weighted_cross_entropy(tf.zeros((1, 2, 2), tf.int32), logits)
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), [np.log(2)], rtol=1e-5)


def test_soft_dice_loss_matches_formula_and_scores_perfect_masks():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 4, 4))
    p = _softmax(logits)
    g = np.eye(3)[labels]
    overlap = (p * g).sum((0, 1, 2))[1:]
    total = (p.sum((0, 1, 2)) + g.sum((0, 1, 2)))[1:]
    expected = np.full(2, 1 - ((2 * overlap + 1) / (total + 1)).mean())  # over the batch
    np.testing.assert_allclose(losses.soft_dice_loss(labels, logits).numpy(), expected,
                               rtol=1e-5)
    perfect = 50.0 * (np.eye(3)[labels] - 0.5).astype(np.float32)
    np.testing.assert_allclose(losses.soft_dice_loss(labels, perfect).numpy(), 0, atol=1e-5)
    # an empty slice predicted empty scores (almost) 0, one predicted full scores ~1
    empty = np.zeros((1, 4, 4), int)
    assert losses.soft_dice_loss(empty, 50.0 * (np.eye(2)[empty] - 0.5)).numpy()[0] < 1e-5
    full = losses.soft_dice_loss(empty, 50.0 * (np.eye(2)[empty + 1] - 0.5)).numpy()[0]
    np.testing.assert_allclose(full, 1 - 1 / 17, rtol=1e-4)  # 16 false positives
    combined = losses.segmentation_loss(labels, logits, [1.0, 5.0, 5.0], dice=True).numpy()
    np.testing.assert_allclose(combined, losses.weighted_cross_entropy(
        labels, logits, [1.0, 5.0, 5.0]).numpy() + expected, rtol=1e-5)
