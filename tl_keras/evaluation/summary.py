"""``summary.md``: one plain-language paragraph per target on what transferred.

Built from the report's table (``report.source_table``: per target, source and
set size the mean over repeats and the ``stats.COLUMNS``), so the sentences
and the table always say the same thing.
"""
from __future__ import annotations

import textwrap

import pandas as pd

from tl_keras.evaluation import catalogue, stats


def header(table: pd.DataFrame) -> str:
    """The rule and what a verdict means, with the number of comparisons corrected for."""
    tested = int(table["wilcoxon_p"].notna().sum()) if "wilcoxon_p" in table else 0
    text = _rule(tested) + _power(table, tested)
    return "\n\n".join(textwrap.fill(" ".join(p.split()), 92, break_on_hyphens=False)
                       for p in text.strip().split("\n\n")) + "\n"


def _power(table: pd.DataFrame, tested: int) -> str:
    """A warning when some tested comparisons have too few pairs to ever be decided."""
    if not tested:
        return ""
    need = stats.pairs_needed(tested)
    weak = table[table["wilcoxon_p"].notna() & (table["n_pairs"] < need)]
    if weak.empty:
        return ""
    fewest = int(weak["n_pairs"].min())
    return (f"\nWith {fewest} pairs the smallest possible Wilcoxon p is "
            f"{stats.smallest_p(fewest):.4f}; adjusted over {tested} comparisons it is at least "
            f"{min(1.0, stats.smallest_p(fewest) * tested):.3f}, so {len(weak)} of them could not "
            f"be called better or worse whatever the data: {need} or more pairs are needed "
            f"(more repeats, or fewer sources or set sizes in one report).\n")


def _rule(tested: int) -> str:
    """The rule's paragraphs."""
    alpha = f"{stats.ALPHA * 100:g} %"
    return f"""Each source is compared with training from scratch on the same training subjects: runs that
share the target, the fine-tuning set size and `subset_seed` form a pair, and the difference is
source minus scratch (higher Dice / mIoU is better). With at least {stats.MIN_PAIRS} pairs the
differences are tested with the two-sided Wilcoxon signed-rank test, and the p-values of all
{tested} such comparisons in this report (every target, source and set size) are adjusted
together with Holm's method. A source is **better than scratch** (or **worse than scratch**)
at a set size when its adjusted p is below {stats.ALPHA} and the mean paired difference is
above (below) 0; otherwise "no difference detected". The mean difference and its 95 %
bootstrap confidence interval (CI) give the size. With fewer than {stats.MIN_PAIRS} pairs
there is no test and no interval, only the mean difference ("too few repeats").

What a verdict means: if no source made any difference, the chance that even one of the
{tested} comparisons were called better or worse is at most {alpha}. What it does
not mean: "no difference detected" is not evidence that the source and scratch are equal
(few pairs detect only large, consistent differences; the CI shows which sizes the data
still allow), and a verdict holds for these data, this network, these fine-tuning settings
and set sizes only. The numbers, with the lesion-wise precision and F1 beside Dice, are in
`table.csv` / `table.md`; the rule is explained in the toolkit's docs/evaluation.md.
"""


def _at(r) -> str:
    return f"at {stats.size_text(r['train_subjects'])}"


def _ci(r) -> str:
    low, high = (stats.format_diff(r[c], sign=False) for c in ("diff_ci_low", "diff_ci_high"))
    return f"95 % CI {low} to {high}"


def _p(r) -> str:
    """"Wilcoxon p = 0.008, Holm-adjusted p = 0.031"."""
    adjusted = stats.format_p(r["p_holm"], int(r["n_pairs"]))
    return f"Wilcoxon {r['wilcoxon']}, Holm-adjusted {adjusted}"


def _better_or_worse(r) -> str:
    wide = r["diff_ci_low"] <= 0 <= r["diff_ci_high"]
    note = ", although the bootstrap interval includes 0" if wide else ""
    size = stats.format_diff(abs(r["diff_mean"]), sign=False)
    return f"{_at(r)} by {size} ({_ci(r)}, {_p(r)}{note})"


def _with_numbers(r) -> str:
    return f"{_at(r)} (difference {stats.format_diff(r['diff_mean'])}, {_ci(r)}, {_p(r)})"


