"""Shared plumbing of the weight CLIs: private absl flag sets, one-line errors."""
from __future__ import annotations

import sys

from absl import flags

from tl_keras.weights.report import WeightLoadError

#: Errors that are the user's input, reported as one line without a traceback.
USER_ERRORS = (WeightLoadError, ValueError, FileNotFoundError, OSError)


def parse(flag_values: flags.FlagValues, argv, usage: str):
    """Parse ``argv`` into ``flag_values``; returns positional args, or an exit code.

    Each CLI owns a private ``FlagValues`` so the modules can be imported together (and
    called from tests) without clashing on the global ``FLAGS``.
    """
    argv = list(sys.argv if argv is None else argv)
    if any(a in ("-h", "--help", "--helpshort", "--helpfull") for a in argv[1:]):
        print(usage + "\n\n" + flag_values.get_help())
        return 0
    flag_values.unparse_flags()  # back to defaults: main() may run more than once per process
    try:
        return flag_values(argv)[1:]
    except flags.Error as e:
        print(f"{argv[0]}: error: {e}", file=sys.stderr)
        return 2


def fail(prog: str, error: Exception) -> int:
    """Print ``error`` as a single line on stderr and return the exit code 1."""
    message = " ".join(str(error).split())
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 1


def build_parts(layout: dict, parts, image_size: int, input_channels=None) -> dict:
    """Build fresh models for the ``parts`` of a checkpoint ``layout`` (see checkpoint_layout)."""
    from tl_keras.models import (build_classification_head, build_decoder,
                                 build_discriminator, build_encoder)
    enc = layout.get("encoder", {"input_channels": 3, "latent_channels": 8})
    channels = input_channels or enc["input_channels"]
    latent_shape = (image_size // 16, image_size // 16, enc["latent_channels"])
    models = {}
    for part in parts:
        if part not in layout:
            raise WeightLoadError(f"part '{part}' is not in the checkpoint "
                                  f"(present: {sorted(layout) or 'none'})")
        if part == "encoder":
            models[part] = build_encoder(image_size, channels, enc["latent_channels"])
        elif part == "decoder":
            models[part] = build_decoder(latent_shape, layout[part]["out_channels"], "taskonomy")
        elif part == "discriminator":
            models[part] = build_discriminator(image_size, layout[part]["in_channels"])
        else:
            models[part] = build_classification_head(latent_shape, layout[part]["num_outputs"])
    return models


def head_image_size(layout: dict, default: int) -> int:
    """The image size at which the head's fc0 fits (fc0 inputs = (size/16)^2 * latent)."""
    head, enc = layout.get("head"), layout.get("encoder", {"latent_channels": 8})
    if not head or not head.get("in_features"):
        return default
    cells = head["in_features"] / enc["latent_channels"]
    side = int(round(cells ** 0.5))
    return 16 * side if side * side == cells else default

