"""``InitSpec``: what ``--init_from`` (and each sweep ``--sources`` entry) names.

Grammar (docs/models_weights.md, "Initialisation specs")::

    spec  := "scratch"                       keep the random initialisation
           | "random"                        the same seeded random encoder, named as the
                                             frozen-random-encoder control ("random encoder")
           | DIR                             a tl_keras encoder directory (encoder.json), or a
                                             fine-tuning run / its export/ (model.json): its
                                             encoder, with --init_decoder its decoder too
           | "taskonomy:" CKPT ["@" TASK]    a Taskonomy task-bank checkpoint
           | "imagenet:" CKPT                TF-slim resnet_v1_50 (V1 or V2 checkpoint)
           | "imagenet:" FILE ".h5"          Keras Applications ResNet50 weights
    CKPT  := V2 prefix (.../model.permanent-ckpt) | one of its files (.index, .data-*)
           | the folder holding it | a V1 checkpoint file (resnet_v1_50.ckpt)
           | "keras_hub:" PRESET             a keras-hub backbone preset
    TASK  := [A-Za-z0-9_.-]+                 the Taskonomy task; default: CKPT's folder name
    PRESET := a keras-hub preset name (resnet_50_imagenet) | a local preset directory

Every stage uses this one type: :meth:`InitSpec.parse` (syntax only), :meth:`InitSpec.check`
(the files are there; no TensorFlow, so configuration checks stay fast),
:meth:`InitSpec.source` / :meth:`InitSpec.label` (what run artefacts record and the report
groups by: each Taskonomy task is its own source) and :meth:`InitSpec.load`.
"""
from __future__ import annotations

import dataclasses
import os
import re

from tl_keras.models.hub_preset import PREFIX as KERAS_HUB_PREFIX
from tl_keras.models.hub_preset import HubPresetError, preset_name
from tl_keras.models.hub_preset import check as check_hub_preset
from tl_keras.weights.checkpoint import check_checkpoint, checkpoint_prefix, is_checkpoint
from tl_keras.weights.encoder_io import (encoder_dir, is_encoder_dir, load_encoder,
                                         read_encoder_meta)
from tl_keras.weights.imagenet import load_keras_resnet50, load_slim_resnet50
from tl_keras.weights.mapping import assign, weight_map
from tl_keras.weights.load_report import LoadReport, WeightLoadError
from tl_keras.models.export import EXPORT_DIR, MODEL_FILE
from tl_keras.weights.partial import (export_run_dir, is_export_dir, load_export_into,
                                      read_export_meta, rgb_kernels, strict_encoder_load)
from tl_keras.weights.taskonomy import load_taskonomy

SPEC_HELP = ("scratch | random (seeded random encoder, the frozen-encoder control) | DIR "
             "(tl_keras encoder dir, or a fine-tuning run's export) | taskonomy:CKPT[@TASK] | "
             "imagenet:CKPT (TF-slim resnet_v1_50, V1 or V2) | imagenet:FILE.h5 (Keras ResNet50) "
             "| keras_hub:PRESET (keras-hub preset name or preset dir)")
