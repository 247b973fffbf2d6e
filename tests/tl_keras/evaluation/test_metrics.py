"""Hand-built metric cases with answers worked out on paper."""
import numpy as np
import pytest

from tl_keras.evaluation.metrics import (dice_per_slice, dice_volume, get_preset,
                                         iou_per_slice_class, lesion_detection,
                                         miou_per_slice, nanmean, preset_metrics)


def _two_lesions():
    gt = np.zeros((3, 12, 12), np.uint8)
    gt[1, 1:3, 1:6] = 1        # lesion A: 10 voxels
    gt[1, 7:9, 5:10] = 1       # lesion B: 10 voxels
    pred = np.zeros_like(gt)
    pred[1, 1, 1:4] = 1        # 3 of A's 10 voxels: 30 %
    return gt, pred


def test_thirty_percent_covered_lesion():
    gt, pred = _two_lesions()
    per_lesion, summary = lesion_detection(gt, pred, 0.001, overlap_cutoffs=(0.0, 0.2, 0.4),
                                           volume_cutoffs_ml=(0,))
    assert list(per_lesion["voxels"]) == [10, 10]
    np.testing.assert_allclose(per_lesion["overlap_fraction"], [0.3, 0.0])
    assert list(per_lesion["detected_overlap_0"]) == [True, False]
    assert list(per_lesion["detected_overlap_0.2"]) == [True, False]
    assert list(per_lesion["detected_overlap_0.4"]) == [False, False]
    assert list(summary["n_detected"]) == [1, 1, 0]
    np.testing.assert_allclose(summary["detection_rate"], [0.5, 0.5, 0.0])
    assert list(summary["fp_components"]) == [0, 0, 0]
    assert list(summary["n_pred_components"]) == [1, 1, 1]
    assert list(summary.columns) == ["overlap_cutoff", "volume_cutoff_ml", "n_lesions",
                                     "n_detected", "detection_rate", "fp_components",
                                     "n_pred_components"]


def test_lesion_centroid_and_ids():
    gt, pred = _two_lesions()
    per_lesion, _ = lesion_detection(gt, pred, 0.001)
    assert list(per_lesion["lesion_id"]) == [1, 2]
    np.testing.assert_allclose(per_lesion[["centroid_slice", "centroid_row", "centroid_col"]]
                               .to_numpy()[0], [1, 1.5, 3])


def test_eight_versus_four_connectivity():
    gt = np.zeros((1, 6, 6), np.uint8)
    gt[0, 1, 1] = gt[0, 2, 2] = 1  # diagonal neighbours
    pred = np.zeros_like(gt)
    pred[0, 1, 1] = 1
    l8, s8 = lesion_detection(gt, pred, 1.0, connectivity=8, volume_cutoffs_ml=(0,))
    l4, s4 = lesion_detection(gt, pred, 1.0, connectivity=4, volume_cutoffs_ml=(0,))
    assert len(l8) == 1 and len(l4) == 2
    assert s8["detection_rate"].iloc[0] == 1.0 and s4["detection_rate"].iloc[0] == 0.5


def test_per_slice_versus_3d_connectivity():
    gt = np.zeros((3, 5, 5), np.uint8)
    gt[0, 2, 2] = gt[1, 2, 2] = 1            # face neighbours across slices
    gt[2, 3, 3] = 1                          # corner neighbour of (1, 2, 2)
    pred = np.zeros_like(gt)
    counts = {c: len(lesion_detection(gt, pred, 1.0, connectivity=c)[0])
              for c in (4, 8, 6, 18, 26)}
    assert counts == {4: 3, 8: 3, 6: 2, 18: 2, 26: 1}
    with pytest.raises(ValueError, match="connectivity"):
        lesion_detection(gt, pred, 1.0, connectivity=5)


