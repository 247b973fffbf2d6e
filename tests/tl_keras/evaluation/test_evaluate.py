"""evaluate_model_dir and the tl_keras.evaluate CLI on tiny data with known answers."""
import os

import numpy as np
import pandas as pd
import pytest

from tests.helpers import (export_threshold_model, make_tiny_dataset, needs_mount,
                           read_only_error_lines)
from tl_common import lock


@pytest.fixture(scope="module")
def binary_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("model_bin")
    export_threshold_model(d)
    return str(d)


def test_binary_evaluation(binary_model, tiny_data_dir, tmp_path):
    from tl_keras.evaluation.evaluate import OUTPUT_FILES, EvalConfig, evaluate_model_dir
    from tl_keras.evaluation.tables import META_COLUMNS
    out_dir = str(tmp_path / "eval")
    config = EvalConfig(batch_size=2, num_examples=2, verbose=False)
    out = evaluate_model_dir(binary_model, tiny_data_dir, "test", out_dir, config)
    for name in OUTPUT_FILES:
        frame = pd.read_csv(os.path.join(out_dir, name))
        assert list(frame.columns[:len(META_COLUMNS)]) == list(META_COLUMNS), name
    per_slice = out["per_slice"]
    assert len(per_slice) == 6  # 2 test subjects x 3 slices
    np.testing.assert_allclose(per_slice["dice"], 1.0)
    assert list(per_slice.columns[len(META_COLUMNS):]) == [
        "subject_id", "slice_index", "gt_voxels", "pred_voxels", "dice"]
    row = out["summary"].iloc[0]
    assert row["dice"] == 1.0 and row["dice_volume"] == 1.0 and np.isnan(row["miou"])
    assert row["train_subjects"] == 1 and row["repeat"] == 3 and row["seed"] == 7
    assert row["source_task"] == "segmentation" and row["connectivity"] == 8
    assert row["empty_policy"] == "skip_both_empty"
    assert row["detection_rate_o0_v0"] == 1.0 and row["wmh_f1"] == 1.0
    # 8-connected per slice: one disc per slice -> one lesion per slice.
    assert len(out["per_lesion"]) == 6 and out["per_lesion"]["detected_overlap_0.2"].all()
    assert list(out["detection"]["fp_components"]) == [0] * 6
    assert set(out["presets"]["preset"]) == {"paper", "isles22", "atlas2", "wmh",
                                              "msseg_anima"}
    ex = np.load(os.path.join(out_dir, "examples.npz"))
    assert ex["image"].shape == (2, 32, 32) and ex["gt"].shape == ex["pred"].shape
    assert int(ex["num_classes"]) == 2
    np.testing.assert_array_equal(ex["gt"], ex["pred"])

    # A rerun with the same configuration resumes (skips); --overwrite recomputes.
    stamp = os.path.getmtime(os.path.join(out_dir, "per_slice.csv"))
    again = evaluate_model_dir(binary_model, tiny_data_dir, "test", out_dir, config)
    assert os.path.getmtime(os.path.join(out_dir, "per_slice.csv")) == stamp
    assert again["summary"]["dice"].iloc[0] == 1.0


def test_multiclass_evaluation(tmp_path):
    from tl_keras.evaluation.evaluate import EvalConfig, evaluate_model_dir
    data = tmp_path / "data3"
    make_tiny_dataset(str(data), num_mask_classes=3, splits={"test": 2})
    model_dir = tmp_path / "model3"
    export_threshold_model(model_dir, num_classes=3, target="anatomy")
    out = evaluate_model_dir(str(model_dir), str(data), "test", str(tmp_path / "eval3"),
                             EvalConfig(batch_size=2, num_examples=0, verbose=False))
    # Slices 0 and 2 hold class 1 (predicted exactly): mIoU 1; slice 1 holds
    # class 2 but class 1 is predicted: both IoU 0.
    per_slice = out["per_slice"]
    np.testing.assert_allclose(per_slice.sort_values(["subject_id", "slice_index"])["miou"],
                               [1, 0, 1, 1, 0, 1])
    assert out["summary"]["miou"].iloc[0] == pytest.approx(2 / 3)
    assert "iou_lesion2" in per_slice and len(out["per_lesion"]) == 0
    assert not os.path.exists(tmp_path / "eval3" / "examples.npz")


