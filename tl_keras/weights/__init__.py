"""Pre-trained weights for the Taskonomy encoder and its task parts.

* :func:`load_taskonomy` - Taskonomy task-bank TF1 checkpoints, by name, with a report;
* :func:`load_slim_resnet50`, :func:`load_keras_resnet50` - ImageNet ResNet-50;
* :func:`save_encoder`, :func:`load_encoder`, :func:`read_encoder_meta` - our format;
  :func:`load_part` - the other parts a conversion wrote (``convert --parts``);
* :class:`InitSpec` - the ``--init_from`` grammar (``scratch | DIR | taskonomy:CKPT[@TASK] |
  imagenet:CKPT|FILE.h5 | keras_hub:PRESET``): parse, check, label, load;
  :func:`init_encoder` wraps it (keras-hub presets: :mod:`tl_keras.weights.hub`).

CLIs: ``python -m tl_keras.weights.inspect_checkpoint CKPT`` and
``python -m tl_keras.weights.convert``.
Names are imported on first use: ``read_encoder_meta``, ``InitSpec`` and ``SPEC_HELP`` do
not load Keras.
"""
from tl_keras.models.lazy import lazy_exports

_EXPORTS = {
    "load_encoder": "tl_keras.weights.encoder_io",
    "load_part": "tl_keras.weights.encoder_io",
    "read_encoder_meta": "tl_keras.weights.encoder_io",
    "save_encoder": "tl_keras.weights.encoder_io",
    "load_keras_resnet50": "tl_keras.weights.imagenet",
    "load_slim_resnet50": "tl_keras.weights.imagenet",
    "InitSpec": "tl_keras.weights.spec",
    "SPEC_HELP": "tl_keras.weights.spec",
    "init_encoder": "tl_keras.weights.init",
    "weight_map": "tl_keras.weights.mapping",
    "LoadReport": "tl_keras.weights.load_report",
    "WeightLoadError": "tl_keras.weights.load_report",
    "checkpoint_layout": "tl_keras.weights.taskonomy",
    "load_taskonomy": "tl_keras.weights.taskonomy",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
