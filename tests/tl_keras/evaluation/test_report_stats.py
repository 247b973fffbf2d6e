"""Statistics of the report (paired difference to scratch, bootstrap CI, Wilcoxon,
Holm's correction, summary.md) on constructed results whose answer is known."""
import numpy as np
import pandas as pd
import pytest

from tl_keras.evaluation import stats

# Symmetric around 0: mean exactly 0, so no source built with it can beat scratch.
NOISE = np.array([0.02, -0.02, 0.01, -0.01, 0.03, -0.03, 0.005, -0.005, 0.015, -0.015,
                  0.025, -0.025])
# 12 subsets: 9 comparisons (3 sources x 3 sizes) adjusted by Holm can still be decided
# (2 / 2**12 * 9 = 0.0044); with 8 the smallest adjusted p would be 2 / 2**8 * 9 = 0.07.
REPEATS = len(NOISE)
# Source minus scratch per set size: clearly better at 4 and 8, equal at 16.
SHIFTS = {("t1", "segmentation", "t1seg/encoder.weights.h5"): {4: 0.12, 8: 0.10, 16: 0.0},
          ("natural", "autoencoding", "natae/encoder.weights.h5"): {4: 0.0, 8: 0.0, 16: 0.0},
          ("natural", "classification", "imagenet:r50.h5"): {4: -0.08, 8: -0.06, 16: -0.05}}


def constructed_runs(repeats=REPEATS):
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
    assert stats.bootstrap_ci([0.2] * 6) == (0.2, 0.2)
    # no interval from fewer than MIN_PAIRS values (a BCa interval of 2 points is not one)
    assert all(np.isnan(stats.bootstrap_ci([0.2, 0.3])))
    assert all(np.isnan(stats.bootstrap_ci(values[:5])))