def test_anisotropic_voxels_and_ml_cutoffs():
    # 1 x 1 x 3 mm voxels = 0.003 mL; 334 voxels = 1.002 mL, 333 voxels = 0.999 mL.
    gt = np.zeros((4, 40, 40), np.uint8)
    gt[0].flat[:334] = 1
    gt[2].flat[:333] = 1
    pred = gt.copy()
    per_lesion, summary = lesion_detection(gt, pred, 0.003, connectivity=8,
                                           overlap_cutoffs=(0.0,), volume_cutoffs_ml=(0, 1, 2))
    np.testing.assert_allclose(sorted(per_lesion["volume_ml"]), [0.999, 1.002])
    assert list(summary["n_lesions"]) == [2, 1, 0]
    assert np.isnan(summary["detection_rate"].iloc[2])
    # Exactly at the cutoff counts (>=), despite floating point: 1000 x 0.001 mL.
    gt = np.zeros((1, 40, 40), np.uint8)
    gt[0].flat[:1000] = 1
    _, summary = lesion_detection(gt, gt, 0.1 * 0.1 * 0.1, volume_cutoffs_ml=(1,))
    assert summary["n_lesions"].iloc[0] == 1


def test_false_positive_components_follow_cutoffs():
    gt = np.zeros((1, 20, 20), np.uint8)
    gt[0, 0:2, 0:5] = 1                      # lesion, 10 voxels
    pred = np.zeros_like(gt)
    pred[0, 10:12, 10:12] = 1                # 4 voxels, no overlap
    pred[0, 1:3, 0:5] = 1                    # 10 voxels, 5 inside: 50 % inside
    pred[0, 15:19, 15:19] = 1                # 16 voxels, no overlap
    _, summary = lesion_detection(gt, pred, 1e-3, overlap_cutoffs=(0.0, 0.5),
                                  volume_cutoffs_ml=(0, 0.01))
    # at o = 0: the two non-overlapping; at o = 0.5 also the half-inside one;
    # at v = 0.01 mL (10 voxels) the 4-voxel component no longer counts.
    assert list(summary["fp_components"]) == [2, 1, 3, 2]
    # predicted components at v = 0 and v = 0.01 mL, for each overlap cutoff
    assert list(summary["n_pred_components"]) == [3, 2, 3, 2]


def test_empty_slice_policies_dice():
    gt = np.zeros((3, 4, 4), np.uint8)
    pred = np.zeros_like(gt)
    gt[0, 0, 0] = pred[0, 0, 0] = 1          # perfect
    pred[1, 1, 1] = 1                        # only false positives
    #                                          slice 2: both empty
    np.testing.assert_equal(dice_per_slice(gt, pred), [1.0, 0.0, np.nan])
    np.testing.assert_equal(dice_per_slice(gt, pred, "one_both_empty"), [1.0, 0.0, 1.0])
    np.testing.assert_equal(dice_per_slice(gt, pred, "skip_gt_empty"), [1.0, np.nan, np.nan])
    with pytest.raises(ValueError, match="empty_policy"):
        dice_per_slice(gt, pred, "zero")
    assert dice_volume(gt, pred) == pytest.approx(2 / 3)
    assert np.isnan(dice_volume(gt[2], pred[2]))
    assert dice_volume(gt[2], pred[2], "one_both_empty") == 1.0


def test_dice_known_value():
    gt = np.zeros((1, 4, 4), np.uint8)
    pred = np.zeros_like(gt)
    gt[0, 0, :4] = 1
    pred[0, 0, 2:4] = 1
    pred[0, 1, 0] = 1
    assert dice_per_slice(gt, pred)[0] == pytest.approx(2 * 2 / (4 + 3))


def test_miou_policies():
    gt = np.zeros((2, 4, 4), np.uint8)
    pred = np.zeros_like(gt)
    gt[0, 0, :2] = 1
    pred[0, 0, :1] = 1                       # class 1 IoU 1/2
    pred[0, 3, 3] = 2                        # class 2 only predicted: IoU 0
    #                                          class 3 absent: left out by default
    #                                          slice 1: background only
    miou = miou_per_slice(gt, pred, 4)
    assert miou[0] == pytest.approx(0.25) and np.isnan(miou[1])
    assert miou_per_slice(gt, pred, 4, empty_policy="one_both_empty")[0] == pytest.approx(0.5)
    assert miou_per_slice(gt, pred, 4, empty_policy="skip_gt_empty")[0] == pytest.approx(0.5)
    with_bg = miou_per_slice(gt, pred, 4, include_background=True)
    bg = 13 / 15                              # 14 background in each, 13 in both
    assert with_bg[0] == pytest.approx((bg + 0.5 + 0.0) / 3)
    assert with_bg[1] == pytest.approx(1.0)
    assert iou_per_slice_class(gt, pred, 4).shape == (2, 4)
    with pytest.raises(ValueError, match="labels"):
        miou_per_slice(gt, pred + 4, 4)
    assert nanmean(miou) == pytest.approx(0.25)
    assert np.isnan(nanmean([np.nan]))


