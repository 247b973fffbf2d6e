"""``summary.md``: one plain-language paragraph per target on what transferred.

Built from the report's table (``report.source_table``: per target, source and
set size the mean over repeats and the ``stats.COLUMNS``), so the sentences
and the table always say the same thing.
"""
from __future__ import annotations

import pandas as pd

from tl_keras.evaluation import stats

METRIC_NAMES = {"dice": "Dice", "miou": "mIoU"}

HEADER = f"""# What transferred

Each source is compared with training from scratch on the same training subjects: runs that
share the target, the fine-tuning set size and `subset_seed` form a pair, and the difference is
source minus scratch (higher Dice / mIoU is better). A source **beats** scratch at a set size
when there are at least {stats.MIN_PAIRS} pairs and the 95 % bootstrap confidence interval (CI)
of the mean paired difference lies entirely above 0; it is **worse** when the interval lies
entirely below 0. The two-sided Wilcoxon signed-rank p-value is given beside it. With fewer
than {stats.MIN_PAIRS} pairs no verdict is given ("too few repeats"). The numbers are in
`table.csv` / `table.md`; the rule is explained in the toolkit's docs/evaluation.md.
"""


def _at(r) -> str:
    return f"at {stats.size_text(r['train_subjects'])}"


def _ci(r) -> str:
    low, high = (stats.format_diff(r[c], sign=False) for c in ("diff_ci_low", "diff_ci_high"))
    return f"95 % CI {low} to {high}"


def _p(r) -> str:
    text = r["wilcoxon"]
    return "Wilcoxon " + text if text.startswith("p ") else text


def _better_or_worse(r) -> str:
    note = "" if r["wilcoxon_p"] < 0.05 else ", which the Wilcoxon test does not confirm"
    size = stats.format_diff(abs(r["diff_mean"]), sign=False)
    return f"{_at(r)} by {size} ({_ci(r)}, {_p(r)}{note})"


def _with_numbers(r) -> str:
    return f"{_at(r)} (difference {stats.format_diff(r['diff_mean'])}, {_ci(r)}, {_p(r)})"


def _too_few(r) -> str:
    pairs = int(r["n_pairs"])
    ci = f", {_ci(r)}" if pd.notna(r["diff_ci_low"]) else ""
    return (f"{_at(r)} ({pairs} pair{'s' if pairs != 1 else ''}, difference "
            f"{stats.format_diff(r['diff_mean'])}{ci})")


# verdict -> (verb phrase, how one set size is described), in the paragraph's order
_CLAUSES = (
    (stats.BETTER, "beats scratch", _better_or_worse),
    (stats.WORSE, "is worse than scratch", _better_or_worse),
    (stats.UNCLEAR, "does not differ clearly from scratch", _with_numbers),
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
    size = "" if pd.isna(best["train_subjects"]) else (
        f" at the largest set size ({stats.size_text(best['train_subjects'])})")
    runs = int(best["n_runs"])
    return (f"The highest mean {name}{size} is {best['source']}'s ({best['mean_sd']} over "
            f"{runs} run{'s' if runs != 1 else ''}).")


def target_paragraph(target: str, metric: str, table: pd.DataFrame) -> str:
    """The paragraph of one target (``table``: its rows of the report table)."""
    name = METRIC_NAMES.get(metric, metric)
    lead = f"**{target}** ({name}, source minus scratch on the same training subjects): "
    others = table[table["source"] != stats.REFERENCE]
    if others.empty:
        body = "only scratch runs, no source to compare."
    elif (others["verdict"] == stats.NO_SCRATCH).any():
        body = ("there are no scratch runs for this target, so nothing can be said about what "
                "transferred; add scratch=scratch to the sweep's --sources.")
    else:
        body = " ".join(source_sentence(s, g) for s, g in others.groupby("source", sort=True))
    return f"{lead}{body} {_best_sentence(table, name)}".rstrip()


def summary_markdown(table: pd.DataFrame) -> str:
    """The whole ``summary.md``: the rule, then a paragraph per target and metric."""
    parts = [HEADER]
    for (target, metric), g in table.groupby(["target", "metric"], sort=True):
        parts.append(target_paragraph(str(target), str(metric), g))
    return "\n\n".join(p.strip() for p in parts) + "\n"
