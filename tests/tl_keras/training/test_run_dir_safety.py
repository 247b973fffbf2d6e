"""Run folders never destroy data: ``--overwrite`` deletes only what a run of ours wrote,
and a run folder may not be, contain or sit inside an input (docs/reliability.md)."""
import dataclasses
import json
import os

import pytest

from tl_common.runinfo import record_run
from tl_keras.training import rundir
from tl_keras.training.config import ConfigError, FinetuneConfig


def _config(data_dir, model_dir, **kw):
    return FinetuneConfig(data_dir=str(data_dir), model_dir=str(model_dir), batch_size=2,
                          max_steps=1, evaluate=False, validate=False, class_weights="none",
                          **kw)


def _fake_run(config):
    """What a run writes, without training: flags, a checkpoint, a result."""
    with rundir.claim_run_dir(config):
        record_run(config.model_dir, config, seed=config.seed)
        os.makedirs(os.path.join(config.model_dir, "checkpoints"))
        open(os.path.join(config.model_dir, "checkpoints", "ckpt-1.index"), "w").close()
        open(os.path.join(config.model_dir, "result.json"), "w").write("{}")


@pytest.mark.parametrize("where", ["is", "is inside", "contains"])
def test_model_dir_overlapping_the_data_is_refused(tmp_path, where):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train-00000-of-00001.tfrecord").write_bytes(b"x")
    model_dir = {"is": data, "is inside": data / "run", "contains": tmp_path}[where]
    with pytest.raises(ConfigError, match=f"--model_dir {where} --data_dir"):
        with rundir.claim_run_dir(_config(data, model_dir)):
            pass
    assert sorted(os.listdir(data)) == ["train-00000-of-00001.tfrecord"]


def test_model_dir_holding_the_init_encoder_is_refused(tmp_path):
    enc = tmp_path / "runs" / "pre" / "encoder_best"
    enc.mkdir(parents=True)
    (enc / "encoder.json").write_text("{}")
    with pytest.raises(ConfigError, match="--model_dir contains --init_from"):
        with rundir.claim_run_dir(_config(tmp_path / "data", tmp_path / "runs",
                                          init_from=str(enc))):
            pass


def test_overwrite_deletes_only_what_runs_wrote(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes_before.txt").write_text("mine")
    config = _config(tmp_path / "data", run)
    _fake_run(config)
    marker = json.loads((run / rundir.MARKER).read_text())
    assert marker["foreign"] == ["notes_before.txt"]
    assert marker["written"] == ["checkpoints", "flags.json", "result.json"]
    (run / "notes_after.txt").write_text("mine too")
    other = dataclasses.replace(config, seed=3, overwrite=True)
    with rundir.claim_run_dir(other):
        assert sorted(os.listdir(run)) == [".lock", rundir.MARKER, "notes_after.txt",
                                           "notes_before.txt"]


def test_overwrite_of_a_folder_without_marker_keeps_what_is_not_a_run_output(tmp_path):
    """A run folder older than the marker (or a data folder a run once wrote into):
    only run outputs go."""
    run = tmp_path / "run"
    run.mkdir()
    config = _config(tmp_path / "data", run)
    record_run(str(run), config, seed=0)
    (run / "checkpoints").mkdir()
    (run / "train-00000-of-00001.tfrecord").write_bytes(b"x")
    (run / "dataset.json").write_text("{}")
    with rundir.claim_run_dir(dataclasses.replace(config, seed=1, overwrite=True)):
        assert sorted(os.listdir(run)) == [".lock", "dataset.json",
                                           "train-00000-of-00001.tfrecord"]


def test_refused_run_leaves_nothing_behind(tmp_path):
    run = tmp_path / "new_run"
    with pytest.raises(ConfigError, match="refused"):
        with rundir.claim_run_dir(_config(tmp_path / "data", run)):
            raise ConfigError("refused by the validation")
    assert not run.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(ConfigError):
        with rundir.claim_run_dir(_config(tmp_path / "data", existing)):
            raise ConfigError("refused")
    assert os.listdir(existing) == []


def test_dangling_symlink_model_dir_is_named(tmp_path):
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(ConfigError, match="symbolic link to .*gone, which does not exist"):
        with rundir.claim_run_dir(_config(tmp_path / "data", link)):
            pass
