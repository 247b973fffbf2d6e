"""What transferred: each source against scratch on the same training subjects.

A run of a source and a run from scratch form a *pair* when they share the
target, the metric, the fine-tuning set size and the subset of training
subjects (``subset_seed``; rows without one fall back to ``repeat``, which the
sweep sets equal to it). Several runs on one subset (e.g. different
initialisation seeds) are averaged first, so a pair is one subset. For every
(target, source, set size) this module gives the mean paired difference
(source minus scratch; Dice and mIoU are both higher-is-better), its 95 %
bootstrap confidence interval and a two-sided Wilcoxon signed-rank test.

The rule (docs/evaluation.md, "What transferred"): the Wilcoxon p-values of all
comparisons of one report (every target, source and set size with at least
``MIN_PAIRS`` pairs) are adjusted together by Holm's step-down method, which
keeps the chance of even one false "better" or "worse" among them at or below
``ALPHA``. A source is *better* (*worse*) than scratch at a set size when its
adjusted p is below ``ALPHA`` and the mean paired difference is above (below) 0;
otherwise *no difference detected*, which is not evidence that there is none.
With fewer than ``MIN_PAIRS`` pairs there is no test and no interval, only the
mean difference: the exact two-sided Wilcoxon p-value of 5 pairs that all agree
is 2 / 2^5 = 0.0625, so fewer than 6 repeats cannot reach p < 0.05 whatever the
data, and a bootstrap interval of so few values is too narrow to be trusted.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

REFERENCE = "scratch"  # the source label of randomly initialised runs
MIN_PAIRS = 6
ALPHA = 0.05  # family-wise error rate of one report's verdicts (Holm)
CONFIDENCE = 0.95
N_RESAMPLES = 9999
SEED = 0  # every interval uses a fresh generator with this seed: reruns agree

# Verdicts, in the `verdict` column of table.csv.
BETTER = "better than scratch"
WORSE = "worse than scratch"
UNCLEAR = "no difference detected"
TOO_FEW = "too few repeats"
NO_MATCH = "no matched scratch run"
NO_SCRATCH = "no scratch runs"
IS_REFERENCE = "reference"

# Appended to table.csv after its first columns, in this order.
COLUMNS = ("n_pairs", "diff_mean", "diff_ci_low", "diff_ci_high", "wilcoxon_p", "p_holm",
           "wilcoxon", "verdict")
KEYS = ["target", "metric", "source", "train_subjects"]


def bootstrap_ci(values, confidence: float = CONFIDENCE,
                 min_values: int = MIN_PAIRS) -> tuple[float, float]:
    """Bootstrap confidence interval of the mean of ``values`` (BCa, seeded).

    Returns ``(nan, nan)`` for fewer than ``min_values`` finite values (an
    interval of a handful of points is too narrow to trust) and ``(v, v)`` when
    all values are equal (the resampled mean cannot vary).
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < max(min_values, 2):
        return float("nan"), float("nan")
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa warns on tiny samples; we fall back below
        ci = stats.bootstrap((values,), np.mean, n_resamples=N_RESAMPLES,
                             confidence_level=confidence, method="BCa",
                             rng=np.random.default_rng(SEED)).confidence_interval
        if not (np.isfinite(ci.low) and np.isfinite(ci.high)):
            ci = stats.bootstrap((values,), np.mean, n_resamples=N_RESAMPLES,
                                 confidence_level=confidence, method="percentile",
                                 rng=np.random.default_rng(SEED)).confidence_interval
    return float(ci.low), float(ci.high)