def _disagreeing_case():
    """One volume on which the four presets give four different F1 values."""
    gt = np.zeros((6, 30, 30), np.uint8)
    pred = np.zeros_like(gt)
    gt[1:4, 2:7, 2:7] = 1                    # A: 75 voxels in 3 slices, 4 covered (5 %)
    pred[2, 2, 2:6] = 1
    gt[1, 15, 15] = gt[2, 16, 16] = 1        # B: two voxels touching at a corner only
    pred[1, 15, 15] = 1
    gt[4, 20:24, 20:24] = 1                  # C: 16 voxels, covered by a component
    pred[4, 20:24, 18:24] = 1                #    of 24 voxels, 8 (33 %) outside
    gt[4, 5:7, 20:28] = 1                    # E: one lesion hit by two components
    pred[4, 5:7, 20:22] = 1
    pred[4, 5:7, 25:28] = 1
    pred[0, 27:29, 27:29] = 1                # D: pure false positive, 4 voxels
    return gt, pred


def test_presets_disagree():
    gt, pred = _disagreeing_case()
    res = {name: preset_metrics(gt, pred, 0.001, name)
           for name in ("paper", "isles22", "atlas2", "wmh", "msseg_anima")}
    # paper: 8-connected per slice -> A = 3 lesions (only the middle slice hit),
    # B = 2 (one hit), C, E -> 7 lesions, 4 detected; 6 components, 5 overlap.
    p = res["paper"]
    assert (p["n_gt_lesions"], p["tp"], p["n_pred_components"], p["fp"]) == (7, 4, 6, 1)
    assert p["f1"] == pytest.approx(40 / 59)
    # 26-connected: A, B, C, E all hit; D the only false positive.
    w = res["wmh"]
    assert (w["n_gt_lesions"], w["tp"], w["fp"]) == (4, 4, 1)
    assert w["precision"] == pytest.approx(5 / 6)
    assert w["f1"] == pytest.approx(10 / 11)
    assert res["isles22"]["f1"] == pytest.approx(4 / 4.5)
    # ATLAS R2.0 (6-connected): B is two lesions, one hit -> TP 4, FN 1, FP 1.
    a = res["atlas2"]
    assert (a["n_gt_lesions"], a["tp"], a["fn"], a["fp"]) == (5, 4, 1, 1)
    assert a["f1"] == pytest.approx(4 / 5)
    # Anima: 6-connectivity splits B into 1-voxel pieces (<= 3 mm^3, dropped,
    # as is the 1-voxel prediction on it); A only 5 % covered (< 10 %): missed.
    m = res["msseg_anima"]
    assert (m["n_gt_lesions"], m["tp"], m["fn"], m["n_pred_components"], m["fp"]) == \
        (3, 2, 1, 5, 1)
    assert m["f1"] == pytest.approx(16 / 22)
    assert len({round(r["f1"], 6) for r in res.values()}) == 5
    with pytest.raises(ValueError, match="preset"):
        get_preset("brats")


def _challenge_lesion_f1(gt, pred, structure):
    """Lesion F1 as the ISLES'22 / ATLAS R2.0 evaluation code computes it: a loop
    over components (any overlap = TP; a predicted component touching no lesion = FP),
    F1 = TP / (TP + (FP + FN) / 2), 1.0 when there is nothing to count."""
    from scipy import ndimage
    gt, pred = gt.astype(bool), pred.astype(bool)
    labels, n = ndimage.label(gt, structure)
    tp = sum(bool((pred & (labels == i)).any()) for i in range(1, n + 1))
    p_labels, m = ndimage.label(pred, structure)
    fp = sum(not (gt & (p_labels == i)).any() for i in range(1, m + 1))
    denom = tp + (fp + n - tp) / 2
    return tp / denom if denom else 1.0, n


