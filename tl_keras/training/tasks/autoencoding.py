"""Source task: auto-encoding, L1 alone until ``--disc_start_step``, then L1 plus a
conditional GAN (docs/method.md section 4)."""
from __future__ import annotations

import dataclasses

from tfrecords_tools.dataset_meta import DatasetMeta
from tl_keras.training.config import option
from tl_keras.training.tasks.spec import (ExtraNetwork, StepContext, TaskSpec, export_encoder,
                                          plain_loss, refuse_unet)

DISCRIMINATOR_VARIANTS = ("taskonomy", "paper")


@dataclasses.dataclass(frozen=True)
class AutoencodingOptions:
    """The options of ``--task=autoencoding`` (the GAN's)."""

    disc_start_step: int = option(26000, "autoencoding: step at which the GAN discriminator "
                                         "switches on (paper: 26000 on T1, 25000 on natural "
                                         "images)")
    disc_learning_rate: float = option(1e-5, "autoencoding: discriminator SGD learning rate")
    discriminator_variant: str = option("taskonomy", "autoencoding: discriminator, taskonomy "
                                                     "(pix2pix) or paper")

    def check(self, config, meta: DatasetMeta) -> str | None:
        if self.disc_start_step < 0 or self.disc_learning_rate <= 0:
            return "--disc_start_step must be >= 0 and --disc_learning_rate > 0"
        if self.discriminator_variant not in DISCRIMINATOR_VARIANTS:
            return (f"--discriminator_variant={self.discriminator_variant!r} is not one of "
                    f"{', '.join(DISCRIMINATOR_VARIANTS)}")
        return None


def _discriminator_optimizer(config):
    from tl_keras.training.optimizers import make_discriminator_optimizer
    from tl_keras.training.strategy import loss_scaling
    return make_discriminator_optimizer(config.task_options.disc_learning_rate,
                                        loss_scale=loss_scaling())


def _steps(ctx: StepContext):
    """The L1 step before ``--disc_start_step``, the GAN step (both networks) from it."""
    from tl_keras.training import steps
    train = ctx.supervised_step()
    gan = steps.distribute(steps.make_gan_step(
        ctx.models.model, ctx.models.discriminator, ctx.optimizer,
        ctx.optimizers["discriminator"], ctx.config.batch_size,
        jit_compile=ctx.config.jit_compile), ctx.strategy)
    start = ctx.config.task_options.disc_start_step
    return lambda step: gan if step >= start else train


TASK = TaskSpec(name="autoencoding", data_task="autoencoding", network="autoencoding",
                num_outputs=lambda meta: None, loss=plain_loss("l1_loss"), check=refuse_unet,
                extra_networks=(ExtraNetwork("discriminator", "d_optimizer",
                                             _discriminator_optimizer),),
                steps=_steps, export=export_encoder, options=AutoencodingOptions,
                labels=False)
