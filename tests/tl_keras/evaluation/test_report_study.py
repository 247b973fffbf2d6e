"""The report of a study: Holm's correction, no interval from too few pairs, lesion-wise
precision and F1 beside Dice, one examples figure per target, a style per source, and
the catalogues the CLIs read."""
import json

import numpy as np
import pandas as pd
import pytest

from tl_keras.evaluation import catalogue, stats


def _pairs(tmp_path, diffs_by_source: dict, size=4, extra=None):
    """Sweep rows: scratch on subsets 0..n-1 and each source with the given paired
    differences; ``extra`` adds columns per (source, subset)."""
    rows = []
    for source, diffs in diffs_by_source.items():
        for r, d in enumerate(diffs):
            base = 0.3 + 0.05 * ((r * 7) % 5)
            row = {"target": "stroke", "source": source, "init_from": f"{source}.h5",
                   "source_domain": "t1", "source_task": source, "source_label": source,
                   "train_subjects": size, "subset_seed": r, "test_dice": base + d,
                   "run_dir": f"{source}/n{size}/r{r}"}
            rows.append({**row, **(extra or {}).get((source, r), {})})
            if source == next(iter(diffs_by_source)):
                rows.append({"target": "stroke", "init_from": "scratch", "train_subjects": size,
                             "subset_seed": r, "test_dice": base,
                             "run_dir": f"scratch/n{size}/r{r}"})
    path = tmp_path / "sweep_results.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, np.nan, 0.005]
    # sorted: 0.005 x 4, 0.01 x 3, 0.03 x 2, 0.04 x 1, each at least the one before
    expected = [0.03, 0.06, 0.06, np.nan, 0.02]
    np.testing.assert_allclose(stats.holm(p), expected)
    np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])
    assert stats.pairs_needed(1) == 6 and stats.pairs_needed(12) == 9  # 2/2^9*12 = 0.047


def test_raw_p_below_005_but_adjusted_above_gives_no_difference(tmp_path):
    from tl_keras.evaluation.study_report import load_results, markdown_table, source_table
    # two sources, six pairs each, all six differences positive: exact p = 2 / 64 each
    diffs = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]
    table = source_table(load_results([_pairs(tmp_path, {"a": diffs, "b": diffs})]).runs)
    for source in ("a", "b"):
        r = table.set_index("source").loc[source]
        assert r["wilcoxon_p"] == pytest.approx(2 / 64) and r["wilcoxon_p"] < 0.05
        # Holm by its definition: 2 tests, the smaller p times 2, the larger times 1 but
        # never below the smaller's adjusted value
        assert r["p_holm"] == pytest.approx(max(2 * 2 / 64, 1 * 2 / 64)) and r["p_holm"] > 0.05
        assert r["verdict"] == "no difference detected"
    md = markdown_table(table)
    assert "| p = 0.031 | p = 0.062 | no difference detected |" in md
    # one source alone is one test: the same differences are then better than scratch
    (tmp_path / "one").mkdir()
    alone = source_table(load_results([_pairs(tmp_path / "one", {"a": diffs})]).runs)
    assert alone.set_index("source").loc["a", "verdict"] == "better than scratch"


def test_two_pairs_give_the_mean_difference_without_an_interval(tmp_path):
    from tl_keras.evaluation import plots
    from tl_keras.evaluation.study_report import load_results, write_report
    results = load_results([_pairs(tmp_path, {"a": [0.07, 0.085]})])
    out = tmp_path / "report"
    write_report(results, str(out), verbose=False)
    row = pd.read_csv(out / "table.csv").set_index("source").loc["a"]
    assert row["n_pairs"] == 2 and row["diff_mean"] == pytest.approx(0.0775)
    assert np.isnan(row["diff_ci_low"]) and np.isnan(row["diff_ci_high"])
    assert np.isnan(row["wilcoxon_p"]) and row["verdict"] == "too few repeats"
    assert "| +0.078 | 2 | too few repeats (2 pairs) | — | too few repeats |" in (
        out / "table.md").read_text()
    # the figure draws the mean as an open marker with no error bar; the curve no band
    points = plots.difference_points(pd.read_csv(out / "table.csv"))
    a = points.set_index("source").loc["a"]
    assert a["too_few"] and np.isnan(a["err_low"]) and np.isnan(a["err_high"])
    curve = pd.read_csv(out / "curve.csv")
    assert curve["ci_low"].isna().all() and curve["ci_high"].isna().all()