def wilcoxon_p(differences) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences.

    NaN with fewer than ``MIN_PAIRS`` differences; 1.0 when all are zero
    (scipy's default drops zero differences and then has nothing to test).
    """
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) < MIN_PAIRS:
        return float("nan")
    if not np.any(d):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # normal approximation notes with ties / zeros
        return float(stats.wilcoxon(d).pvalue)


def format_diff(value: float, sign: bool = True) -> str:
    """A difference at 3 decimals, never "-0.000" (rounding noise of an exact tie)."""
    value = round(float(value), 3) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{value:+.3f}" if sign else f"{value:.3f}"


def format_p(p: float, n_pairs: int) -> str:
    """"p = 0.031", "p < 0.001", or the reason there is no p-value."""
    if n_pairs < MIN_PAIRS:
        return f"{TOO_FEW} ({n_pairs} pairs)" if n_pairs else "no pairs"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of ``pvalues`` (NaN entries are not tested).

    With the m finite p-values sorted ascending, p_(1) <= ... <= p_(m), the
    adjusted value of p_(i) is max over j <= i of min(1, (m - j + 1) p_(j)):
    the smallest is multiplied by m, the next by m - 1, and so on, and an
    adjusted p never falls below that of a smaller raw p. Rejecting where the
    adjusted p is below alpha keeps the family-wise error rate at alpha.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def smallest_p(n_pairs: int) -> float:
    """The smallest exact two-sided Wilcoxon p of ``n_pairs`` untied differences:
    all of one sign, 2 / 2^n."""
    return 2.0 / 2.0 ** n_pairs


def pairs_needed(comparisons: int, alpha: float = ALPHA) -> int:
    """The fewest pairs whose smallest p, multiplied by Holm's largest factor (the
    number of ``comparisons``), is below ``alpha``: fewer can never give a verdict."""
    n = MIN_PAIRS
    while smallest_p(n) * max(comparisons, 1) >= alpha:
        n += 1
    return n


def verdict(n_pairs: int, p_adjusted: float, diff_mean: float) -> str:
    """The rule of the module docstring, as the text of the `verdict` column."""
    if n_pairs < MIN_PAIRS:
        return TOO_FEW
    if p_adjusted < ALPHA and diff_mean > 0:
        return BETTER
    if p_adjusted < ALPHA and diff_mean < 0:
        return WORSE
    return UNCLEAR


def _per_subset(runs: pd.DataFrame) -> pd.DataFrame:
    """One value per (target, metric, source, set size, subset): the mean of its runs."""
    frame = runs.copy()
    subset = frame["subset_seed"] if "subset_seed" in frame else pd.Series(np.nan, frame.index)
    repeat = frame["repeat"] if "repeat" in frame else pd.Series(np.nan, frame.index)
    frame["subset"] = subset.where(subset.notna(), repeat)
    frame = frame.dropna(subset=["subset", "value"])
    return frame.groupby(KEYS + ["subset"], dropna=False, sort=True)["value"].mean().reset_index()


def _row(n_pairs, diffs, why: str | None) -> dict:
    """The ``COLUMNS`` of one comparison; ``p_holm`` and ``verdict`` are set once every
    comparison of the report is known (``compare_to_scratch``)."""
    if why is not None:
        return {"n_pairs": n_pairs, "diff_mean": np.nan, "diff_ci_low": np.nan,
                "diff_ci_high": np.nan, "wilcoxon_p": np.nan, "p_holm": np.nan,
                "wilcoxon": why, "verdict": why}
    low, high = bootstrap_ci(diffs)
    p = wilcoxon_p(diffs)
    return {"n_pairs": n_pairs, "diff_mean": float(np.mean(diffs)), "diff_ci_low": low,
            "diff_ci_high": high, "wilcoxon_p": p, "p_holm": np.nan,
            "wilcoxon": format_p(p, n_pairs), "verdict": None}


def compare_to_scratch(runs: pd.DataFrame) -> pd.DataFrame:
    """Paired difference to scratch per (target, metric, source, set size).

    Args:
      runs: run rows with ``target, metric, source, train_subjects, value`` and
        ``subset_seed`` and / or ``repeat``.

    Returns:
      One row per key of ``KEYS`` present in ``runs`` with the ``COLUMNS``.
      ``p_holm`` is adjusted over every tested row (all targets, sources and
      set sizes of ``runs``: one report is one family). Scratch rows have
      verdict ``reference``; a source without scratch runs at its target and
      metric gets ``no scratch runs``, one whose subsets share none with
      scratch at that size ``no matched scratch run``.
    """
    values = _per_subset(runs)
    rows = []
    for key, g in runs.groupby(KEYS, dropna=False, sort=True):
        target, metric, source, size = key
        row = dict(zip(KEYS, key))
        if source == REFERENCE:
            row.update(_row(pd.NA, [], IS_REFERENCE))
            rows.append(row)
            continue
        same = ((values["target"] == target) & (values["metric"] == metric)
                & ((values["train_subjects"] == size)
                   | (values["train_subjects"].isna() & pd.isna(size))))
        mine = values[same & (values["source"] == source)].set_index("subset")["value"]
        ref = values[same & (values["source"] == REFERENCE)].set_index("subset")["value"]
        scratch_anywhere = ((runs["target"] == target) & (runs["metric"] == metric)
                            & (runs["source"] == REFERENCE)).any()
        shared = mine.index.intersection(ref.index)
        diffs = (mine[shared] - ref[shared]).to_numpy(dtype=float)
        why = (NO_SCRATCH if not scratch_anywhere else NO_MATCH if len(shared) == 0 else None)
        row.update(_row(len(shared), diffs, why))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=KEYS + list(COLUMNS))
    frame["p_holm"] = holm(frame["wilcoxon_p"].to_numpy(dtype=float))
    open_ = frame["verdict"].isna()
    frame.loc[open_, "verdict"] = [verdict(int(r["n_pairs"]), r["p_holm"], r["diff_mean"])
                                   for r in frame[open_].to_dict("records")]
    return frame.astype({"n_pairs": "Int64"})  # empty for scratch itself


def problems(comparison: pd.DataFrame) -> list[str]:
    """One line per target (or set size) where no difference could be computed."""
    lines = []
    for target, g in comparison.groupby("target", sort=True):
        if (g["verdict"] == NO_SCRATCH).any():
            lines.append(f"{target}: no scratch runs, so no difference to scratch; add "
                         f"scratch=scratch to the sweep's --sources")
            continue
        for size, s in g[g["verdict"] == NO_MATCH].groupby("train_subjects", dropna=False):
            lines.append(f"{target}, {size_text(size)}: {', '.join(sorted(s['source']))} share no "
                         f"subset_seed with a scratch run, so no paired difference")
    return lines


def size_text(size) -> str:
    """"8 subjects", or "an unrecorded set size" (rows without ``train_subjects``)."""
    return "an unrecorded set size" if pd.isna(size) else f"{int(size)} subjects"
