"""Convert Taskonomy or ImageNet weights into the tl_keras encoder format: ``convert``.

The library of ``python -m tl_keras.weights.convert`` (docs/models_weights.md). Writes
``DIR/encoder.weights.h5`` + ``DIR/encoder.json`` (read by ``finetune --init_from
DIR`` and ``tl_keras.weights.load_encoder``); other parts of a Taskonomy checkpoint
are checked and written as ``DIR/<part>.weights.h5`` (their build arguments are in
``encoder.json`` under ``provenance.parts``). A finished conversion with the same options is
not redone; one with other options is refused unless ``overwrite``.
"""
from __future__ import annotations

import dataclasses
import os
import time

from tl_keras.weights.checkpoint import PARTS, read_shapes
from tl_keras.weights.encoder_io import META_FILE, atomic_weights, read_encoder_meta, save_encoder
from tl_keras.weights.load_report import WeightLoadError
from tl_keras.weights.spec import NATURAL, TASKONOMY_PREFIX, InitSpec, checkpoint_task
from tl_keras.weights.taskonomy import (build_parts, checkpoint_layout, head_image_size,
                                        load_taskonomy)
from tl_common.cli import FlagError

@dataclasses.dataclass(frozen=True)
class ConvertConfig:
    """Resolved options of one conversion (the flags of ``tl_keras.weights.convert``)."""

    out: str
    taskonomy: str | None = None
    imagenet: str | None = None
    parts: tuple = ("encoder",)
    input_channels: int = 0        # 0: as in the checkpoint
    image_size: int = 256
    strict: bool = True
    source_task: str | None = None
    domain: str = NATURAL
    overwrite: bool = False


def _default_task(config: ConvertConfig) -> str:
    if config.source_task:
        return config.source_task
    if config.imagenet:
        return "imagenet"
    return TASKONOMY_PREFIX + checkpoint_task(config.taskonomy)


def _source(config: ConvertConfig) -> str:
    return os.path.abspath(config.taskonomy or config.imagenet)


def _recorded(config: ConvertConfig, input_channels: int) -> dict:
    """The options a conversion in ``config.out`` must share to count as this one."""
    return {"source": _source(config), "parts": sorted(config.parts),
            "input_channels": input_channels, "image_size": [config.image_size] * 2,
            "source_task": _default_task(config), "domain": config.domain}


def _already_done(config: ConvertConfig, input_channels: int) -> bool:
    """True if ``config.out`` holds this very conversion.

    Raises:
      WeightLoadError: it holds a conversion with other options (not ``--overwrite``).
    """
    if config.overwrite or not os.path.isfile(os.path.join(config.out, META_FILE)):
        return False
    meta = read_encoder_meta(config.out)
    old = {"source": meta.provenance.get("source"), "parts": sorted(meta.parts),
           "input_channels": meta.input_channels, "image_size": list(meta.image_size),
           "source_task": meta.source_task, "domain": meta.domain}
    new = _recorded(config, input_channels)
    differ = [f"{k} {old[k]} -> {new[k]}" for k in new if old[k] != new[k]]
    if differ:
        raise WeightLoadError(f"{config.out}: holds a conversion with other options "
                              f"({'; '.join(differ)}); pass --overwrite to redo it or "
                              "choose another --out")
    return True


def convert(config: ConvertConfig, log=print):
    """Load the source weights into fresh models and write them to ``config.out``.

    Returns:
      The :class:`LoadReport`, or None when a finished identical conversion exists.

    Raises:
      WeightLoadError / ValueError: bad source or options, strict-mode problems.
    """
    from tl_keras.models import build_encoder
    if bool(config.taskonomy) == bool(config.imagenet):
        raise FlagError("give exactly one of --taskonomy or --imagenet")
    bad = sorted(set(config.parts) - set(PARTS))
    if bad or "encoder" not in config.parts:
        raise FlagError(f"--parts must include encoder and be from {PARTS}, "
                         f"got {list(config.parts)}")
    if config.imagenet and tuple(config.parts) != ("encoder",):
        raise FlagError("--imagenet provides the encoder only; drop --parts")
    kind = "taskonomy" if config.taskonomy else "imagenet"
    spec = InitSpec(f"{kind}:{_source(config)}", kind, config.taskonomy or config.imagenet)
    spec.check()
    layout = checkpoint_layout(read_shapes(spec.path)[1]) if config.taskonomy else {}
    channels = (config.input_channels
                or layout.get("encoder", {}).get("input_channels") or 3)
    if _already_done(config, channels):
        log(f"{config.out}: already converted from {_source(config)}; use --overwrite to redo")
        return None
    start = time.time()
    if config.taskonomy:
        size = (head_image_size(layout, config.image_size) if "head" in config.parts
                else config.image_size)
        models = build_parts(layout, config.parts, size, channels)
        report = load_taskonomy(spec.path, models, strict=config.strict)
        parts_meta = {p: layout[p] for p in config.parts}
        encoder = models.pop("encoder")
    else:
        encoder = build_encoder(config.image_size, channels)
        report = spec.load(encoder, strict=config.strict)
        models, parts_meta = {}, {"encoder": {}}
    for line in report.summary().splitlines():
        log(line)
    os.makedirs(config.out, exist_ok=True)
    for part, model in models.items():
        with atomic_weights(os.path.join(config.out, f"{part}.weights.h5")) as tmp:
            model.save_weights(tmp)
    provenance = {"source": _source(config), "parts": parts_meta,
                  "load_report": {"matched": len(report.matched), "skipped": len(report.skipped),
                                  "missing": report.missing, "unexpected": report.unexpected,
                                  "left_random": report.left_random, "notes": report.notes}}
    save_encoder(encoder, config.out, source_task=_default_task(config), domain=config.domain,
                 provenance=provenance, network="taskonomy")
    log(f"wrote {config.out} ({', '.join(config.parts)}) in {time.time() - start:.1f} s")
    return report