def test_lesion_precision_and_f1_beside_dice(tmp_path):
    from tl_keras.evaluation.study_report import load_results, markdown_table, source_table
    assert catalogue.target_preset("stroke") == "atlas2"
    precision = {("a", 0): 0.5, ("a", 1): 0.75, ("a", 2): 1.0}
    extra = {k: {"test_atlas2_precision": v, "test_atlas2_f1": v / 2,
                 "test_paper_precision": 0.0} for k, v in precision.items()}
    runs = load_results([_pairs(tmp_path, {"a": [0.1, 0.2, 0.3]}, extra=extra)]).runs
    table = source_table(runs).set_index("source")
    a = table.loc["a"]
    assert a["lesion_preset"] == "atlas2"  # the stroke target's preset, not the paper's
    assert a["lesion_precision"] == pytest.approx(0.75)  # (0.5 + 0.75 + 1.0) / 3
    assert a["lesion_precision_sd"] == pytest.approx(np.std([0.5, 0.75, 1.0], ddof=1))
    assert a["lesion_f1"] == pytest.approx(0.375)
    assert np.isnan(table.loc["scratch", "lesion_precision"])  # its rows have none
    md = markdown_table(source_table(runs))
    assert "| lesion precision (atlas2) | lesion F1 (atlas2) |" in md
    assert "| 0.750 ± 0.250 | 0.375 ± 0.125 |" in md


def test_detection_precision_from_components():
    from tl_keras.evaluation.report_tables import detection_table
    det = pd.DataFrame({"target": "stroke", "source": "a", "train_subjects": 4,
                        "overlap_cutoff": 0.0, "volume_cutoff_ml": [0.0, 0.0, 1.0],
                        "detection_rate": [1.0, 0.5, 0.5], "fp_components": [1, 3, 0],
                        "n_pred_components": [4, 4, 0], "n_subjects": [2, 2, 2]})
    table = detection_table(det).set_index("volume_cutoff_ml")
    # 1 - 1/4 and 1 - 3/4; no predicted component counts as precision 1
    assert table.loc[0.0, "precision"] == pytest.approx(0.5)
    assert table.loc[1.0, "precision"] == 1.0
    assert table.loc[0.0, "fp_per_scan"] == pytest.approx(1.0)  # (0.5 + 1.5) / 2


def _examples(folder, target, subjects, source_domain):
    folder.mkdir(parents=True)
    pd.DataFrame({"target": [target], "source_domain": [source_domain],
                  "source_task": ["segmentation"], "init_from": ["x.h5"], "train_subjects": [4],
                  "subset_seed": [0], "dice": [0.5], "model_dir": [str(folder)]}).to_csv(
        folder / "summary.csv", index=False)
    rng = np.random.default_rng(0)
    gt = np.zeros((len(subjects), 16, 16), np.uint8)
    gt[:, 4:9, 4:9] = 1
    run = {"target": target, "source_domain": source_domain, "source_task": "segmentation",
           "init_from": "x.h5"}
    np.savez_compressed(folder / "examples.npz", subject_id=np.array(subjects),
                        slice_index=np.arange(len(subjects)),
                        image=rng.random((len(subjects), 16, 16)).astype(np.float16), gt=gt,
                        pred=gt, num_classes=np.array(2),
                        class_names=np.array(["background", "lesion"]),
                        run=np.array(json.dumps(run)))


def test_several_targets_give_one_examples_figure_each(tmp_path):
    from tl_keras.evaluation.study_report import load_results, write_report
    for target, subjects in (("stroke", ["s1", "s2"]), ("ms", ["m1", "m2"])):
        for domain in ("t1", "natural"):
            _examples(tmp_path / "res" / target / domain, target, subjects, domain)
    written = write_report(load_results([str(tmp_path / "res")]), str(tmp_path / "out"),
                           verbose=False)
    assert {k for k in written if k.startswith("examples")} == {"examples_ms_png",
                                                                "examples_stroke_png"}
    for name in ("examples_ms.png", "examples_stroke.png"):
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"


def test_twelve_sources_each_a_colour_and_a_marker():
    from tl_keras.evaluation import plots
    style = plots.source_style([f"source {i}" for i in range(12)])
    assert len({c for c, _ in style.values()}) == 12
    assert len({m for _, m in style.values()}) == 12
    assert style == plots.source_style(reversed(list(style)))  # order-independent


def test_clis_and_docs_read_the_catalogues():
    from tl_keras import evaluate
    from tl_keras.evaluation import detection, evaluate as lib
    assert evaluate.FLAGS["presets"].default == list(catalogue.DETECTION_PRESETS)
    assert lib.EvalConfig().presets == tuple(catalogue.DETECTION_PRESETS)
    assert detection.PRESETS is catalogue.DETECTION_PRESETS
    assert catalogue.metric_for(2) == "dice" and catalogue.metric_for(7) == "miou"
    from tests.helpers import ROOT
    with open(f"{ROOT}/docs/evaluation.md") as f:
        docs = f.read()
    for name in catalogue.DETECTION_PRESETS:
        assert f"| `{name}`" in docs, name
    for name in (*catalogue.DETECTION_PRESETS, *catalogue.TARGET_PRESETS):
        assert name in docs
    for metric in catalogue.METRICS.values():
        assert f"`{metric.name}`" in docs and metric.display in docs
