"""The task registry (tl_keras.training.tasks): every list of task names comes from it,
and a task registered here, in the test alone, trains through the public path."""
import dataclasses
import json
import math
import os

import pytest

from tests.helpers import ROOT
from tl_keras.training import tasks
from tl_keras.training.config import ConfigError, PretrainConfig, validate_pretrain



def test_every_list_of_task_names_comes_from_the_registry():
    from absl import flags
    from tl_keras.data.dataset import TASKS as DATA_TASKS
    from tl_keras.models import TASKS as NETWORKS
    from tl_keras.training.flags import define_config_flags
    assert tasks.source_tasks() == ("autoencoding", "classification", "segmentation")
    assert not tasks.get("target").source and tasks.weighted_tasks() == ("segmentation",)
    fv = flags.FlagValues()
    define_config_flags(PretrainConfig, flag_values=fv)
    docs = open(os.path.join(ROOT, "docs", "extending.md")).read()
    for name in tasks.source_tasks() + ("target",):
        task = tasks.get(name)
        assert task.data_task in DATA_TASKS and task.network in NETWORKS, name
        assert f"`{name}`" in docs, f"docs/extending.md does not list task {name}"
    for name in tasks.source_tasks():
        assert name in fv["task"].help
    with pytest.raises(KeyError, match="registered: autoencoding, classification"):
        tasks.get("depth")
    with pytest.raises(ValueError, match="already registered"):
        tasks.register(tasks.get("segmentation"))


def _denoising_steps(ctx: tasks.StepContext):
    """Reconstruct the clean image from a noisy one. The noise is seeded by the run's
    seed and the optimizer's step count, so a resumed run draws the same noise."""
    import tensorflow as tf
    from tl_keras.training import steps
    inner = steps.make_supervised_step(ctx.models.model, ctx.optimizer, ctx.loss_fn,
                                       ctx.config.batch_size)

    def step(x, clean):
        seed = tf.stack([tf.constant(ctx.config.seed, tf.int64),
                         tf.cast(ctx.optimizer.iterations, tf.int64)])
        noise = tf.random.stateless_normal(tf.shape(x), seed, stddev=0.2, dtype=x.dtype)
        return inner(tf.clip_by_value(x + noise, -1.0, 1.0), clean)
    train = steps.distribute(step, ctx.strategy)
    return lambda step_number: train


def _l1(config, weights):
    from tl_keras.training import losses
    return losses.l1_loss


DENOISING = tasks.TaskSpec(name="denoising", data_task="autoencoding", network="autoencoding",
                           num_outputs=lambda meta: None, loss=_l1, steps=_denoising_steps,
                           export=tasks.export_encoder)


def test_a_task_registered_in_the_test_trains_through_run_pretrain(tiny_data_dir, tmp_path):
    from tl_keras.models.presets import build_tiny_models
    from tl_keras.training import run_pretrain
    from tl_keras.weights import load_encoder
    config = PretrainConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path / "dn"),
                            task="denoising", batch_size=2, max_steps=2, class_weights="none",
                            deterministic=True, log_every=1)
    with pytest.raises(ConfigError, match="--task='denoising' is not one of"):
        validate_pretrain(config)
    tasks.register(DENOISING)
    try:
        assert "denoising" in tasks.source_tasks()
        result = run_pretrain(config, build_tiny_models)
    finally:
        tasks.unregister("denoising")
    assert (result["task"], result["steps"], result["epochs"]) == ("denoising", 2, 1)
    assert math.isfinite(result["final_loss"]) and math.isfinite(result["final_val_loss"])
    assert set(result) == {"task", "domain", "seed", "steps", "epochs", "best_epoch",
                           "best_score", "final_loss", "final_val_loss",
                           "precision"}  # no GAN parts
    meta = json.load(open(os.path.join(config.model_dir, "encoder_best", "encoder.json")))
    assert (meta["source_task"], meta["provenance"]["epoch"]) == ("denoising", 1)
    assert load_encoder(os.path.join(config.model_dir, "encoder_last")).output_shape[1:] == (
        2, 2, 8)
    with pytest.raises(ConfigError, match="is not one of"):
        validate_pretrain(dataclasses.replace(config, model_dir=str(tmp_path / "again")))


def test_old_build_models_hooks_get_a_clear_error(tiny_data_dir, tmp_path):
    from tl_keras.training import run_finetune
    from tl_keras.training.config import FinetuneConfig
    config = FinetuneConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path), batch_size=2,
                            max_steps=1)
    with pytest.raises(TypeError, match=r"must accept \(config, meta, \*, network"):
        run_finetune(config, lambda config, meta: None)
