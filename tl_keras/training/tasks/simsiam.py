"""Source task: SimSiam (Chen & He 2021; docs/sources.md).

Two views of each slice (random resized crop, flip, brightness / contrast jitter, blur:
:func:`tl_keras.data.corruptions.simsiam_view`) pass through the preset's encoder (the
one fine-tuning loads), SimSiam's projector and predictor
(:mod:`tl_keras.models.simsiam`); each view's prediction is drawn to the other view's
projection, whose gradient is stopped. No negative pairs, so no large batch is needed.
The loss (:func:`tl_keras.training.losses.simsiam_loss`) lies in [-1, 1]; -1 means the
predictions match the projections perfectly.
"""
from __future__ import annotations

from tfrecords_tools.dataset_meta import DatasetMeta
from tl_keras.training.tasks.spec import TaskSpec, export_encoder, plain_loss


def _check(config, meta: DatasetMeta) -> str | None:
    if config.decoder_variant == "unet":
        return "--decoder_variant=unet is for segmentation tasks; --task=simsiam has no decoder"
    return None


def _view(x, seed):
    from tl_keras.data.corruptions import simsiam_view
    return simsiam_view(x, seed)


def _steps(ctx):
    from tl_keras.training import ssl_steps, steps
    c = ctx.config
    train = steps.distribute(ssl_steps.make_siamese_step(
        ctx.models.model, ctx.optimizer, _view, c.seed, c.batch_size, c.jit_compile),
        ctx.strategy)
    return lambda step: train


def _eval_step(ctx):
    from tl_keras.training import ssl_steps
    return ssl_steps.make_siamese_eval_step(ctx.models.model, _view, ctx.config.seed)


TASK = TaskSpec(name="simsiam", data_task="autoencoding", network="simsiam",
                num_outputs=lambda meta: None, loss=plain_loss("simsiam_loss"), check=_check,
                steps=_steps,
                eval_step=_eval_step, export=export_encoder, labels=False)
