"""Statistics of the report (paired difference to scratch, bootstrap CI, Wilcoxon,
summary.md) on constructed results whose answer is known."""
import numpy as np
import pandas as pd
import pytest

from tl_keras.evaluation import stats

# Symmetric around 0: mean exactly 0, so no source built with it can beat scratch.
NOISE = np.array([0.02, -0.02, 0.01, -0.01, 0.03, -0.03, 0.005, -0.005])
# Source minus scratch per set size: clearly better at 4 and 8, equal at 16.
SHIFTS = {("t1", "segmentation", "t1seg/encoder.weights.h5"): {4: 0.12, 8: 0.10, 16: 0.0},
          ("natural", "autoencoding", "natae/encoder.weights.h5"): {4: 0.0, 8: 0.0, 16: 0.0},
          ("natural", "classification", "imagenet:r50.h5"): {4: -0.08, 8: -0.06, 16: -0.05}}


def constructed_runs(repeats=8):
    """Sweep-style rows: scratch varies by subset (subjects), sources add a shift
    plus NOISE, so the paired differences are shift + NOISE exactly."""
    rows = []
    for n in (4, 8, 16):
        for r in range(repeats):
            base = 0.3 + n / 100 + 0.05 * ((r * 7) % 5)  # subsets differ a lot
            rows.append({"target": "stroke", "init_from": "scratch", "train_subjects": n,
                         "subset_seed": r, "repeat": r, "test_dice": base,
                         "run_dir": f"scratch/n{n}/r{r}"})
            for k, ((domain, task, init), shift) in enumerate(SHIFTS.items()):
                rows.append({"target": "stroke", "source_domain": domain, "source_task": task,
                             "init_from": init, "train_subjects": n, "subset_seed": r,
                             "repeat": r,
                             "test_dice": base + shift[n] + NOISE[(r + k) % len(NOISE)],
                             "run_dir": f"{task}/n{n}/r{r}"})
    return pd.DataFrame(rows)


def test_bootstrap_ci_is_deterministic_and_covers_the_mean():
    values = np.array([0.1, 0.14, 0.09, 0.12, 0.13, 0.08, 0.11])
    low, high = stats.bootstrap_ci(values)
    assert (low, high) == stats.bootstrap_ci(values)  # seeded: reruns agree
    assert low < values.mean() < high and high - low < values.max() - values.min()
    assert stats.bootstrap_ci([0.2, 0.2, 0.2]) == (0.2, 0.2)
    assert all(np.isnan(stats.bootstrap_ci([0.2])))


def test_wilcoxon_needs_six_pairs():
    assert np.isnan(stats.wilcoxon_p([0.1] * 5))
    # all six differences positive: exact two-sided p = 2 / 2**6
    assert stats.wilcoxon_p([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) == pytest.approx(2 / 64)
    assert stats.wilcoxon_p([0.0] * 6) == 1.0
    assert stats.format_p(float("nan"), 3) == "too few repeats (3 pairs)"
    assert stats.format_p(0.0004, 8) == "p < 0.001"