def _too_few(r) -> str:
    pairs = int(r["n_pairs"])
    return (f"{_at(r)} ({pairs} pair{'s' if pairs != 1 else ''}, mean difference "
            f"{stats.format_diff(r['diff_mean'])}, no test and no interval)")


# verdict -> (verb phrase, how one set size is described), in the paragraph's order
_CLAUSES = (
    (stats.BETTER, "beats scratch", _better_or_worse),
    (stats.WORSE, "is worse than scratch", _better_or_worse),
    (stats.UNCLEAR, "shows no detected difference from scratch", _with_numbers),
    (stats.TOO_FEW, "has too few repeats to judge", _too_few),
    (stats.NO_MATCH, "has no scratch run on the same training subjects to compare with",
     _at),
)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def source_sentence(source: str, rows: pd.DataFrame) -> str:
    """One sentence: what ``source`` does against scratch at each set size."""
    rows = rows.sort_values("train_subjects")
    clauses = []
    for name, verb, describe in _CLAUSES:
        chosen = rows[rows["verdict"] == name]
        if len(chosen):
            clauses.append(f"{verb} {_join([describe(r) for r in chosen.to_dict('records')])}")
    return f"{source} {'; '.join(clauses)}."


def _best_sentence(table: pd.DataFrame, name: str) -> str:
    sizes = table["train_subjects"].dropna()
    at = table[table["train_subjects"] == sizes.max()] if len(sizes) else table
    if at["mean"].isna().all():
        return ""
    best = at.loc[at["mean"].idxmax()]
    several = sizes.nunique() > 1
    size = ("" if pd.isna(best["train_subjects"]) else
            f" at the largest set size ({stats.size_text(best['train_subjects'])})" if several
            else f" at {stats.size_text(best['train_subjects'])}")
    runs = int(best["n_runs"])
    return (f"The highest mean {name}{size} is {best['source']}'s ({best['mean_sd']} over "
            f"{runs} run{'s' if runs != 1 else ''}).")


def _lesion_sentence(table: pd.DataFrame) -> str:
    """Lesion-wise precision and F1 at the largest set size: the range over sources."""
    sizes = table["train_subjects"].dropna()
    at = table[table["train_subjects"] == sizes.max()] if len(sizes) else table
    at = at.dropna(subset=["lesion_precision"])
    if at.empty:
        return ""
    preset = at["lesion_preset"].iloc[0]

    def spread(col):
        lo, hi = at.loc[at[col].idxmin()], at.loc[at[col].idxmax()]
        return f"{lo[col]:.2f} ({lo['source']}) to {hi[col]:.2f} ({hi['source']})"
    size = "" if at["train_subjects"].isna().all() else (
        f" at {stats.size_text(at['train_subjects'].iloc[0])}")
    return (f"Lesion-wise (detection preset `{preset}`){size}: precision (the fraction of "
            f"predicted components that count as found lesions) from {spread('lesion_precision')}, "
            f"F1 from {spread('lesion_f1')}; a network that paints false blobs loses "
            f"precision even when its Dice holds up.")


def target_paragraph(target: str, metric: str, table: pd.DataFrame) -> str:
    """The paragraph of one target (``table``: its rows of the report table)."""
    name = catalogue.display_name(metric)
    lead = f"**{target}** ({name}, source minus scratch on the same training subjects): "
    others = table[table["source"] != stats.REFERENCE]
    if others.empty:
        body = "only scratch runs, no source to compare."
    elif (others["verdict"] == stats.NO_SCRATCH).any():
        body = ("there are no scratch runs for this target, so nothing can be said about what "
                "transferred; add scratch=scratch to the sweep's --sources.")
    else:
        body = " ".join(source_sentence(s, g) for s, g in others.groupby("source", sort=True))
    return f"{lead}{body} {_best_sentence(table, name)} {_lesion_sentence(table)}".rstrip()


def summary_markdown(table: pd.DataFrame, preamble: str | None = None) -> str:
    """The whole ``summary.md``: ``preamble`` (e.g. what the data are), the rule,
    then a paragraph per target and metric."""
    parts = ["# What transferred", *([preamble] if preamble else []), header(table)]
    for (target, metric), g in table.groupby(["target", "metric"], sort=True):
        parts.append(target_paragraph(str(target), str(metric), g))
    return "\n\n".join(p.strip() for p in parts) + "\n"
