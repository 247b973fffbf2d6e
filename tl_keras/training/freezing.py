"""Fine-tuning modes of the encoder: frozen (the whole run or its first epochs) and its own
learning rate (``--freeze_encoder``, ``--freeze_epochs``, ``--encoder_lr_multiplier``;
docs/training.md, "Freezing the encoder").

Frozen means unchanged: no gradient step, no weight decay, and batch norm in inference
mode (its moving statistics not updated; the encoder's layers are set non-trainable while
frozen, which Keras' batch norm reads as inference mode). The decoder trains as usual.

When a mode is set, the encoder gets an optimizer of its own (checkpoint key
``encoder_optimizer``) and the run's optimizer keeps the other weights:

- the encoder's Adam moments and bias correction start when it starts training (its
  optimizer counts its own steps, as PyTorch's per-parameter Adam state does), so the
  first steps after unfreezing are not oversized by moments that never saw a gradient;
- its learning rate is the run's schedule at the run's step times the multiplier
  (:class:`~tl_keras.training.optimizers.ShiftedScaledSchedule`);
- weight decay stays the fixed per-step coefficient ``--weight_decay`` for both groups
  (decoupled: scaled neither by the LR nor by the multiplier).

Which step runs is a function of the run's step only, so a run resumed mid-freeze or
after unfreezing follows the uninterrupted one.
"""
from __future__ import annotations

import dataclasses
from typing import Callable


def wanted(config) -> bool:
    """The run asks for an encoder mode (a fine-tuning config with one set)."""
    return bool(getattr(config, "freeze_encoder", False)) or (
        getattr(config, "encoder_lr_multiplier", 1.0) != 1.0)


@dataclasses.dataclass
class EncoderMode:
    """The encoder's variables, when it is frozen and its optimizer.

    Attributes:
      encoder: the encoder network (its ``trainable`` flag is switched while frozen).
      encoder_variables: its trainable variables.
      other_variables: every other trainable variable of the model.
      freeze_steps: the encoder is frozen for steps ``[0, freeze_steps)``.
      total_steps: the run's steps.
      optimizer: the encoder's optimizer, or None when it never trains.
    """

    encoder: object
    encoder_variables: list
    other_variables: list
    freeze_steps: int
    total_steps: int
    optimizer: object = None

    @property
    def trains_encoder(self) -> bool:
        return self.freeze_steps < self.total_steps

    def set_frozen(self, frozen: bool) -> None:
        """Freeze (non-trainable: batch norm in inference mode) or release the encoder."""
        if self.encoder.trainable == frozen:
            self.encoder.trainable = not frozen


def encoder_mode(config, models, steps_per_epoch: int, total_steps: int,
                 make_optimizer: Callable) -> EncoderMode | None:
    """The run's :class:`EncoderMode` (None without ``--freeze_encoder`` or a multiplier).

    Args:
      config: a :class:`~tl_keras.training.config.FinetuneConfig`.
      models: the :class:`tl_keras.models.TaskModels` (call in the strategy scope).
      steps_per_epoch, total_steps: the run's schedule.
      make_optimizer: ``(multiplier, offset) -> optimizer`` of the run's schedule, scaled
        and shifted; called only if the encoder trains at some point.
    """
    if not wanted(config):
        return None
    encoder_ids = {id(v) for v in models.encoder.trainable_variables}
    mode = EncoderMode(
        models.encoder, list(models.encoder.trainable_variables),
        [v for v in models.model.trainable_variables if id(v) not in encoder_ids],
        config.freeze_steps(steps_per_epoch, total_steps), total_steps)
    if config.freeze_encoder and config.freeze_epochs and not mode.trains_encoder:
        print(f"--freeze_epochs={config.freeze_epochs}: the run's {total_steps} steps end "
              "before the encoder is released; it stays frozen throughout", flush=True)
    if mode.trains_encoder:
        mode.optimizer = make_optimizer(config.encoder_lr_multiplier, mode.freeze_steps)
        mode.optimizer.build(mode.encoder_variables)
    return mode


def step_selection(mode: EncoderMode, make_step: Callable) -> Callable[[int], Callable]:
    """``step -> distributed train step``: the decoder-only step while frozen, then the
    step updating both groups; switches the encoder's ``trainable`` flag accordingly.

    Args:
      mode: the run's :class:`EncoderMode`.
      make_step: ``groups -> distributed step`` (``groups`` as
        :func:`tl_keras.training.steps.make_supervised_step` takes them, the run's
        optimizer given as None).
    """
    frozen = make_step(((None, mode.other_variables),)) if mode.freeze_steps else None
    trained = (make_step(((mode.optimizer, mode.encoder_variables),
                          (None, mode.other_variables))) if mode.trains_encoder else None)

    def step_for(step: int) -> Callable:
        is_frozen = step < mode.freeze_steps
        mode.set_frozen(is_frozen)
        return frozen if is_frozen else trained
    return step_for