@pytest.mark.parametrize("name, structure", [
    ("isles22", np.ones((3, 3, 3), bool)),  # cc3d connectivity=26 in the ISLES'22 code
    ("atlas2", None),                       # scipy.ndimage.label's default (6) in ATLAS R2.0's
])
def test_challenge_presets_match_their_evaluation_code(name, structure):
    rng = np.random.default_rng(3)
    for _ in range(12):
        gt = rng.random((5, 12, 12)) < 0.12
        pred = rng.random((5, 12, 12)) < 0.12
        f1, n = _challenge_lesion_f1(gt, pred, structure)
        res = preset_metrics(gt, pred, 0.001, name)
        assert res["n_gt_lesions"] == n
        assert res["f1"] == pytest.approx(f1)


def test_atlas_isles_preset_was_split():
    with pytest.raises(ValueError, match="'isles22'.*'atlas2'"):
        get_preset("atlas_isles")


def test_msseg_rejects_mostly_outside_component():
    gt = np.zeros((1, 20, 20), np.uint8)
    pred = np.zeros_like(gt)
    gt[0, 0:4, 0:4] = 1                      # 16 voxels
    pred[0, 0:4, 2:14] = 1                   # 48 voxels, 8 inside: 83 % outside
    m = preset_metrics(gt, pred, 0.001, "msseg_anima")
    w = preset_metrics(gt, pred, 0.001, "wmh")
    assert (m["tp"], m["fp"]) == (0, 1)
    assert (w["tp"], w["fp"]) == (1, 0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        lesion_detection(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)), 0.001)
    with pytest.raises(ValueError, match="shape"):
        dice_per_slice(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))


def test_a_metric_added_in_the_test(monkeypatch):
    """docs/extending.md, "Adding an evaluation metric": a registered per-slice metric
    becomes a ``per_slice`` column and a ``summary`` mean and sd beside Dice."""
    import pandas as pd
    from tl_keras.evaluation import catalogue, tables
    from tl_keras.evaluation.collect import _Store
    from tl_keras.evaluation.evaluate import EvalConfig

    def sensitivity(gt, pred, num_classes, config):
        hit = np.count_nonzero((gt > 0) & (pred > 0), axis=(1, 2))
        lesion = np.count_nonzero(gt > 0, axis=(1, 2))
        return np.where(lesion > 0, hit / np.maximum(lesion, 1), np.nan)

    monkeypatch.setitem(catalogue.METRICS, "sensitivity", catalogue.Metric(
        "sensitivity", "Sensitivity", True, "lesion voxels found, mean over slices",
        per_slice=sensitivity))
    gt, pred = _two_lesions()  # slice 1: 3 of 20 lesion voxels found
    config = EvalConfig(presets=("paper",), verbose=False)
    columns = tables.slice_metrics_fn(2, ["background", "lesion"], config)(gt, pred)
    np.testing.assert_allclose(columns["sensitivity"], [np.nan, 0.15, np.nan])
    store = _Store(binary=True, width=12)
    for i in range(3):
        store.add("s1", i, gt[i], pred[i], 0.001)
    rows = {"subject_id": ["s1"] * 3, "slice_index": [0, 1, 2], **columns}
    run = {k: None for k in tables.META_COLUMNS}
    out = tables.build_tables(store, rows, run, 2, ["background", "lesion"], config)
    assert "sensitivity" in out["per_slice"]
    summary = out["summary"].iloc[0]
    assert summary["metric"] == "dice"  # the run's metric is still Dice
    assert summary["sensitivity"] == pytest.approx(0.15)
    assert summary["sensitivity_sd"] == pytest.approx(0.0)
    assert pd.isna(summary["sensitivity_volume"]) and pd.isna(summary["miou"])
