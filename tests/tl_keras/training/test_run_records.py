"""The pre-training result.json (PretrainResult) and class_weights.json (ClassWeights) as
typed records: round trip, files of earlier versions, one-line errors naming file and key."""
import json
import types

import pytest

from tl_common.records import RecordError
from tl_keras.training.class_weights import ClassWeights, cached_class_weights
from tl_keras.training.results import PretrainResult

# result.json of a pre-training run as versions before the recorded precision wrote it.
OLD_PRETRAIN_RESULT = {"task": "segmentation", "domain": "t1", "seed": 0, "steps": 40,
                       "epochs": 4, "best_epoch": 3, "best_score": 0.5, "final_loss": 0.25,
                       "final_val_loss": 0.75}
CLASS_WEIGHTS = {"method": "median_frequency", "weights": [0.5, 2.0, 0.0], "slices": 48}


def _write(path, data):
    path.write_text(json.dumps(data))
    return str(path)


def test_pretrain_result_round_trip_and_history():
    config = types.SimpleNamespace(task="segmentation", domain="t1", seed=0)
    history = [{"loss": 1.0, "val_loss": 0.75}, {"loss": 0.5, "val_loss": 0.5},
               {"loss": 0.25, "val_loss": 0.5}]
    result = PretrainResult.of_history(config, history, 30, "float32")
    assert (result.epochs, result.best_epoch, result.best_score) == (3, 2, 0.5)
    assert result.final == {"loss": 0.25, "val_loss": 0.5}
    data = result.to_dict()
    assert data["final_loss"] == 0.25 and data["precision"] == "float32"
    assert PretrainResult.from_dict(data) == result


def test_an_old_pretrain_result_is_read_without_precision():
    result = PretrainResult.from_dict(OLD_PRETRAIN_RESULT, "runs/pre/result.json")
    assert result.precision is None and result.final["val_loss"] == 0.75
    assert result.to_dict() == {**OLD_PRETRAIN_RESULT, "precision": None}


@pytest.mark.parametrize("change, message", [
    ({"best_epoch": None}, "missing key 'best_epoch'"),
    ({"lr": 0.1}, "unknown key(s) ['lr']"),
    ({"steps": "many"}, "key 'steps' = 'many'"),
    ({"final_loss": "low"}, "key 'final_loss' = 'low'"),
])
def test_a_bad_pretrain_result_names_file_and_key(change, message):
    data = {k: v for k, v in {**OLD_PRETRAIN_RESULT, **change}.items() if v is not None}
    with pytest.raises(RecordError) as info:
        PretrainResult.from_dict(data, "runs/pre/result.json")
    text = str(info.value)
    assert "\n" not in text and text.startswith("runs/pre/result.json: ") and message in text


def test_class_weights_round_trip_and_cache(tmp_path):
    weights = ClassWeights.of([0.5, 2, 0], "median_frequency", 48)
    assert weights.to_dict() == CLASS_WEIGHTS
    assert ClassWeights.from_dict(CLASS_WEIGHTS) == weights
    path = _write(tmp_path / "class_weights.json", CLASS_WEIGHTS)
    assert cached_class_weights(path, lambda: pytest.fail("recomputed")) == weights
    assert cached_class_weights(str(tmp_path / "absent.json"), lambda: weights) is weights


@pytest.mark.parametrize("change, message", [
    ({"slices": None}, "missing key 'slices'"),
    ({"counts": [1, 2]}, "unknown key(s) ['counts']"),
    ({"method": "magic"}, "key 'method' = 'magic': expected one of"),
    ({"weights": [1.0, -1.0]}, "key 'weights' = [1.0, -1.0]: expected weights >= 0"),
    ({"weights": "1,2"}, "key 'weights' = '1,2'"),
    ({"slices": 1.5}, "key 'slices' = 1.5"),
])
def test_a_damaged_class_weights_file_names_file_and_key(tmp_path, change, message):
    data = {k: v for k, v in {**CLASS_WEIGHTS, **change}.items() if v is not None}
    path = _write(tmp_path / "class_weights.json", data)
    with pytest.raises(RecordError) as info:
        cached_class_weights(path, lambda: pytest.fail("recomputed"))
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: ") and message in text


def test_a_foreign_class_weights_file_is_one_line(tmp_path):
    path = _write(tmp_path / "class_weights.json", [0.5, 2.0])
    with pytest.raises(RecordError, match="holds a JSON list, not an object"):
        cached_class_weights(path, lambda: pytest.fail("recomputed"))