def test_cli_runs_and_reports_errors_in_one_line(binary_model, tiny_data_dir, tmp_path,
                                                 capsys):
    from tl_keras import evaluate
    out_dir = tmp_path / "cli"
    assert evaluate.main([
        "evaluate", f"--model_dir={binary_model}", f"--data_dir={tiny_data_dir}",
        f"--out_dir={out_dir}", "--batch_size=4", "--connectivity=26",
        "--overlap_cutoffs=0,0.5", "--noverbose"]) == 0
    assert "dice 1.0000" in capsys.readouterr().out
    detection = pd.read_csv(out_dir / "detection.csv")
    assert set(detection["overlap_cutoff"]) == {0.0, 0.5}
    assert set(detection["connectivity"]) == {26}

    code = evaluate.main(["evaluate", f"--model_dir={tmp_path / 'nothing'}",
                          f"--data_dir={tiny_data_dir}", f"--out_dir={out_dir}"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("tl_keras.evaluate: error:") and "nothing" in err
    assert len(err.splitlines()) == 1
    assert evaluate.main(["evaluate", f"--data_dir={tiny_data_dir}"]) == 2
    assert "model_dir" in capsys.readouterr().err
    assert evaluate.main(["evaluate", "--help"]) == 0
    assert "--empty_policy" in capsys.readouterr().out


def test_incompatible_data_is_refused(binary_model, tmp_path):
    from tl_keras.evaluation.evaluate import evaluate_model_dir
    data = tmp_path / "data48"
    make_tiny_dataset(str(data), size=48, splits={"test": 1})
    with pytest.raises(ValueError, match="expects"):
        evaluate_model_dir(binary_model, str(data), "test", str(tmp_path / "o"))
    with pytest.raises(ValueError, match="no split"):
        evaluate_model_dir(binary_model, str(data), "val", str(tmp_path / "o"))


def test_evaluation_records_configuration_and_versions(binary_model, tiny_data_dir, tmp_path):
    """An evaluate output folder says how it was made (configuration, seed, versions)."""
    import json

    from tl_keras.evaluation.evaluate import EvalConfig, evaluate_model_dir
    out = str(tmp_path / "eval")
    evaluate_model_dir(binary_model, tiny_data_dir, "test", out,
                       EvalConfig(batch_size=2, num_examples=0, verbose=False))
    with open(os.path.join(out, "evaluate_run.json")) as f:
        record = json.load(f)
    assert "tensorflow" in record["versions"] and record["seed"] == 7
    assert record["flags"]["data_dir"] == os.path.abspath(tiny_data_dir)


@needs_mount
def test_read_only_out_dir_is_one_line(binary_model, tiny_data_dir, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    lines = read_only_error_lines("tl_keras.evaluate", [
        f"--model_dir={binary_model}", f"--data_dir={tiny_data_dir}",
        f"--out_dir={ro / 'eval'}", "--noverbose"], ro)
    assert len(lines) == 1 and "Read-only file system" in lines[0] and str(ro) in lines[0]


# evaluate never replaces another evaluation silently: a lock against a concurrent one,
# a refusal for an evaluation of something else (docs/reliability.md).
def test_concurrent_evaluation_is_refused(binary_model, tiny_data_dir, tmp_path):
    from tl_keras.evaluation.evaluate import EvalConfig, evaluate_model_dir
    out = str(tmp_path / "eval")
    with lock.acquire(out):  # as a running evaluation holds it
        with pytest.raises(lock.LockError, match=f"{out} is in use by pid {os.getpid()}"):
            evaluate_model_dir(binary_model, tiny_data_dir, "test", out, EvalConfig(verbose=False))
    assert os.listdir(out) == []


def test_another_evaluation_is_not_replaced_without_overwrite(binary_model, tiny_data_dir, tmp_path):
    from tl_keras.evaluation.evaluate import EvalConfig, EvaluationError, evaluate_model_dir
    out = str(tmp_path / "eval")
    config = EvalConfig(verbose=False, num_examples=0)
    evaluate_model_dir(binary_model, tiny_data_dir, "test", out, config)
    stamp = os.path.getmtime(os.path.join(out, "summary.csv"))
    with pytest.raises(EvaluationError, match=r"holds another evaluation \(different "
                                              r"--split\); use another --out_dir, or "
                                              r"--overwrite"):
        evaluate_model_dir(binary_model, tiny_data_dir, "val", out, config)
    assert os.path.getmtime(os.path.join(out, "summary.csv")) == stamp
    again = EvalConfig(verbose=False, num_examples=0, overwrite=True)
    assert len(evaluate_model_dir(binary_model, tiny_data_dir, "val", out, again)["summary"])


def test_out_dir_inside_the_data_is_refused(binary_model, tiny_data_dir):
    from tl_keras.evaluation.evaluate import EvaluationError, evaluate_model_dir
    before = sorted(os.listdir(tiny_data_dir))
    with pytest.raises(EvaluationError, match="--out_dir is inside --data_dir"):
        evaluate_model_dir(binary_model, tiny_data_dir, "test",
                           os.path.join(tiny_data_dir, "ev"))
    assert sorted(os.listdir(tiny_data_dir)) == before
