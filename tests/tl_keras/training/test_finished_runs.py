"""A refused run writes nothing; a finished pre-training restores (or names) the
encoders it lost (docs/reliability.md)."""
import os
import shutil

import pytest

from tl_keras.training.config import ConfigError, PretrainConfig


def _config(data_dir, model_dir, **kw):
    kw = {"batch_size": 2, "max_steps": 2, **kw}
    return PretrainConfig(data_dir=data_dir, model_dir=str(model_dir), task="segmentation",
                          validate=False, class_weights="median_frequency", seed=0,
                          mixed_precision="none", **kw)


def test_refused_pretraining_writes_nothing_and_the_corrected_rerun_runs(tiny_data_dir,
                                                                        tmp_path):
    from tl_keras.models.presets import build_tiny_models
    from tl_keras.training import run_pretrain
    run = tmp_path / "run"
    big = _config(tiny_data_dir, run, batch_size=64)  # 12 training slices
    with pytest.raises(ConfigError, match="12 training slices are fewer than --batch_size=64"):
        run_pretrain(big, build_tiny_models)
    assert not run.exists()
    run.mkdir()
    with pytest.raises(ConfigError):
        run_pretrain(big, build_tiny_models)
    assert os.listdir(run) == []
    result = run_pretrain(_config(tiny_data_dir, run), build_tiny_models)
    assert result["steps"] == 2


def test_finished_pretraining_restores_deleted_encoders(tiny_data_dir, tmp_path, capsys):
    from tl_keras.models.presets import build_tiny_models
    from tl_keras.training import run_pretrain
    config = _config(tiny_data_dir, tmp_path / "run")
    first = run_pretrain(config, build_tiny_models)
    weights = {n: open(tmp_path / "run" / n / "encoder.weights.h5", "rb").read()
               for n in ("encoder_last", "encoder_best")}
    for name in weights:
        shutil.rmtree(tmp_path / "run" / name)
    capsys.readouterr()
    assert run_pretrain(config, build_tiny_models) == first
    assert "restored encoder_last/, encoder_best/ from the last checkpoint" in \
        capsys.readouterr().out
    for name in weights:  # same weights (the h5 file holds no time stamp of its own)
        assert os.path.getsize(tmp_path / "run" / name / "encoder.weights.h5") == \
            len(weights[name])
    # Without the checkpoints the rerun says what is missing and how to get it.
    shutil.rmtree(tmp_path / "run" / "checkpoints")
    shutil.rmtree(tmp_path / "run" / "encoder_best")
    with pytest.raises(ConfigError, match=r"the finished run's encoder_best/ is missing and "
                                          r"cannot be restored .* --overwrite to train "
                                          r"again, or use encoder_last/"):
        run_pretrain(config, build_tiny_models)
