"""Property tests (hypothesis) of the metrics, against a per-lesion loop reference."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from tl_keras.evaluation.detection import structure
from tl_keras.evaluation.metrics import (PRESETS, dice_per_slice, dice_volume,
                                         lesion_detection, miou_per_slice, preset_metrics)

masks = arrays(np.uint8, (3, 8, 8), elements=st.integers(0, 1))
pairs = st.tuples(masks, masks)
connectivities = st.sampled_from((4, 8, 6, 18, 26))
SETTINGS = settings(max_examples=40, deadline=None)


@SETTINGS
@given(masks)
def test_dice_with_itself_is_one(m):
    d = dice_per_slice(m, m)
    assert np.all(d[~np.isnan(d)] == 1.0)
    assert np.array_equal(np.isnan(d), m.reshape(3, -1).sum(1) == 0)
    if m.any():
        assert dice_volume(m, m) == 1.0


@SETTINGS
@given(pairs)
def test_dice_and_miou_symmetric_and_bounded(pair):
    a, b = pair
    np.testing.assert_array_equal(dice_per_slice(a, b), dice_per_slice(b, a))
    np.testing.assert_array_equal(miou_per_slice(a, b, 2), miou_per_slice(b, a, 2))
    d = dice_per_slice(a, b)
    assert np.all((d[~np.isnan(d)] >= 0) & (d[~np.isnan(d)] <= 1))
    # Binary mIoU (foreground only) is IoU, which relates to Dice by D = 2J / (1 + J).
    j = miou_per_slice(a, b, 2)
    np.testing.assert_allclose(d, 2 * j / (1 + j))


@SETTINGS
@given(pairs, connectivities)
def test_detection_monotone_in_cutoffs(pair, conn):
    gt, pred = pair
    _, s = lesion_detection(gt, pred, 0.001, connectivity=conn,
                            overlap_cutoffs=(0.0, 0.2, 0.5), volume_cutoffs_ml=(0, 0.002, 0.005))
    detected = s["n_detected"].to_numpy().reshape(3, 3)
    counted = s["n_lesions"].to_numpy().reshape(3, 3)
    fp = s["fp_components"].to_numpy().reshape(3, 3)
    assert np.all(np.diff(detected, axis=0) <= 0) and np.all(np.diff(detected, axis=1) <= 0)
    assert np.all(np.diff(counted, axis=1) <= 0) and np.all(detected <= counted)
    assert np.all(np.diff(fp, axis=0) >= 0) and np.all(np.diff(fp, axis=1) <= 0)


@SETTINGS
@given(pairs, connectivities)
def test_detection_matches_per_lesion_loop(pair, conn):
    gt, pred = pair
    per_lesion, _ = lesion_detection(gt, pred, 0.001, connectivity=conn)
    labels, n = ndimage.label(gt, structure(conn))
    assert len(per_lesion) == n
    for i in range(1, n + 1):
        m = labels == i
        row = per_lesion.iloc[i - 1]
        assert row["voxels"] == m.sum()
        assert row["overlap_voxels"] == (m & (pred > 0)).sum()


@SETTINGS
@given(pairs)
def test_shared_label_cache_changes_nothing(pair):
    gt, pred = pair
    cache = {}
    with_cache = lesion_detection(gt, pred, 2e-6, 26, cache=cache)[1]
    presets = {p: preset_metrics(gt, pred, 0.001, p, cache) for p in PRESETS}
    assert with_cache.equals(lesion_detection(gt, pred, 2e-6, 26)[1])
    assert presets == {p: preset_metrics(gt, pred, 0.001, p) for p in PRESETS}
    assert ("gt", 26) in cache
