"""Load Taskonomy task-bank checkpoints (TF1, TF-slim names) into the Keras models."""
from __future__ import annotations

from tl_keras.weights.checkpoint import (PARTS, canonical, part_of, read_shapes, read_tensors,
                                         skip_reason)
from tl_keras.weights.mapping import assign, weight_map
from tl_keras.weights.load_report import LoadReport, WeightLoadError


def plan(shapes: dict, parts, renames=(), skip=None) -> tuple[dict, dict]:
    """Sort checkpoint tensors into used ones and skipped ones.

    Args:
      shapes: tensor name -> shape.
      parts: the parts requested (subset of ``PARTS``).
      renames: ``(old prefix, new prefix)`` pairs applied before sorting.
      skip: optional ``original name -> reason or None`` for source-specific skips.

    Returns:
      ``(used, skipped)``: ``{canonical name: original name}`` of tensors to load
      (including ones of unknown scopes, which then count as unexpected) and
      ``{original name: reason}``.
    """
    used, skipped = {}, {}
    for name in sorted(shapes):
        reason = skip_reason(name) or (skip(name) if skip else None)
        if reason is None:
            part = part_of(canonical(name, renames))
            if part is not None and part not in parts:
                reason = f"part '{part}' not requested"
        if reason:
            skipped[name] = reason
        else:
            used[canonical(name, renames)] = name
    return used, skipped


def load_checkpoint_into(path: str, models: dict, *, strict: bool = True, renames=(),
                         skip=None, random_ok=()) -> LoadReport:
    """Load a TF-slim checkpoint into ``models`` by name.

    Args:
      path: checkpoint prefix, file or directory.
      models: part name -> keras.Model (parts not given are not loaded).
      strict: raise :class:`WeightLoadError` on any missing, unexpected or mis-shaped tensor.
      renames: prefix renames (e.g. ``resnet_v1_50/`` -> ``encoder/``).
      skip: optional ``name -> reason or None`` for source-specific skips.
      random_ok: target name prefixes that may stay at their initialisation.

    Returns:
      The :class:`LoadReport`.
    """
    bad = sorted(set(models) - set(PARTS))
    if bad:
        raise ValueError(f"unknown parts {bad}; choose from {PARTS}")
    prefix, shapes = read_shapes(path)
    used, skipped = plan(shapes, set(models), renames, skip)
    report = LoadReport(source=prefix, skipped=skipped)
    targets = {}
    for model in models.values():
        targets.update(weight_map(model))
    sources = read_tensors(prefix, used.values())
    return assign({n: sources[o] for n, o in used.items()}, targets, report, strict=strict,
                  random_ok=random_ok)


def load_taskonomy(path: str, models: dict, *, strict: bool = True) -> LoadReport:
    """Load a Taskonomy task-bank checkpoint into the given parts.

    Root prefixes (``feedforward/``, ``siamese/``) are stripped, so one encoder model loads
    from any task; ``compress1`` (checkpoint root scope) belongs to the encoder. Optimizer
    slots, Adam beta powers and ``global_step`` are skipped; so are parts not in ``models``.

    Args:
      path: ``model.permanent-ckpt`` prefix (or one of its files, or its directory).
      models: e.g. ``{"encoder": enc, "decoder": dec}``; keys from ``encoder``, ``decoder``,
        ``discriminator``, ``head``.
      strict: raise on any missing, unexpected or mis-shaped tensor (naming them).

    Returns:
      The :class:`LoadReport`.

    Raises:
      WeightLoadError: unreadable checkpoint, or a problem in strict mode.
    """
    if not models:
        raise WeightLoadError(f"{path}: no parts requested")
    return load_checkpoint_into(path, models, strict=strict)


def checkpoint_layout(shapes: dict, renames=()) -> dict:
    """Infer the build arguments of the networks stored in a Taskonomy checkpoint.

    Returns:
      ``{part: kwargs}`` for the parts present, e.g. ``{"encoder": {"input_channels": 3,
      "latent_channels": 8}, "decoder": {"out_channels": 3}, "discriminator":
      {"in_channels": 6}, "head": {"num_outputs": 1000, "in_features": 2048}}``.
    """
    by_name = {canonical(n, renames): s for n, s in shapes.items() if skip_reason(n) is None}

    def dim(name, axis):
        if name not in by_name:
            return None
        return int(by_name[name][axis])

    layout = {}
    if "encoder/conv1/weights" in by_name:
        layout["encoder"] = {"input_channels": dim("encoder/conv1/weights", 2),
                             "latent_channels": dim("compress1/weights", 3) or 8}
    if "decoder/decoder_output/weights" in by_name:
        layout["decoder"] = {"out_channels": dim("decoder/decoder_output/weights", 3)}
    if "discriminator/conv1/weights" in by_name:
        layout["discriminator"] = {"in_channels": dim("discriminator/conv1/weights", 2)}
    if "three_layer_fc_network/fc0/weights" in by_name:
        last = sorted(n for n in by_name if n.startswith("three_layer_fc_network/fc")
                      and n.endswith("/biases"))
        layout["head"] = {"in_features": dim("three_layer_fc_network/fc0/weights", 0),
                          "num_outputs": int(by_name[last[-1]][0]) if last else None}
    return layout


def build_parts(layout: dict, parts, image_size: int, input_channels=None,
                decoder_activation=None) -> dict:
    """Build fresh models for the ``parts`` of a checkpoint ``layout`` (see checkpoint_layout).

    Args:
      layout: from :func:`checkpoint_layout` (or ``provenance.parts`` of a conversion).
      parts: the parts to build.
      image_size: square image side; the latent size is ``image_size // 16``.
      input_channels: encoder channels (default: as in ``layout``).
      decoder_activation: ``None`` or ``"tanh"`` (Taskonomy's decoders end in tanh).
    """
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
            models[part] = build_decoder(latent_shape, layout[part]["out_channels"], "taskonomy",
                                         decoder_activation)
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

