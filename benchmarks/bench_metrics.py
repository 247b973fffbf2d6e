"""Benchmark: lesion detection at nine cutoff pairs on an MNI-sized volume.

Builds a synthetic 189 x 233 x 197 (slices x rows x cols, the 197 x 233 x 189
MNI grid with the axial axis first) lesion volume with about 50 lesions of
varied size and a prediction that misses, shrinks, shifts and adds lesions,
then times ``lesion_detection`` at overlap cutoffs (0, 0.2, 0.5) x volume
cutoffs (0, 1, 2) mL against a per-lesion loop baseline (one boolean mask per
lesion and per predicted component) in the same run, and checks that both
give identical tables.

    python benchmarks/bench_metrics.py [--lesions 50] [--repeats 5] [--connectivity 26]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from tl_keras.evaluation.detection import lesion_detection, structure

SHAPE = (189, 233, 197)
OVERLAPS = (0.0, 0.2, 0.5)
VOLUMES_ML = (0.0, 1.0, 2.0)


def _ball(vol, centre, radii):
    lo = [max(int(c - r) - 1, 0) for c, r in zip(centre, radii)]
    hi = [min(int(c + r) + 2, s) for c, r, s in zip(centre, radii, vol.shape)]
    grid = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1
    vol[tuple(slice(a, b) for a, b in zip(lo, hi))] |= inside


def make_case(n_lesions: int, seed: int = 0):
    """Ground truth with ``n_lesions`` ellipsoids and an imperfect prediction."""
    rng = np.random.default_rng(seed)
    gt = np.zeros(SHAPE, bool)
    pred = np.zeros(SHAPE, bool)
    for _ in range(n_lesions):
        centre = rng.uniform(20, np.array(SHAPE) - 20)
        radii = rng.uniform(1.5, 10, 3)
        _ball(gt, centre, radii)
        fate = rng.random()
        if fate < 0.6:      # found, slightly shifted and resized
            _ball(pred, centre + rng.normal(0, 1.5, 3), radii * rng.uniform(0.6, 1.2))
        elif fate < 0.8:    # barely touched
            _ball(pred, centre + radii * 0.9, np.maximum(radii * 0.3, 1.0))
    for _ in range(n_lesions // 3):  # false positives
        _ball(pred, rng.uniform(20, np.array(SHAPE) - 20), rng.uniform(1.5, 5, 3))
    return gt, pred


def loop_baseline(gt, pred, voxel_volume_ml, connectivity):
    """The straightforward implementation: one full-volume mask per component."""
    rows = []
    labels, n = ndimage.label(gt, structure(connectivity))
    p_labels, p_n = ndimage.label(pred, structure(connectivity))
    lesions = []
    for i in range(1, n + 1):
        m = labels == i
        size = m.sum()
        lesions.append((size * voxel_volume_ml, (m & pred).sum() / size))
    comps = []
    for i in range(1, p_n + 1):
        m = p_labels == i
        size = m.sum()
        comps.append((size * voxel_volume_ml, (m & gt).sum() / size))
    for o in OVERLAPS:
        for v in VOLUMES_ML:
            counted = [f for vol, f in lesions if vol >= v - 1e-9]
            detected = sum(f > o for f in counted)
            fp = sum(vol >= v - 1e-9 and f <= o for vol, f in comps)
            rows.append((len(counted), detected, fp))
    return rows


def _time(fn, repeats):
    """(min wall s, median wall s, min CPU s, result); CPU time of this process is
    less sensitive to other jobs on a shared machine than wall time."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), float(np.median(wall)), min(cpu), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lesions", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--connectivity", type=int, default=26)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    gt, pred = make_case(args.lesions, args.seed)
    voxel_ml = 0.001
    fast = lambda: lesion_detection(gt, pred, voxel_ml, args.connectivity,  # noqa: E731
                                    OVERLAPS, VOLUMES_ML)
    slow = lambda: loop_baseline(gt, pred, voxel_ml, args.connectivity)  # noqa: E731
    f_min, f_med, f_cpu, (per_lesion, summary) = _time(fast, args.repeats)
    s_min, s_med, s_cpu, rows = _time(slow, max(1, args.repeats // 3))
    ours = list(summary[["n_lesions", "n_detected", "fp_components"]]
                .itertuples(index=False, name=None))
    if [tuple(int(x) for x in r) for r in ours] != [tuple(int(x) for x in r) for r in rows]:
        raise SystemExit(f"MISMATCH between vectorised and loop results:\n{ours}\n{rows}")
    print(f"volume {SHAPE}, {len(per_lesion)} ground-truth components "
          f"(connectivity {args.connectivity}), 9 cutoff pairs, identical results")
    print(f"vectorised lesion_detection: wall min {f_min:.3f} s, median {f_med:.3f} s, "
          f"CPU {f_cpu:.3f} s per volume")
    print(f"per-lesion loop baseline:    wall min {s_min:.3f} s, median {s_med:.3f} s, "
          f"CPU {s_cpu:.3f} s per volume")
    print(f"speed-up: {s_min / f_min:.1f}x")
    print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
