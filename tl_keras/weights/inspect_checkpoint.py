"""List the tensors of a TF checkpoint and what each maps to in the Keras models.

Usage: ``python -m tl_keras.weights.inspect_checkpoint CKPT [--parts encoder,decoder]
[--image_size 256]`` (named so, not ``inspect``, so it cannot shadow the standard library).

Each line: tensor name, shape, then ``-> <keras variable path>``, ``skip: <reason>``,
``UNEXPECTED`` (no such layer) or ``SHAPE MISMATCH``; model weights the checkpoint lacks
are listed as ``MISSING``. Every mapped tensor is read once, so a missing or truncated data
file is reported (one line naming it) instead of "all tensors map cleanly"; nothing is
assigned or written.
"""
from __future__ import annotations

import dataclasses
import sys

from absl import flags

from tl_common import cli

from tl_keras.weights.checkpoint import PARTS, read_shapes, read_tensors
from tl_keras.weights.imagenet import RANDOM_OK, SLIM_RENAMES, is_slim, slim_skip
from tl_keras.weights.mapping import weight_map
from tl_keras.weights.taskonomy import build_parts, checkpoint_layout, head_image_size, plan

FV = flags.FlagValues()
flags.DEFINE_list("parts", [], "Parts to map (encoder, decoder, discriminator, head); "
                  "default: all present in the checkpoint.", flag_values=FV)
flags.DEFINE_integer("image_size", 256, "Image size the models are built at (matters "
                     "only for the head; inferred from it when possible).", flag_values=FV)
flags.DEFINE_integer("input_channels", 0, "Encoder input channels (0: as in the "
                     "checkpoint; 1: show the grey adaptation).", flag_values=FV)


@dataclasses.dataclass(frozen=True)
class InspectConfig:
    checkpoint: str
    parts: tuple = ()
    image_size: int = 256
    input_channels: int = 0


def inspect_checkpoint(config: InspectConfig) -> tuple[list[str], bool]:
    """Return the listing lines and whether every tensor maps cleanly."""
    prefix, shapes = read_shapes(config.checkpoint)
    slim = is_slim(shapes)  # ImageNet resnet_v1_50: same names under another root
    renames, skip, random_ok = (SLIM_RENAMES, slim_skip, RANDOM_OK) if slim else ((), None, ())
    layout = checkpoint_layout(shapes, renames)
    parts = tuple(config.parts) or tuple(p for p in PARTS if p in layout)
    models = build_parts(layout, parts, head_image_size(layout, config.image_size),
                             config.input_channels or None)
    targets = {}
    for model in models.values():
        targets.update(weight_map(model))
    used, skipped = plan(shapes, set(parts), renames, skip)
    read_tensors(prefix, used.values())  # the values are there, not only the index
    canon = {original: name for name, original in used.items()}
    lines, clean = [f"# {prefix}: {len(shapes)} tensors; parts {', '.join(parts)}"], True
    for name in sorted(shapes):
        shape = list(shapes[name])
        if name in skipped:
            what = f"skip: {skipped[name]}"
        elif canon[name] not in targets:
            what, clean = "UNEXPECTED (no such layer)", False
        else:
            var = targets[canon[name]]
            target_shape = list(var.shape)
            adapt = (canon[name] == "encoder/conv1/weights" and shape[2] == 3
                     and target_shape[2] == 1)
            if shape == target_shape or adapt:
                what = f"-> {var.path}" + (" (summed over RGB)" if adapt else "")
            else:
                what, clean = f"SHAPE MISMATCH model {target_shape}", False
        lines.append(f"{name:<72} {str(shape):<22} {what}")
    for name in sorted(set(targets) - set(used)):
        if name.startswith(random_ok):
            lines.append(f"{name:<72} {'':<22} not in source: stays randomly initialised")
            continue
        lines.append(f"{name:<72} {'':<22} MISSING (model weight {targets[name].path})")
        clean = False
    lines.append(f"# {len(used)} mapped or unexpected, {len(skipped)} skipped; "
                 + ("all tensors map cleanly" if clean else "PROBLEMS above"))
    return lines, clean


def run(f: flags.FlagValues, args) -> int:
    """Print the listing; exit code 0 when every tensor maps cleanly, else 3."""
    if len(args) != 1:
        raise cli.UsageError("give exactly one checkpoint (prefix, file or directory)")
    lines, clean = inspect_checkpoint(
        InspectConfig(args[0], tuple(f.parts), f.image_size, f.input_channels))
    print("\n".join(lines))
    return 0 if clean else 3


main = cli.make_main("inspect_checkpoint", FV, __doc__, run, tensorflow=True, positional=True)

if __name__ == "__main__":
    sys.exit(main())