def test_wilcoxon_needs_six_pairs():
    assert np.isnan(stats.wilcoxon_p([0.1] * 5))
    # all six differences positive: exact two-sided p = 2 / 2**6
    assert stats.wilcoxon_p([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) == pytest.approx(2 / 64)
    assert stats.wilcoxon_p([0.0] * 6) == 1.0
    assert stats.format_p(float("nan"), 3) == "too few repeats (3 pairs)"
    assert stats.format_p(0.0004, 8) == "p < 0.001"


def _runs(tmp_path, frame, name="sweep_results.csv"):
    from tl_keras.evaluation.study_report import load_results
    frame.to_csv(tmp_path / name, index=False)
    return load_results([str(tmp_path / name)]).runs


def _by_key(table):
    return table.set_index(["source", "train_subjects"])


def test_known_better_equal_worse(tmp_path):
    from tl_keras.evaluation.study_report import source_table
    table = _by_key(source_table(_runs(tmp_path, constructed_runs())))
    for n in (4, 8, 16):
        assert table.loc[("scratch", n), "verdict"] == "reference"
        assert pd.isna(table.loc[("scratch", n), "n_pairs"])
        for (domain, task, init), shift in SHIFTS.items():
            label = "ImageNet" if init.startswith("imagenet") else f"{domain} {task}"
            r = table.loc[(label, n)]
            assert r["n_pairs"] == REPEATS
            assert r["diff_mean"] == pytest.approx(shift[n], abs=1e-12)
            assert r["diff_ci_low"] <= shift[n] <= r["diff_ci_high"]
            expected = (stats.BETTER if shift[n] > 0 else stats.WORSE if shift[n] < 0
                        else stats.UNCLEAR)
            assert r["verdict"] == expected, (label, n)
            if shift[n]:  # all 12 differences share a sign: exact p = 2 / 2**12
                assert r["wilcoxon_p"] == pytest.approx(2 / 4096)
                assert r["wilcoxon"] == "p < 0.001"
                # 5 such p-values among 9 tests: Holm multiplies the smallest by 9 and
                # carries that maximum forward to the other four
                assert r["p_holm"] == pytest.approx(9 * 2 / 4096)
            else:
                assert r["wilcoxon_p"] > 0.5 and r["p_holm"] >= r["wilcoxon_p"]
    # the existing columns come first, the statistics after them in a fixed order
    assert list(source_table(_runs(tmp_path, constructed_runs())).columns[-8:]) == list(
        stats.COLUMNS)


def test_summary_states_what_transferred(tmp_path):
    from tl_keras.evaluation.study_report import source_table
    from tl_keras.evaluation.summary import summary_markdown
    text = summary_markdown(source_table(_runs(tmp_path, constructed_runs())))
    # the rule and what a verdict does not mean are stated
    flat = " ".join(text.split())
    assert "at least 6 pairs" in flat and "all 9 such comparisons" in flat
    assert "Holm's method" in flat and "is not evidence that" in flat
    assert ("t1 segmentation beats scratch at 4 subjects by 0.120 (95 % CI 0.109 to 0.131, "
            "Wilcoxon p < 0.001, Holm-adjusted p = 0.004) and at 8 subjects by 0.100") in text
    assert ("t1 segmentation" in text and "shows no detected difference from scratch at 16 "
            "subjects (difference +0.000") in text
    assert "ImageNet is worse than scratch at 4 subjects by 0.080" in text
    assert "natural autoencoding shows no detected difference from scratch at 4 subjects" in text
    assert "beats" not in text.split("natural autoencoding")[1].split(".")[0]


def test_too_few_repeats(tmp_path):
    from tl_keras.evaluation.study_report import markdown_table, source_table
    from tl_keras.evaluation.summary import summary_markdown
    table = source_table(_runs(tmp_path, constructed_runs(repeats=5)))
    sources = table[table["source"] != "scratch"]
    assert (sources["n_pairs"] == 5).all() and sources["wilcoxon_p"].isna().all()
    assert (sources["verdict"] == "too few repeats").all()
    assert (sources["wilcoxon"] == "too few repeats (5 pairs)").all()
    # the mean difference is still given, without an interval and without a verdict
    t1 = _by_key(table).loc[("t1 segmentation", 4)]
    assert t1["diff_mean"] > 0.1 and np.isnan(t1["diff_ci_low"]) and np.isnan(t1["diff_ci_high"])
    assert "| +0.126 | 5 | too few repeats (5 pairs) | — | too few repeats |" in markdown_table(
        table)
    text = summary_markdown(table)
    assert "has too few repeats to judge" in text and "beats" not in text.split("**stroke**")[1]
    assert "mean difference +0.126, no test and no interval" in text


def test_missing_scratch_pairs(tmp_path, capsys):
    from tl_keras import report
    runs = constructed_runs()
    scratch = runs["init_from"] == "scratch"
    runs = runs[~(scratch & (runs["train_subjects"] == 16))  # no scratch at 16 subjects
                & ~(scratch & (runs["train_subjects"] == 8) & (runs["subset_seed"] < REPEATS - 5))]
    # a second target with no scratch run at all
    anatomy = constructed_runs().query("init_from != 'scratch'").assign(target="anatomy")
    anatomy = anatomy.rename(columns={"test_dice": "test_miou"})
    anatomy["run_dir"] = "anatomy/" + anatomy["run_dir"]
    sweep = tmp_path / "sweep_results.csv"
    pd.concat([runs, anatomy]).to_csv(sweep, index=False)
    out = tmp_path / "report"
    assert report.main(["report", f"--results={sweep}", f"--out_dir={out}", "--noverbose"]) == 0
    err = capsys.readouterr().err
    assert "anatomy: no scratch runs" in err
    assert "stroke, 16 subjects: ImageNet, natural autoencoding, t1 segmentation share no " \
           "subset_seed with a scratch run" in err
    table = _by_key(pd.read_csv(out / "table.csv").query("target == 'stroke'"))
    assert table.loc[("t1 segmentation", 16), "verdict"] == "no matched scratch run"
    assert table.loc[("t1 segmentation", 8), "n_pairs"] == 5  # 7 scratch runs missing
    assert table.loc[("t1 segmentation", 8), "verdict"] == "too few repeats"
    assert table.loc[("t1 segmentation", 4), "verdict"] == stats.BETTER
    text = (out / "summary.md").read_text()
    assert "**anatomy** (mIoU" in text and "there are no scratch runs for this target" in text
    assert "has no scratch run on the same training subjects to compare with at 16 subjects" in text


def test_pairs_follow_subset_seed_not_row_order(tmp_path):
    """Pairs are matched on subset_seed (repeat when it is absent), and several runs
    on one subset count as one pair (their mean)."""
    runs = constructed_runs()
    shuffled = runs.sample(frac=1.0, random_state=3)
    extra = runs[(runs["init_from"] == "scratch") & (runs["train_subjects"] == 4)].copy()
    extra["test_dice"] += 0.02  # second initialisation seed of scratch at 4 subjects
    extra["run_dir"] += "_seed2"
    cmp = stats.compare_to_scratch(_runs(tmp_path, pd.concat([shuffled, extra])))
    t1 = cmp.set_index(["source", "train_subjects"]).loc[("t1 segmentation", 4)]
    assert t1["n_pairs"] == REPEATS and t1["diff_mean"] == pytest.approx(0.12 - 0.01)
    no_seed = _runs(tmp_path, runs.drop(columns=["subset_seed"]), "no_seed.csv")
    t1 = stats.compare_to_scratch(no_seed).set_index(["source", "train_subjects"]).loc[
        ("t1 segmentation", 8)]
    assert t1["n_pairs"] == REPEATS and t1["diff_mean"] == pytest.approx(0.10)


def test_curve_has_bootstrap_band(tmp_path):
    from tl_keras.evaluation import plots
    from tl_keras.evaluation.study_report import curve_table, source_table
    runs = _runs(tmp_path, constructed_runs())
    curve = curve_table(runs)
    assert list(curve.columns[-2:]) == ["ci_low", "ci_high"]
    assert (curve["ci_low"] < curve["mean"]).all() and (curve["mean"] < curve["ci_high"]).all()
    png = plots.plot_curves(curve, str(tmp_path / "curve.png"), source_table(runs))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
