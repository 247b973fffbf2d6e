"""Fine-tuning modes in the report: a frozen run is a source of its own ("t1 restoration
(frozen)", "random encoder (frozen)"), paired with scratch like any other source, whether
its rows carry the recorded label (sweep CSV) or only the mode columns (evaluate output)."""
import pandas as pd
import pytest

SHIFT = {"t1 restoration": 0.10, "t1 restoration (frozen)": 0.04,
         "random encoder (frozen)": -0.05}


def _rows(repeats=6):
    rows = []
    for n in (4, 8):
        for r in range(repeats):
            base = 0.3 + n / 100 + 0.03 * r
            common = {"target": "stroke", "train_subjects": n, "subset_seed": r, "repeat": r}
            rows.append({**common, "init_from": "scratch", "test_dice": base,
                         "run_dir": f"scratch/n{n}/r{r}"})
            rows.append({**common, "init_from": "runs/t1_rest/encoder_best",
                         "source_task": "restoration", "source_domain": "t1",
                         "source_label": "t1 restoration", "test_dice": base + 0.10,
                         "run_dir": f"rest/n{n}/r{r}"})
            rows.append({**common, "init_from": "runs/t1_rest/encoder_best",
                         "source_task": "restoration", "source_domain": "t1",
                         "source_label": "t1 restoration (frozen)", "freeze_encoder": True,
                         "test_dice": base + 0.04, "run_dir": f"rest_frozen/n{n}/r{r}"})
            # no recorded label: the mode columns make it a source of its own
            rows.append({**common, "init_from": "random", "source_task": "random",
                         "freeze_encoder": True, "freeze_epochs": 0,
                         "encoder_lr_multiplier": 1.0, "test_dice": base - 0.05,
                         "run_dir": f"random_frozen/n{n}/r{r}"})
    return pd.DataFrame(rows)


def test_frozen_runs_are_their_own_sources_with_paired_differences(tmp_path):
    from tl_keras.evaluation.study_report import load_results, source_table
    _rows().to_csv(tmp_path / "sweep_results.csv", index=False)
    runs = load_results([str(tmp_path / "sweep_results.csv")]).runs
    assert sorted(runs["source"].unique()) == sorted(["scratch", *SHIFT])
    table = source_table(runs).set_index(["source", "train_subjects"])
    for label, shift in SHIFT.items():
        for n in (4, 8):
            row = table.loc[(label, n)]
            assert row["n_pairs"] == 6 and row["diff_mean"] == pytest.approx(shift), label


def test_label_from_mode_columns():
    from tl_keras.evaluation.study_report import source_label
    assert source_label({"source_task": "segmentation", "source_domain": "t1",
                         "freeze_encoder": True, "freeze_epochs": 3,
                         "encoder_lr_multiplier": 0.1}) == (
        "t1 segmentation (frozen 3 epochs, encoder LR x0.1)")
    assert source_label({"source_task": "segmentation", "source_domain": "t1",
                         "freeze_encoder": False, "freeze_epochs": float("nan"),
                         "encoder_lr_multiplier": 1.0}) == "t1 segmentation"
