"""Source task: restoration in the Models Genesis style (Zhou et al. 2019, 2021;
docs/sources.md).

Each training slice is corrupted in the step (local pixel shuffling, a random monotone
intensity curve, in- or out-painting: :func:`tl_keras.data.corruptions.genesis_corrupt`)
and the network restores the original. The network is the preset's encoder (the one
fine-tuning loads) with its plain decoder, as many tanh outputs as input channels; not
the skip-connected decoder, through whose full-resolution skips the corrupted detail
could be restored without the encoder. The loss is the mean squared error, as Models
Genesis uses: the restored intensities are continuous values for which the noisy boxes
and the shuffled windows have no single right answer, and MSE's optimum is their mean.
"""
from __future__ import annotations

from tl_keras.training.tasks.spec import TaskSpec, export_encoder, plain_loss, refuse_unet


def _prepare(x, seed):
    """(corrupted input, original target) of a batch."""
    from tl_keras.data.corruptions import genesis_corrupt
    return genesis_corrupt(x, seed), x


def _steps(ctx):
    from tl_keras.training import ssl_steps, steps
    c = ctx.config
    train = steps.distribute(ssl_steps.make_prepared_step(
        ctx.models.model, ctx.optimizer, ctx.loss_fn, _prepare, c.seed, c.batch_size,
        c.jit_compile), ctx.strategy)
    return lambda step: train


def _eval_step(ctx):
    from tl_keras.training import ssl_steps
    return ssl_steps.make_prepared_eval_step(ctx.models.model, ctx.loss_fn, _prepare,
                                             ctx.config.seed)


TASK = TaskSpec(name="restoration", data_task="autoencoding", network="reconstruction",
                num_outputs=lambda meta: None, loss=plain_loss("mse_loss"), check=refuse_unet,
                steps=_steps,
                eval_step=_eval_step, export=export_encoder, labels=False)
