"""evaluate never replaces another evaluation silently: a lock against a concurrent one,
a refusal for an evaluation of something else (docs/reliability.md)."""
import os

import pytest

from tests.helpers import export_threshold_model
from tl_common import lock


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    export_threshold_model(d)
    return str(d)


def test_concurrent_evaluation_is_refused(model, tiny_data_dir, tmp_path):
    from tl_keras.evaluation.evaluate import EvalConfig, evaluate_model_dir
    out = str(tmp_path / "eval")
    with lock.acquire(out):  # as a running evaluation holds it
        with pytest.raises(lock.LockError, match=f"{out} is in use by pid {os.getpid()}"):
            evaluate_model_dir(model, tiny_data_dir, "test", out, EvalConfig(verbose=False))
    assert os.listdir(out) == []


def test_another_evaluation_is_not_replaced_without_overwrite(model, tiny_data_dir, tmp_path):
    from tl_keras.evaluation.evaluate import EvalConfig, EvaluationError, evaluate_model_dir
    out = str(tmp_path / "eval")
    config = EvalConfig(verbose=False, num_examples=0)
    evaluate_model_dir(model, tiny_data_dir, "test", out, config)
    stamp = os.path.getmtime(os.path.join(out, "summary.csv"))
    with pytest.raises(EvaluationError, match=r"holds another evaluation \(different "
                                              r"--split\); use another --out_dir, or "
                                              r"--overwrite"):
        evaluate_model_dir(model, tiny_data_dir, "val", out, config)
    assert os.path.getmtime(os.path.join(out, "summary.csv")) == stamp
    again = EvalConfig(verbose=False, num_examples=0, overwrite=True)
    assert evaluate_model_dir(model, tiny_data_dir, "val", out, again)["summary"] is not None


def test_out_dir_inside_the_data_is_refused(model, tiny_data_dir):
    from tl_keras.evaluation.evaluate import EvaluationError, evaluate_model_dir
    before = sorted(os.listdir(tiny_data_dir))
    with pytest.raises(EvaluationError, match="--out_dir is inside --data_dir"):
        evaluate_model_dir(model, tiny_data_dir, "test", os.path.join(tiny_data_dir, "ev"))
    assert sorted(os.listdir(tiny_data_dir)) == before
