"""Logits to labels and probabilities (one sigmoid logit, several softmax logits) and
batched prediction, as tl_keras.evaluate and tl_keras.predict use them."""
import numpy as np

from tl_keras.models.inference import (labels_from_logits, predict_batches,
                                       probabilities_from_logits)


def test_one_logit_is_a_sigmoid_foreground():
    logits = np.array([[[-2.0], [0.0], [0.5]]], np.float32)  # (1, 3, 1)
    np.testing.assert_array_equal(labels_from_logits(logits), [[0, 0, 1]])
    probs = probabilities_from_logits(logits)
    assert probs.shape == (1, 3, 2)
    np.testing.assert_allclose(probs[0, :, 1], 1 / (1 + np.exp([2.0, 0.0, -0.5])), rtol=1e-6)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)


def test_several_logits_are_softmax():
    logits = np.array([[[1.0, 3.0, 2.0], [5.0, -1.0, 0.0], [0.0, 0.0, 900.0]]], np.float32)
    labels = labels_from_logits(logits)
    np.testing.assert_array_equal(labels, [[1, 0, 2]])
    assert labels.dtype == np.uint8
    probs = probabilities_from_logits(logits)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)  # 900: no overflow
    np.testing.assert_array_equal(probs.argmax(-1), labels)
    e = np.exp([1.0, 3.0, 2.0])
    np.testing.assert_allclose(probs[0, 0], e / e.sum(), rtol=1e-6)


def _model(num_logits):
    """1x1 conv: logit k = k * (pixel in [-1, 1]) - 0.5 * k (k = 1 for one logit)."""
    import keras
    inp = keras.Input((4, 4, 1))
    conv = keras.layers.Conv2D(num_logits, 1)
    out = conv(inp)
    k = np.arange(1, num_logits + 1, dtype=np.float32) if num_logits > 1 else np.ones(1)
    conv.set_weights([k.reshape(1, 1, 1, -1).astype(np.float32),
                      (-0.5 * k).astype(np.float32)])
    return keras.Model(inp, out)


def test_predict_batches_for_both_cases():
    import tensorflow as tf
    images = np.linspace(0, 1, 2 * 16, dtype=np.float32).reshape(2, 4, 4, 1)
    x = images * 2 - 1  # the model's [-1, 1] input
    batches = [{"image": tf.constant(images[:1]), "id": 0},
               {"image": tf.constant(images[1:]), "id": 1}]
    one = [(b["id"], p) for b, p in predict_batches(_model(1), batches, 1)]
    assert [i for i, _ in one] == [0, 1]
    np.testing.assert_array_equal(np.concatenate([p for _, p in one]),
                                  (x[..., 0] - 0.5 > 0).astype(np.uint8))
    three = np.concatenate([p for _, p in predict_batches(_model(3), batches, 1)])
    # logits k * (x - 0.5): the largest k wins where x > 0.5, the smallest below.
    np.testing.assert_array_equal(three, np.where(x[..., 0] > 0.5, 2, 0))
    probs = [p for _, p in predict_batches(_model(1), [tf.constant(images)], 1,
                                           image_key=None, probabilities=True)][0]
    assert probs.shape == (2, 4, 4, 2)
    np.testing.assert_array_equal(probs.argmax(-1), (x[..., 0] - 0.5 > 0).astype(np.uint8))