#: Source domain of the checkpoint sources (the value ``pretrain --domain`` uses).
NATURAL = "natural"
TASKONOMY_PREFIX = "taskonomy:"
#: ``source_task`` of the seeded random encoder (``--init_from random``).
RANDOM = "random"
#: ``source_task`` prefix of a fine-tuned model used as a source (``finetuned:<target>``).
FINETUNED_PREFIX = "finetuned:"
_TASK = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclasses.dataclass(frozen=True)
class InitSpec:
    """A parsed initialisation spec (see the module docstring for the grammar).

    Attributes:
      text: the spec as given.
      kind: ``scratch``, ``random``, ``dir``, ``taskonomy``, ``imagenet`` or ``keras_hub``.
      path: the file, prefix or directory (empty for ``scratch`` and ``random``).
      task: the ``@TASK`` override of a Taskonomy spec, else None.
    """

    text: str
    kind: str
    path: str = ""
    task: str | None = None

    @classmethod
    def parse(cls, text: str) -> InitSpec:
        """Parse ``text`` without touching the file system.

        Raises:
          WeightLoadError: unknown kind, empty path, or a bad ``@TASK``.
        """
        text = text.strip()
        if text in ("scratch", RANDOM):
            return cls(text, text)
        kind, sep, path = text.partition(":")
        if not sep:
            kind, path = "dir", text
        elif kind not in ("taskonomy", "imagenet", "keras_hub"):
            raise WeightLoadError(f"--init_from {text}: unknown kind '{kind}'; "
                                  f"expected {SPEC_HELP}")
        task = None
        head, at, tail = path.rpartition("@")
        if kind == "taskonomy" and at and "/" not in tail and os.sep not in tail:
            if not _TASK.match(tail):
                raise WeightLoadError(f"--init_from {text}: @{tail} is not a task name "
                                      "(letters, digits, '_', '.', '-')")
            path, task = head, tail
        if not path:
            raise WeightLoadError(f"--init_from {text}: empty path; expected {SPEC_HELP}")
        return cls(text, kind, path, task)

    @property
    def is_keras_h5(self) -> bool:
        return self.kind == "imagenet" and self.path.endswith(".h5")

    @property
    def is_export(self) -> bool:
        """A fine-tuning run (or its ``export/``) rather than an encoder directory."""
        return self.kind == "dir" and is_export_dir(self.path)

    def check(self) -> None:
        """Check that the source is there and complete, without loading it.

        Raises:
          WeightLoadError: one line naming the missing or unusable file.
        """
        if self.kind in ("scratch", RANDOM):
            return
        if self.kind == "keras_hub":
            try:
                check_hub_preset("--init_from", self.path)
            except HubPresetError as e:
                raise WeightLoadError(str(e)) from e
            return
        if self.kind == "dir":
            if self.is_export:
                read_export_meta(self.path)
                model_file = os.path.join(export_run_dir(self.path), EXPORT_DIR, MODEL_FILE)
                if not os.path.isfile(model_file):
                    raise WeightLoadError(f"--init_from {self.text}: {model_file} is missing")
                return
            if is_encoder_dir(self.path):
                read_encoder_meta(self.path)
                return
            if is_checkpoint(self.path):
                raise WeightLoadError(f"--init_from {self.text}: a TF checkpoint; say "
                                      f"taskonomy:{self.path} or imagenet:{self.path}")
            if not os.path.exists(self.path):
                raise WeightLoadError(f"--init_from {self.text}: {self.path} does not exist")
            raise WeightLoadError(f"--init_from {self.text}: no encoder.json there; "
                                  f"expected {SPEC_HELP}")
        if self.is_keras_h5:
            if not os.path.isfile(self.path):
                raise WeightLoadError(f"--init_from {self.text}: {self.path} does not exist")
            return
        if not os.path.exists(self.path) and not is_checkpoint(self.path):
            raise WeightLoadError(f"--init_from {self.text}: {self.path} does not exist")
        check_checkpoint(self.path)

    def input_channels(self) -> int | None:
        """The input channels of the source's first convolution where its record says
        (an encoder directory or an export; checked, no TensorFlow), else None."""
        if self.kind != "dir":
            return None
        self.check()
        if self.is_export:
            return read_export_meta(self.path).input_channels
        return read_encoder_meta(self.path).input_channels

    def source(self) -> tuple[str | None, str | None]:
        """``(source_task, source_domain)`` recorded with every run.

        A Taskonomy checkpoint records ``taskonomy:<task>`` (as ``weights.convert`` does), an
        encoder directory what its ``encoder.json`` says, the random encoder ``random``, a
        fine-tuned model ``finetuned:<its target>`` with its own source's domain.
        """
        if self.kind == "scratch":
            return None, None
        if self.kind == RANDOM:
            return RANDOM, None
        if self.kind == "imagenet":
            return "imagenet", NATURAL
        if self.kind == "keras_hub":
            return KERAS_HUB_PREFIX + preset_name(self.path), NATURAL
        if self.kind == "taskonomy":
            return TASKONOMY_PREFIX + (self.task or checkpoint_task(self.path)), NATURAL
        if self.is_export:
            meta = read_export_meta(self.path)
            return FINETUNED_PREFIX + (meta.target or "target"), meta.source_domain
        meta = read_encoder_meta(self.path)
        return meta.source_task, meta.domain

    def network(self) -> str | None:
        """The network (``tl_keras.models.presets`` name) the source's encoder is, if it
        says: Taskonomy and ImageNet checkpoints load into ``taskonomy``, an encoder
        directory records ``network`` in its ``encoder.json`` (older ones: ``taskonomy``
        for a Taskonomy architecture, else None); ``scratch`` implies none."""
        if self.kind in ("taskonomy", "imagenet"):
            return "taskonomy"
        if self.kind == "keras_hub":
            return f"keras_hub:{self.path}"
        if self.kind != "dir" or self.is_export:  # a fine-tuning run's export: not recorded
            return None
        return read_encoder_meta(self.path).implied_network

    def label(self) -> str:
        """The report's name of this source, e.g. "Taskonomy segmentsemantic"; a fine-tuned
        model names its own source too ("stroke fine-tuned from t1 segmentation")."""
        label = source_label(*self.source(), kind=self.kind)
        if self.is_export:
            label += f" from {read_export_meta(self.path).source_label or 'scratch'}"
        return label

    def load(self, encoder, *, strict: bool = True, model=None,
             decoder: bool = False) -> LoadReport:
        """Initialise ``encoder`` in place; returns the :class:`LoadReport`.

        A fine-tuning run's export is loaded by :func:`tl_keras.weights.partial.load_export_into`:
        its encoder (adapted to one input channel if needed), and with ``decoder`` the layers of
        ``model`` outside the encoder that match by name and shape (the others re-initialised).

        Raises:
          WeightLoadError: unreadable source, a strict-mode problem, or ``decoder`` with a
            source that has none.
        """
        self.check()
        if decoder and not self.is_export:
            raise WeightLoadError(f"--init_from {self.text}: --init_decoder needs a fine-tuning "
                                  "run (or its export/) to take the decoder from")
        if self.kind in ("scratch", RANDOM):
            report = LoadReport(source=self.kind)
            report.notes.append("random initialisation (no pre-trained weights)" if
                                self.kind == "scratch" else "seeded random encoder (--seed): "
                                "the random-encoder control")
            return report
        if self.is_export:
            return load_export_into(self.path, encoder, model if decoder else None)
        if self.kind == "taskonomy":
            return load_taskonomy(self.path, {"encoder": encoder}, strict=strict)
        if self.kind == "keras_hub":
            from tl_keras.weights.hub import load_keras_hub
            return load_keras_hub(self.path, encoder, strict=strict)
        if self.kind == "imagenet":
            if self.is_keras_h5:
                return load_keras_resnet50(self.path, encoder, strict=strict)
            return load_slim_resnet50(self.path, encoder, strict=strict)
        return load_encoder_dir_into(encoder, self.path, strict=strict)


