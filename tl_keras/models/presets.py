"""The networks a run trains, by name: one registry for every CLI (``--network``), the
quickstart and the Python API, each entry building one ``TaskModels`` interface.

- ``taskonomy``: the Taskonomy ResNet-50 encoder and decoders (~40 M parameters,
  :mod:`tl_keras.models.factory`); what ``--network auto`` means without a source that
  says otherwise.
- ``compact``: the small networks of :mod:`tl_keras.models.small`, 4x wider, with
  ``latent_channels`` from the config (the quickstart's default: small enough for a CPU,
  large enough to learn).
- ``tiny``: the few-thousand-parameter networks of :mod:`tl_keras.models.small` (latent 8),
  for tests in seconds.
- ``PREFIX:NAME``: a family registered with :func:`register_network_prefix` (e.g.
  ``keras_hub:PRESET``), built by its module.

A builder is ``(network_kind, image_size, input_channels, num_outputs, *, latent_channels,
decoder_variant, discriminator_variant, **options) -> TaskModels`` where ``network_kind``
is one of ``tl_keras.models.TASKS``. :func:`build_models` builds a network by name;
:func:`build_network_models` (``config.network``), :func:`build_taskonomy_models`,
:func:`build_compact_models` and :func:`build_tiny_models` are ``build_models`` hooks of
``run_pretrain`` / ``run_finetune``: ``(config, meta, *, network, num_outputs) ->
TaskModels`` (docs/training.md, "Python API"). This module imports Keras only inside the
builders, so the CLIs check ``--network`` before TensorFlow loads.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from tfrecords_tools.dataset_meta import DatasetMeta
from tl_keras.models import hub_preset

AUTO = "auto"
DEFAULT_NETWORK = "taskonomy"


def _taskonomy(kind: str, image_size: int, input_channels: int, num_outputs: int | None, *,
               latent_channels: int = 8, decoder_variant: str = "taskonomy",
               discriminator_variant: str = "taskonomy"):
    from tl_keras.models.encoder import build_encoder
    from tl_keras.models.factory import build_task_models
    encoder = build_encoder(image_size=image_size, input_channels=input_channels,
                            latent_channels=latent_channels)
    return build_task_models(kind, encoder, num_classes=num_outputs,
                             decoder_variant=decoder_variant,
                             discriminator_variant=discriminator_variant)


def _compact(kind: str, image_size: int, input_channels: int, num_outputs: int | None, *,
             latent_channels: int = 8, decoder_variant: str = "taskonomy",
             discriminator_variant: str = "taskonomy"):
    from tl_keras.models.small import tiny_task_models
    return tiny_task_models(kind, image_size, input_channels, num_outputs, width=4,
                            latent_channels=latent_channels, decoder_variant=decoder_variant)


def _tiny(kind: str, image_size: int, input_channels: int, num_outputs: int | None, *,
          latent_channels: int = 8, decoder_variant: str = "taskonomy",
          discriminator_variant: str = "taskonomy", batch_norm: bool = True):
    """``latent_channels`` is ignored (always 8); ``batch_norm=False`` gives networks whose
    result does not depend on how the batch is split over replicas."""
    from tl_keras.models.small import tiny_task_models
    return tiny_task_models(kind, image_size, input_channels, num_outputs, batch_norm,
                            decoder_variant=decoder_variant)


#: Network name -> builder (see the module docstring).
NETWORKS: dict[str, Callable] = {"taskonomy": _taskonomy, "compact": _compact, "tiny": _tiny}
PRESETS = tuple(NETWORKS)  # the former name of the fixed presets
#: Name prefix -> (builder taking the name after the prefix first, check of that name).
_PREFIXES: dict[str, tuple[Callable, Callable | None]] = {}


def register_network_prefix(prefix: str, builder: Callable,
                            check: Callable[[str, str | None], str | None] | None = None
                            ) -> None:
    """Build every network named ``prefix + NAME`` with ``builder(NAME, network_kind, ...)``.

    Args:
      prefix: e.g. ``keras_hub:`` (ends with ``:``; new).
      builder: ``(name, network_kind, image_size, input_channels, num_outputs, *,
        latent_channels, decoder_variant, discriminator_variant) -> TaskModels``.
      check: ``(name, decoder_variant) -> message or None``, a cheap check run by config
        validation before TensorFlow loads (e.g. that the optional package is installed,
        or that the family can feed that decoder).
    """
    if not prefix.endswith(":") or prefix in _PREFIXES:
        raise ValueError(f"network prefix {prefix!r} must end with ':' and be new")
    _PREFIXES[prefix] = (builder, check)


def network_choices() -> tuple[str, ...]:
    """Every value ``--network`` takes (``PREFIX:NAME`` for a registered family)."""
    return (AUTO, *NETWORKS, *(f"{prefix}NAME" for prefix in _PREFIXES))


def _prefixed(name: str):
    prefix, sep, rest = name.partition(":")
    return _PREFIXES.get(prefix + sep), rest


def check_network(name: str, decoder_variant: str | None = None) -> str | None:
    """One line saying why ``--network=name`` (with ``--decoder_variant``) cannot be built,
    else None (no import of Keras)."""
    if name == AUTO or name in NETWORKS:
        return None
    entry, rest = _prefixed(name)
    if entry is None or not rest:
        return f"--network={name!r} is not one of {', '.join(network_choices())}"
    return entry[1](rest, decoder_variant) if entry[1] is not None else None


def network_builder(name: str) -> Callable:
    """The builder of network ``name`` (``auto``: the default network).

    Raises:
      ValueError: an unknown name.
    """
    name = DEFAULT_NETWORK if name == AUTO else name
    if name in NETWORKS:
        return NETWORKS[name]
    entry, rest = _prefixed(name)
    if entry is None or not rest:
        raise ValueError(check_network(name))
    return lambda *args, **kw: entry[0](rest, *args, **kw)


def build_models(preset: str, network: str, image_size: int, input_channels: int,
                 num_outputs: int | None, *, latent_channels: int = 8,
                 decoder_variant: str = "taskonomy", discriminator_variant: str = "taskonomy",
                 **options):
    """The networks named ``preset`` for one network kind.

    Args:
      preset: a network name (``NETWORKS``, or ``PREFIX:NAME`` of a registered family).
      network: ``segmentation`` / ``target`` (pixel-wise logits), ``autoencoding``
        (tanh decoder + discriminator), ``reconstruction`` (tanh decoder), ``simsiam``
        (projector and predictor) or ``classification`` (head).
      image_size: square input size in px (a multiple of 16).
      input_channels: model input channels (1 or 3).
      num_outputs: classes (None for auto-encoding: as many as the input channels).
      latent_channels: ``compress1`` channels (``tiny`` keeps 8).
      decoder_variant: see :func:`tl_keras.models.build_task_models`; the small networks
        know ``unet`` and a plain decoder for any other value.
      discriminator_variant: ``taskonomy`` or ``paper`` (the Taskonomy networks).
      **options: the builder's own (``tiny``: ``batch_norm``).

    Returns:
      A :class:`tl_keras.models.TaskModels` whose ``network`` is ``preset``.
    """
    models = network_builder(preset)(network, image_size, input_channels, num_outputs,
                                     latent_channels=latent_channels,
                                     decoder_variant=decoder_variant,
                                     discriminator_variant=discriminator_variant, **options)
    return dataclasses.replace(models, network=DEFAULT_NETWORK if preset == AUTO else preset)


def _hook(preset: str, config, meta: DatasetMeta, network: str, num_outputs, **options):
    """:func:`build_models` with the sizes of ``meta`` and the options of ``config``."""
    return build_models(preset, network, meta.image_size[0], config.input_channels,
                        num_outputs, latent_channels=config.latent_channels,
                        decoder_variant=config.decoder_variant,
                        discriminator_variant=getattr(getattr(config, "task_options", None),
                                                      "discriminator_variant", "taskonomy"),
                        **options)


def build_network_models(config, meta: DatasetMeta, *, network: str, num_outputs: int | None):
    """``build_models`` hook: the networks ``config.network`` names (the default of
    every run)."""
    return _hook(getattr(config, "network", AUTO), config, meta, network, num_outputs)


def build_taskonomy_models(config, meta: DatasetMeta, *, network: str, num_outputs: int | None):
    """``build_models`` hook: the Taskonomy networks."""
    return _hook("taskonomy", config, meta, network, num_outputs)


def build_tiny_models(config, meta: DatasetMeta, batch_norm: bool = True, *, network: str,
                      num_outputs: int | None):
    """``build_models`` hook: the tiny networks (same outputs as the Taskonomy ones)."""
    return _hook("tiny", config, meta, network, num_outputs, batch_norm=batch_norm)


def build_compact_models(config, meta: DatasetMeta, *, network: str, num_outputs: int | None):
    """``build_models`` hook: the compact networks (the quickstart's default)."""
    return _hook("compact", config, meta, network, num_outputs)


def _keras_hub_models(name: str, kind: str, image_size: int, input_channels: int,
                      num_outputs: int | None, **options):
    """``keras_hub:NAME``: a keras-hub backbone preset's architecture as the encoder
    (:func:`tl_keras.models.hub.build_hub_models`; random weights, ``--init_from
    keras_hub:NAME`` loads the preset's)."""
    from tl_keras.models.hub import build_hub_models  # loads Keras
    return build_hub_models(name, kind, image_size, input_channels, num_outputs, **options)


def _keras_hub_check(name: str, decoder_variant: str | None = None) -> str | None:
    """Without TensorFlow: keras-hub installed, ``name`` a preset directory or a cached (or
    downloadable) preset name; ``unet`` only with a backbone that has pyramid outputs."""
    try:
        hub_preset.check("--network", name, decoder_variant=decoder_variant)
    except hub_preset.HubPresetError as e:
        return str(e)
    return None


register_network_prefix(hub_preset.PREFIX, _keras_hub_models, _keras_hub_check)
