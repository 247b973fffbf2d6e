"""Fine-tuning then evaluation (tl_keras.studies): a run killed between the two is
evaluated by its rerun, an evaluated run is never evaluated again, and a sweep cell
trained without its evaluation gets it."""
import dataclasses
import json
import os
import signal

import pandas as pd
import pytest

from tests.helpers import run_module
from tl_keras.training.config import FinetuneConfig
from tl_keras.models.presets import build_tiny_models

TINY = dict(batch_size=2, max_steps=2, validate=False, class_weights="none",
            mixed_precision="none", train_subjects=2)


def _same(a: dict, b: dict) -> bool:
    """Equal records, NaN included (an empty metric is NaN, and NaN != NaN)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _no_second_evaluation(monkeypatch):
    from tl_keras.studies import evaluated_run

    def fail(*args, **kwargs):
        raise AssertionError("an evaluated run was evaluated again")
    monkeypatch.setattr(evaluated_run, "evaluate_model_dir", fail)


def test_killed_between_training_and_evaluation_evaluates_on_rerun(tiny_data_dir, tmp_path,
                                                                   capsys, monkeypatch):
    from tl_keras.studies import finetune_and_evaluate
    from tl_keras.training.results import read_finetune_result
    config = FinetuneConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path / "run"), **TINY)
    fields = {k: v for k, v in dataclasses.asdict(config).items() if not isinstance(v, tuple)}
    killed = run_module("tests.train_driver", [
        "finetune", json.dumps(fields),
        "tl_keras.studies.evaluated_run:evaluate_model_dir:1:before"])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    trained = read_finetune_result(config.model_dir)
    assert trained is not None and not trained.evaluated and not trained.test
    assert not os.path.exists(os.path.join(config.model_dir, "eval_test", "summary.csv"))

    result = finetune_and_evaluate(config, build_tiny_models)
    out = capsys.readouterr().out
    assert "already complete" in out and "evaluating the 'test' split" in out
    assert 0 <= result["test_dice"] <= 1
    assert result["eval_dir"] == os.path.join(config.model_dir, "eval_test")
    assert result["final_loss"] == trained.final["loss"]
    assert _same(json.load(open(os.path.join(config.model_dir, "result.json"))), result)
    assert os.path.exists(os.path.join(config.model_dir, "eval_test", "summary.csv"))

    _no_second_evaluation(monkeypatch)
    assert _same(finetune_and_evaluate(config, build_tiny_models), result)


def test_sweep_evaluates_a_cell_trained_without_its_evaluation(tiny_data_dir, tmp_path,
                                                               monkeypatch):
    from tl_keras.studies import sweeps
    from tl_keras.training import run_finetune
    ft = FinetuneConfig(data_dir=tiny_data_dir, **TINY)
    config = sweeps.SweepConfig(out_dir=str(tmp_path), sources=(("scratch", "scratch"),),
                                set_sizes=(2,), repeats=1, finetune=ft)
    (cell,) = sweeps.grid(config)
    run_finetune(sweeps.cell_config(config, cell), build_tiny_models)  # training only
    assert "test_dice" not in json.load(open(os.path.join(cell.run_dir, "result.json")))
    first = sweeps.run_sweep(config, build_tiny_models)
    assert first["ran"] == [cell.run_dir] and not first["failed"]
    table = pd.read_csv(first["csv"])
    assert 0 <= table["test_dice"].iloc[0] <= 1 and table["init_from"].iloc[0] == "scratch"
    _no_second_evaluation(monkeypatch)
    again = sweeps.run_sweep(config, build_tiny_models)
    assert again["skipped"] == [cell.run_dir] and again["ran"] == []


def test_sweep_reports_a_damaged_result(tiny_data_dir, tmp_path):
    from tl_keras.studies import sweeps
    from tl_common.records import RecordError
    ft = FinetuneConfig(data_dir=tiny_data_dir, **TINY)
    config = sweeps.SweepConfig(out_dir=str(tmp_path), sources=(("scratch", "scratch"),),
                                set_sizes=(2,), repeats=1, finetune=ft)
    (cell,) = sweeps.grid(config)
    os.makedirs(cell.run_dir)
    path = os.path.join(cell.run_dir, "result.json")
    open(path, "w").write('{"target": "stroke", "steps": "many"')
    with pytest.raises(RecordError, match="not valid JSON") as info:
        sweeps.merge_results(config)
    assert path in str(info.value)


def test_sweep_says_its_disk_cost_and_keeps_only_the_first_export(tiny_data_dir, tmp_path,
                                                                  capsys):
    from tl_keras.models.export import EXPORT_DIR, META_FILE, MODEL_FILE
    from tl_keras.studies import sweeps
    ft = FinetuneConfig(data_dir=tiny_data_dir, **TINY)
    config = sweeps.SweepConfig(out_dir=str(tmp_path), sources=(("scratch", "scratch"),),
                                set_sizes=(2,), repeats=2, finetune=ft, keep_exports="first")
    first = sweeps.run_sweep(config, build_tiny_models)
    assert len(first["ran"]) == 2 and not first["failed"]
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("disk: "))
    assert "2 cells of ~" in line and "from the network's parameters" in line
    r0, r1 = (cell.run_dir for cell in sweeps.grid(config))
    kept = os.path.getsize(os.path.join(r0, EXPORT_DIR, MODEL_FILE))
    # the estimate (weights, HDF5 overhead, config) is within 15 % of the export written
    number, unit = line.split("the export ~")[1].split(" of it")[0].split()
    estimate = float(number) * {"kB": 1e3, "MB": 1e6}[unit]
    assert abs(estimate - kept) <= 0.15 * kept, (line, kept)
    assert not os.path.exists(os.path.join(r1, EXPORT_DIR, MODEL_FILE))  # pruned
    assert os.path.exists(os.path.join(r1, EXPORT_DIR, META_FILE))
    assert os.path.exists(os.path.join(r1, "eval_test", "summary.csv"))
    again = sweeps.run_sweep(config, build_tiny_models)  # still complete: skipped
    assert again["skipped"] == [r0, r1] and len(pd.read_csv(again["csv"])) == 2
    assert "measured on a finished cell" in capsys.readouterr().out