def checkpoint_task(path: str) -> str:
    """The Taskonomy task of a checkpoint: the folder it sits in (``.../autoencoder/...``)."""
    try:
        prefix = checkpoint_prefix(path)
    except WeightLoadError:  # not there (yet): go by the path's shape
        prefix = path if not os.path.isdir(path) else os.path.join(path, "x")
    return os.path.basename(os.path.dirname(os.path.abspath(prefix))) or "taskonomy"


def source_label(source_task, source_domain, kind: str | None = None) -> str:
    """The report's name of a source from what a run recorded.

    ``imagenet`` -> "ImageNet"; ``taskonomy:<task>`` -> "Taskonomy <task>" (a converted
    encoder records the same); ``keras_hub:<preset>`` -> "keras-hub <preset>"; ``random`` ->
    "random encoder"; ``finetuned:<target>`` -> "<target> fine-tuned"; none -> "scratch"; else
    "<domain> <task>" ("t1 segmentation"). The fine-tuning mode is appended by
    :func:`mode_suffix`.
    """
    task = "" if source_task is None else str(source_task)
    if kind == "imagenet" or task == "imagenet":
        return "ImageNet"
    if kind == RANDOM or task == RANDOM:
        return "random encoder"
    if kind == "scratch" or not task:
        return "scratch"
    if task.startswith(TASKONOMY_PREFIX):
        return "Taskonomy " + task[len(TASKONOMY_PREFIX):]
    if task.startswith(FINETUNED_PREFIX):
        return f"{task[len(FINETUNED_PREFIX):]} fine-tuned"
    if task.startswith(KERAS_HUB_PREFIX):
        return "keras-hub " + task[len(KERAS_HUB_PREFIX):]
    return f"{source_domain} {task}" if source_domain else task


def mode_suffix(freeze_encoder=False, freeze_epochs=0, encoder_lr_multiplier=1.0,
                init_decoder=False) -> str:
    """What a run's fine-tuning mode adds to its source label, so that the report (which
    groups by label) shows each mode as a source of its own: " (frozen)", " (frozen 5
    epochs)", " (encoder LR x0.1)", " (with decoder)", several joined by commas; "" for
    the paper's mode (encoder trained from the start at the run's LR, decoder random).
    Missing values (NaN / None in a table) count as the defaults."""
    def given(value):
        return value is not None and value == value  # not None, not NaN
    parts = []
    if given(freeze_encoder) and bool(freeze_encoder):
        epochs = int(freeze_epochs) if given(freeze_epochs) else 0
        parts.append(f"frozen {epochs} epoch{'s' * (epochs != 1)}" if epochs else "frozen")
    if given(encoder_lr_multiplier) and float(encoder_lr_multiplier) != 1.0:
        parts.append(f"encoder LR x{float(encoder_lr_multiplier):g}")
    if given(init_decoder) and bool(init_decoder):
        parts.append("with decoder")
    return f" ({', '.join(parts)})" if parts else ""


def load_encoder_dir_into(encoder, path: str, *, strict: bool = True) -> LoadReport:
    """Copy a saved encoder into ``encoder`` by name.

    The target may have another image size (convs are size-independent) and may take one
    channel where the saved one takes RGB (conv1 summed over channels).
    """
    source = load_encoder(path, name="saved_encoder")
    report = LoadReport(source=encoder_dir(path))
    sources = {n: v.numpy() for n, v in weight_map(source).items()}
    if strict:
        return strict_encoder_load(sources, encoder, report)
    return assign(sources, weight_map(encoder), report, strict=False,
                  rgb_kernels=rgb_kernels(encoder))
