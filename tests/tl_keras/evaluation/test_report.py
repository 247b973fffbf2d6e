"""tl_keras.report on real evaluate outputs plus a sweep CSV."""
import os

import numpy as np
import pandas as pd
import pytest

from tests.helpers import export_threshold_model


def _sweep_csv(path):
    rows = []
    for domain, task, base in (("t1", "segmentation", 0.5), ("natural", "autoencoding", 0.4),
                               (None, None, 0.3)):
        init = "imagenet:r50.h5" if domain is None else "pre/encoder.weights.h5"
        for n in (10, 20):
            for r in range(3):
                rows.append({"target": "stroke", "source_task": task, "source_domain": domain,
                             "init": init, "train_subjects": n, "repeat": r,
                             "dice": base + n / 100 + r / 100})
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory, tiny_data_dir):
    from tl_keras.evaluation.evaluate import EvalConfig, evaluate_model_dir
    root = tmp_path_factory.mktemp("results")
    for name, bias, meta in (("a", 0.0, {"source_domain": "t1"}),
                             ("b", 1.5, {"source_domain": "natural",
                                         "source_task": "classification"})):
        model_dir = root / f"model_{name}"
        export_threshold_model(model_dir, bias=bias, **meta)
        evaluate_model_dir(str(model_dir), tiny_data_dir, "test", str(root / "eval" / name),
                           EvalConfig(batch_size=4, num_examples=2, verbose=False))
    return root


def test_report_tables_and_figures(results_dir, tmp_path):
    from tl_keras import report
    sweep = tmp_path / "sweep.csv"
    _sweep_csv(sweep)
    out = tmp_path / "report"
    assert report.main(["report", f"--results={results_dir / 'eval'}", f"--out_dir={out}",
                        "--noverbose", str(sweep)]) == 0
    table = pd.read_csv(out / "table.csv")
    # one row per source and set size: the evaluate runs (1 subject) have their own rows
    assert set(table["train_subjects"]) == {1, 10, 20}
    row = table[(table["source"] == "t1 segmentation") & (table["train_subjects"] == 20)]
    # sweep rows at 20 subjects: 0.5 + 0.2 + (0, 0.01, 0.02)
    assert row["mean"].iloc[0] == pytest.approx(0.71) and row["n_runs"].iloc[0] == 3
    assert row["sd"].iloc[0] == pytest.approx(0.01)
    assert set(table.loc[table["train_subjects"] == 20, "source"]) == {
        "t1 segmentation", "natural autoencoding", "ImageNet"}
    assert (table["verdict"] == "no scratch runs").all()  # these results hold no scratch run
    assert "no scratch runs" in (out / "summary.md").read_text()
    md = (out / "table.md").read_text()
    assert "| t1 segmentation | **0.710 ± 0.010** | 3 |" in md and "Dice (mean" in md
    curve = pd.read_csv(out / "curve.csv")
    assert set(curve["train_subjects"]) == {1, 10, 20}
    det = pd.read_csv(out / "detection.csv")
    perfect = det[(det["source"] == "t1 segmentation") & (det["volume_cutoff_ml"] == 0)]
    assert list(perfect["mean"]) == [1.0, 1.0]
    for png in ("curve.png", "detection.png", "examples.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png


def test_report_errors(tmp_path):
    from tl_keras.evaluation.study_report import load_results
    with pytest.raises(FileNotFoundError, match="no such"):
        load_results([str(tmp_path / "missing.csv")])
    with pytest.raises(FileNotFoundError, match="summary.csv"):
        load_results([str(tmp_path)])
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"x": [1]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="dice"):
        load_results([str(bad)])


def test_sweep_csv_columns(tmp_path):
    from tl_keras.evaluation.study_report import load_results, source_table
    sweep = tmp_path / "sweep_results.csv"
    pd.DataFrame({"source": ["t1_seg", "t1_seg", "imnet"], "init_from": ["a.h5", "a.h5",
                                                                          "imagenet:b.h5"],
                  "train_subjects": [5, 5, 5], "repeat": [0, 1, 0], "target": "stroke",
                  "source_task": ["segmentation", "segmentation", "imagenet"],
                  "source_domain": ["t1", "t1", "natural"], "test_dice": [0.5, 0.7, 0.4],
                  "test_miou": np.nan, "run_dir": ["r/a", "r/b", "r/c"]}).to_csv(sweep, index=False)
    # the same runs given twice (e.g. a sweep directory and its CSV) count once
    table = source_table(load_results([str(sweep), str(sweep)]).runs).set_index("source")
    assert table.loc["t1 segmentation", "mean"] == pytest.approx(0.6)
    assert table.loc["ImageNet", "metric"] == "dice"


def test_source_labels():
    from tl_keras.evaluation.study_report import source_label
    assert source_label({"source_task": "segmentation", "source_domain": "t1",
                         "init": "x.h5"}) == "t1 segmentation"
    assert source_label({"source_task": None, "source_domain": None,
                         "init": "scratch"}) == "scratch"
    assert source_label({"source_task": "classification", "source_domain": "natural",
                         "init": "imagenet:w.h5"}) == "ImageNet"
    assert source_label({"source_task": np.nan, "init": np.nan}) == "scratch"
    assert source_label({"source": "cell_a", "init_from": np.nan}) == "cell_a"
