"""The corruptions and views of the self-supervised tasks (tl_keras.data.corruptions):
ranges, determinism by seed, the promised probabilities, masks that cover the ratio."""
import numpy as np
import pytest
import tensorflow as tf

from tl_keras.data import corruptions as c

SEED = tf.constant([7, 11], tf.int64)


def _images(n=4, size=32, channels=3, seed=0):
    grey = np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 1)).astype(np.float32)
    return tf.constant(np.repeat(grey, channels, -1))


@pytest.mark.parametrize("fn", [c.genesis_corrupt, c.simsiam_view,
                                lambda x, s: c.mask_patches(x, s, 8, 0.6)[0]])
def test_outputs_stay_in_range_grey_and_depend_only_on_the_seed(fn):
    x = _images()
    a, b, other = fn(x, SEED).numpy(), fn(x, SEED).numpy(), fn(x, SEED + 1).numpy()
    assert a.shape == x.shape and a.min() >= -1.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, other)
    np.testing.assert_array_equal(a[..., 0], a[..., 2])  # a grey slice stays grey


def test_local_shuffle_permutes_pixels_within_small_windows():
    size = 40
    coords = np.arange(size * size, dtype=np.float32).reshape(1, size, size, 1)
    x = tf.constant(np.repeat(coords, 6, 0))
    y = c.local_shuffle(x, SEED, shuffled_cells=1.0).numpy()[..., 0].astype(int)
    moved = 0
    for image in y:
        assert sorted(image.ravel()) == list(range(size * size))  # a permutation
        rows, cols = np.divmod(image, size)
        here_r, here_c = np.mgrid[:size, :size]
        # Windows are at most a tenth of the side: no pixel travels further.
        assert np.abs(rows - here_r).max() < size // 10
        assert np.abs(cols - here_c).max() < size // 10
        moved += (image != coords[0, ..., 0]).mean()
    assert moved / len(y) > 0.3


def test_bezier_curve_is_monotone_and_keeps_the_unit_range():
    ramp = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(1, 32, 32, 1)
    y = c.bezier_intensity(tf.constant(np.repeat(ramp, 16, 0)), SEED).numpy().reshape(16, -1)
    d = np.diff(y, axis=1)
    up = (d >= -1e-6).all(axis=1)
    down = (d <= 1e-6).all(axis=1)
    assert (up | down).all() and up.any() and down.any()  # increasing or inverted
    assert y.min() >= 0 and y.max() <= 1
    ends = np.sort(y[:, [0, -1]], axis=1)
    np.testing.assert_allclose(ends, np.tile([0.0, 1.0], (16, 1)), atol=1e-3)


def test_painting_probabilities_follow_models_genesis():
    x = tf.fill([400, 32, 32, 1], 0.5)
    y = c.paint(x, SEED).numpy()
    noisy = (y != 0.5).reshape(400, -1).mean(axis=1)
    untouched = (noisy == 0).mean()
    assert 0.05 < untouched < 0.16                      # 1 - 0.9 paint
    # Out-painting (0.8 of the painted) noises most of the image, in-painting less.
    painted = noisy[noisy > 0]
    assert 0.65 < (painted > 0.45).mean() < 0.9
    assert painted.max() < 1.0


def test_masks_cover_the_ratio_patch_by_patch_and_zero_the_input():
    x = _images(n=5, size=64) * 0.5 + 0.5  # no pixel is 0 before masking
    masked, mask = c.mask_patches(x, SEED, 8, 0.6)
    mask = mask.numpy()[..., 0]
    assert set(np.unique(mask)) == {0.0, 1.0}
    np.testing.assert_allclose(mask.mean(axis=(1, 2)), round(0.6 * 64) / 64)
    patches = mask.reshape(5, 8, 8, 8, 8)
    assert (patches.min(axis=(2, 4)) == patches.max(axis=(2, 4))).all()  # whole patches
    masked = masked.numpy()
    assert (masked[mask == 1] == 0).all()
    np.testing.assert_array_equal(masked[mask == 0], x.numpy()[mask == 0])


def test_views_crop_and_blur_but_keep_the_image():
    x = _images(n=8, size=64)
    v1, v2 = c.simsiam_view(x, SEED).numpy(), c.simsiam_view(x, SEED + 1).numpy()
    assert not np.allclose(v1, v2)
    # A constant image stays constant through crops, flips and blur (not jitter).
    flat = c.simsiam_view(tf.zeros([8, 64, 64, 1]), SEED).numpy()
    assert np.ptp(flat.reshape(8, -1), axis=1).max() < 1e-5
