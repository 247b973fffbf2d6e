"""Source task: masked image modelling for a convolutional encoder (SimMIM, Xie et al.
2022; MAE, He et al. 2022; SparK, Tian et al. 2023; docs/sources.md).

Random square patches of each training slice are masked in the step (set to 0, the
middle of the input range: :func:`tl_keras.data.corruptions.mask_patches`) and the
network reconstructs the pixels; the loss is the L1 error on the masked pixels only
(SimMIM's), so the visible pixels, which the network could copy, teach nothing. The
network is the preset's encoder (the one fine-tuning loads) with its plain decoder, as
many tanh outputs as input channels; not the skip-connected decoder, whose
full-resolution skips would fill each gap from its neighbours without the encoder.
"""
from __future__ import annotations

import dataclasses

from tfrecords_tools.dataset_meta import DatasetMeta
from tl_keras.training.config import option
from tl_keras.training.tasks.spec import TaskSpec, export_encoder, plain_loss, refuse_unet

#: Default patch side: this fraction of the image side (32 px at 256, 8 px at 64).
PATCH_FRACTION = 8


@dataclasses.dataclass(frozen=True)
class MaskedModelingOptions:
    """The options of ``--task=masked_modeling``."""

    mask_patch_size: int = option(0, "masked_modeling: side of the masked square patches in "
                                     "px, dividing the image size; 0 = the image size / 8 "
                                     "(32 px at 256, 8 px at 64)")
    mask_ratio: float = option(0.6, "masked_modeling: share of the patches masked in every "
                                    "slice (SimMIM and SparK 0.6, MAE 0.75)")

    def patch_size(self, image_size: int) -> int:
        """The patch side in px for ``image_size`` px slices."""
        return self.mask_patch_size or image_size // PATCH_FRACTION

    def check(self, config, meta: DatasetMeta) -> str | None:
        size = meta.image_size[0]
        patch = self.patch_size(size)
        if self.mask_patch_size < 0 or size % patch:
            return (f"--mask_patch_size={self.mask_patch_size} must divide the image size "
                    f"({size} px) into whole patches")
        patches = (size // patch) ** 2
        if not 0 < round(self.mask_ratio * patches) < patches:
            return (f"--mask_ratio={self.mask_ratio} must mask at least one and not all of "
                    f"the {patches} patches")
        return None


def _prepare_for(ctx):
    """``prepare(x, seed) -> (masked x, x ++ mask)`` with the run's patch and ratio."""
    options = ctx.config.task_options
    patch = options.patch_size(int(ctx.models.model.input_shape[1]))

    def prepare(x, seed):
        import tensorflow as tf
        from tl_keras.data.corruptions import mask_patches
        masked, mask = mask_patches(x, seed, patch, options.mask_ratio)
        return masked, tf.concat([x, tf.cast(mask, x.dtype)], axis=-1)
    return prepare


def _steps(ctx):
    from tl_keras.training import ssl_steps, steps
    c = ctx.config
    train = steps.distribute(ssl_steps.make_prepared_step(
        ctx.models.model, ctx.optimizer, ctx.loss_fn, _prepare_for(ctx), c.seed, c.batch_size,
        c.jit_compile), ctx.strategy)
    return lambda step: train


def _eval_step(ctx):
    from tl_keras.training import ssl_steps
    return ssl_steps.make_prepared_eval_step(ctx.models.model, ctx.loss_fn, _prepare_for(ctx),
                                             ctx.config.seed)


TASK = TaskSpec(name="masked_modeling", data_task="autoencoding", network="reconstruction",
                num_outputs=lambda meta: None, loss=plain_loss("masked_l1_loss"),
                check=refuse_unet, steps=_steps,
                eval_step=_eval_step, export=export_encoder, options=MaskedModelingOptions,
                labels=False)
