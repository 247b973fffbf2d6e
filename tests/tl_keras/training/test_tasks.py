"""The task registry (tl_keras.training.tasks): every list of task names comes from it,
and a task registered here, in the test alone, trains through the public path."""
import dataclasses
import json
import math
import os

import pytest

from tests.helpers import ROOT
from tl_keras.training import tasks
from tl_keras.training.config import ConfigError, PretrainConfig
from tl_keras.training.validation import validate_pretrain


def test_every_list_of_task_names_comes_from_the_registry():
    from absl import flags
    from tl_keras.data.dataset import TASKS as DATA_TASKS
    from tl_keras.models import TASKS as NETWORKS
    from tl_keras.training.flags import define_pretrain_flags
    assert tasks.source_tasks() == ("autoencoding", "classification", "masked_modeling",
                                    "restoration", "segmentation", "simsiam")
    assert not tasks.get("target").source and tasks.weighted_tasks() == ("segmentation",)
    fv = flags.FlagValues()
    define_pretrain_flags(flag_values=fv)
    docs = open(os.path.join(ROOT, "docs", "extending.md")).read()
    for name in tasks.source_tasks() + ("target",):
        task = tasks.get(name)
        assert task.data_task in DATA_TASKS and task.network in NETWORKS, name
        assert f"`{name}`" in docs, f"docs/extending.md does not list task {name}"
    for name in tasks.source_tasks():
        assert name in fv["task"].help
    with pytest.raises(KeyError, match="registered: autoencoding, classification, masked_modeling"):
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


def test_task_options_are_flags_of_their_task_only(tiny_data_dir, tmp_path, capsys):
    """The GAN's and classification's options are their tasks' (flags generated from the
    options classes); another task's option or a label flag of a task without labels is
    refused in one line, before anything is written."""
    from tl_keras import pretrain
    from tl_keras.training.tasks.autoencoding import AutoencodingOptions
    from tl_keras.training.tasks.classification import ClassificationOptions
    from tl_keras.training.tasks.masked_modeling import MaskedModelingOptions
    assert tasks.options_classes() == {"autoencoding": AutoencodingOptions,
                                       "classification": ClassificationOptions,
                                       "masked_modeling": MaskedModelingOptions}
    assert "disc_start_step" not in {f.name for f in dataclasses.fields(PretrainConfig)}
    out = tmp_path / "run"
    base = [f"--data_dir={tiny_data_dir}", f"--model_dir={out}", "--max_steps=1",
            "--batch_size=2"]
    for argv, message in (
            (["--task=segmentation", "--disc_start_step=5"],
             "--disc_start_step applies only to --task=autoencoding"),
            (["--task=autoencoding", "--classification_softmax"],
             "--classification_softmax applies only to --task=classification"),
            (["--task=autoencoding", "--class_weights=inverse"],
             "--class_weights does not apply to --task=autoencoding, which trains without "
             "labels"),
            (["--task=autoencoding", "--foreground_weight=3"],
             "--foreground_weight does not apply to --task=autoencoding"),
            (["--task=autoencoding", "--disc_learning_rate=0"],
             "--disc_learning_rate > 0"),
            (["--task=autoencoding", "--discriminator_variant=big"],
             "--discriminator_variant='big' is not one of taskonomy, paper")):
        assert pretrain.main(["pretrain", *base, *argv]) == 1, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (argv, err)
        assert not out.exists()


def test_the_cli_builds_the_selected_tasks_options():
    from absl import flags
    from tl_keras.training.flags import define_pretrain_flags, pretrain_config_from_flags
    from tl_keras.training.tasks.autoencoding import AutoencodingOptions
    fv = flags.FlagValues()
    define_pretrain_flags(flag_values=fv)
    fv(["prog", "--task=autoencoding", "--disc_start_step=7", "--discriminator_variant=paper"])
    config = pretrain_config_from_flags(fv)
    assert config.task_options == AutoencodingOptions(disc_start_step=7,
                                                      discriminator_variant="paper")
    fv = flags.FlagValues()
    define_pretrain_flags(flag_values=fv)
    fv(["prog", "--task=segmentation"])
    assert pretrain_config_from_flags(fv).task_options is None  # segmentation has none


def test_the_registry_refuses_option_names_that_clash():
    @dataclasses.dataclass(frozen=True)
    class Clashing:
        disc_start_step: int = 0

    @dataclasses.dataclass(frozen=True)
    class ShadowsAFlag:
        batch_size: int = 0

    for options, owner in ((Clashing, "task 'autoencoding'"), (ShadowsAFlag, "PretrainConfig")):
        spec = dataclasses.replace(DENOISING, options=options)
        with pytest.raises(ValueError, match=f"is already a flag of {owner}"):
            tasks.register(spec)
        assert "denoising" not in tasks.source_tasks()


def test_python_api_options_default_and_are_type_checked(tiny_data_dir, tmp_path):
    from tl_keras.training.tasks.classification import ClassificationOptions
    from tl_keras.training.validation import with_task_options
    config = PretrainConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path), task="autoencoding")
    assert with_task_options(config).task_options.disc_start_step == 26000
    with pytest.raises(ConfigError, match="takes AutoencodingOptions options, got "
                                          "ClassificationOptions"):
        validate_pretrain(dataclasses.replace(config, task_options=ClassificationOptions()))
