"""Pre-trained weights for the Taskonomy encoder and its task parts.

* :func:`load_taskonomy` - Taskonomy task-bank TF1 checkpoints, by name, with a report;
* :func:`load_slim_resnet50`, :func:`load_keras_resnet50` - ImageNet ResNet-50;
* :func:`save_encoder`, :func:`load_encoder`, :func:`read_encoder_meta` - our format
  (``encoder.json``: the :class:`EncoderMeta` record);
  :func:`load_part` - the other parts a conversion wrote (``convert --parts``);
* :class:`InitSpec` - the ``--init_from`` grammar (``scratch | DIR | taskonomy:CKPT[@TASK] |
  imagenet:CKPT|FILE.h5 | keras_hub:PRESET``): parse, check, label, load;
  :func:`init_encoder` wraps it (keras-hub presets: :mod:`tl_keras.weights.hub`).

CLIs: ``python -m tl_keras.weights.inspect_checkpoint CKPT`` and
``python -m tl_keras.weights.convert``.
Names are imported on first use: ``read_encoder_meta``, ``InitSpec`` and ``SPEC_HELP`` do
not load Keras.
"""
from tl_keras.models.lazy import exported_names, lazy_exports

_EXPORTS = {
    "tl_keras.weights.encoder_io": ("load_encoder", "load_part", "read_encoder_meta",
                                    "save_encoder"),
    "tl_keras.weights.encoder_meta": ("EncoderMeta",),
    "tl_keras.weights.imagenet": ("load_keras_resnet50", "load_slim_resnet50"),
    "tl_keras.weights.spec": ("InitSpec", "SPEC_HELP"),
    "tl_keras.weights.init": ("init_encoder",),
    "tl_keras.weights.mapping": ("weight_map",),
    "tl_keras.weights.load_report": ("LoadReport", "WeightLoadError"),
    "tl_keras.weights.taskonomy": ("checkpoint_layout", "load_taskonomy"),
}
__all__ = sorted(exported_names(_EXPORTS))

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
