"""Data-set presets and builders of the published release layouts.

A preset holds the per-data-set defaults of the paper (slice cropping,
registration, split, target mode and label mapping) and, where the release's
folder tree is fixed, a builder that finds the scans under ``--root`` and
returns a ``manifest.Manifest``. Each builder matches only the release's own
file names, so odd files beside them (``.DS_Store``, READMEs, JSON sidecars,
``__MACOSX/._*`` copies, derived files) are never taken for scans. Where each
layout was checked is listed in docs/conversion.md.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import Callable, Mapping

from tfrecords_tools.manifests.manifest import Manifest, ManifestError, Subject, validate

LABEL_MAP_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "label_maps")
MICCAI2012_6CLASS = os.path.join(LABEL_MAP_DIR, "miccai2012_6class.csv")


def _find(root: str, pattern: str) -> list[str]:
    """Sorted files matching ``pattern`` (``**`` allowed) under ``root``."""
    return sorted(glob.glob(os.path.join(glob.escape(os.path.abspath(root)), pattern),
                            recursive=True))


def _raise_problems(root: str, problems: list[str], what: str) -> None:
    if problems:
        raise ManifestError(f"{root}: {len(problems)} {what}: " + "; ".join(problems))


def _manifest_of(root: str, images: list[str], none: str, read, what: str) -> Manifest:
    """The manifest of ``images`` (``none``: the error when there are none), each read by
    ``read(image) -> (Subject or None, problem or None)``; all problems raised at once
    (``what`` names them)."""
    if not images:
        raise ManifestError(none)
    subjects, problems = [], []
    for image in images:
        subject, problem = read(image)
        problems += [problem] if problem else []
        subjects += [subject] if subject is not None else []
    _raise_problems(root, problems, what)
    return Manifest(tuple(subjects), source=os.path.abspath(root))


# ATLAS R1.2 file names: ``<subject>_t1w_deface_stx`` in a session folder ``t0N`` (the
# release), or ``c<site>s<subject>t<time>_t1w_stx`` (copies some public code reads).
_ATLAS_R12_T1 = re.compile(r"(?P<stem>.+?)_t1w(_deface)?_stx\.nii(\.gz)?")
_ATLAS_R12_CST = re.compile(r"(?P<patient>c\d+s\d+)t\d+")


def atlas_r12_ids(image: str) -> tuple[str, str]:
    """(subject id, patient id) of an ATLAS R1.2 T1 file (path or path under a root).

    ``.../<subject>/t0N/<subject>_t1w_deface_stx.nii.gz``: subject ``<subject>`` for
    ``t01`` and ``<subject>_t0N`` after it, patient ``<subject>``;
    ``c0003s0002t01_t1w_stx.nii.gz``: subject ``c0003s0002t01``, patient ``c0003s0002``
    (site 3, subject 2, time point 1).
    """
    m = _ATLAS_R12_T1.fullmatch(os.path.basename(image))
    stem = m["stem"] if m else os.path.basename(image).split(".nii")[0]
    cst = _ATLAS_R12_CST.fullmatch(stem)
    if cst:
        return stem, cst["patient"]
    session = os.path.basename(os.path.dirname(image))
    if session == "t01" or not re.fullmatch(r"t\d+", session):
        return stem, stem
    return f"{stem}_{session}", stem


def build_atlas_r12(root: str, **_) -> Manifest:
    """ATLAS R1.2 (and R1.1): ``<root>/**/<site>/<subject>/t01/``.

    Each session folder holds ``<subject>_t1w_deface_stx.nii.gz`` and one or
    more ``<subject>_LesionSmooth*_stx.nii.gz`` masks (unioned). ``root`` may
    be any folder above the site folders. A patient scanned several times has
    one folder per session (``t01``, ``t02``, ...): each session is a scan
    and the patient id keeps the sessions in one split (:func:`atlas_r12_ids`).
    Copies named ``c<site>s<subject>t<time>_t1w_stx.nii.gz`` with
    ``..._LesionSmooth*_stx.nii.gz`` masks beside them are read too, their patient
    being ``c<site>s<subject>``. Scans are in MNI space (``_stx``).
    """
    images = [p for p in _find(root, os.path.join("**", "*_t1w*_stx.nii*"))
              if _ATLAS_R12_T1.fullmatch(os.path.basename(p))]
    none = (f"{root}: no '*_t1w_deface_stx.nii.gz' (or "
            f"'c<site>s<subject>t<time>_t1w_stx.nii.gz') files found (ATLAS R1.2 "
            f"layout <root>/<site>/<subject>/t01/<subject>_t1w_deface_stx.nii.gz)")

    def read(image):
        folder = os.path.dirname(image)
        stem = _ATLAS_R12_T1.fullmatch(os.path.basename(image))["stem"]
        masks = sorted(glob.glob(os.path.join(glob.escape(folder),
                                              f"{glob.escape(stem)}_LesionSmooth*_stx.nii*")))
        problem = None if masks else f"{stem}: {folder}/{stem}_LesionSmooth*_stx.nii.gz"
        sid, patient = atlas_r12_ids(image)
        return Subject(sid, image, {"mask": tuple(masks)}, patient_id=patient), problem
    return _manifest_of(root, images, none, read, "subject(s) without a lesion mask")


R20_T1 = "_space-MNI152NLin2009aSym_T1w"
R20_MASK = "_space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask"


def build_atlas_r20(root: str, **_) -> Manifest:
    """ATLAS R2.0 (BIDS): ``Training/R<site>/sub-r<site>s<n>/ses-<k>/anat/``.

    Each ``anat`` folder holds ``sub-..._ses-..._space-MNI152NLin2009aSym_T1w.nii.gz``
    and ``..._space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask.nii.gz``
    (already in MNI152NLin2009aSym space). Subject id ``sub-<id>_ses-<k>``,
    patient id ``sub-<id>``. The release's ``Testing`` folder (T1w without
    masks) is left out; a T1w elsewhere without its mask is an error.
    """
    pattern = os.path.join("**", f"sub-*_ses-*{R20_T1}.nii*")
    images = [p for p in _find(root, pattern)
              if "Testing" not in os.path.relpath(p, root).split(os.sep)]
    none = (f"{root}: no 'sub-*_ses-*{R20_T1}.nii.gz' files found outside Testing/ "
            f"(ATLAS R2.0 layout Training/R001/sub-r001s001/ses-1/anat/)")

    def read(image):
        name = os.path.basename(image)
        m = re.fullmatch(rf"(sub-[A-Za-z0-9]+)_(ses-[A-Za-z0-9]+){R20_T1}(\.nii(\.gz)?)", name)
        if not m:
            return None, f"{image}: not a sub-<id>_ses-<k>{R20_T1} file name"
        mask = os.path.join(os.path.dirname(image), f"{m[1]}_{m[2]}{R20_MASK}{m[3]}")
        problem = None if os.path.isfile(mask) else f"{m[1]}_{m[2]}: no lesion mask {mask}"
        return Subject(f"{m[1]}_{m[2]}", image, {"mask": (mask,)}, patient_id=m[1]), problem
    return _manifest_of(root, images, none, read, "problem(s)")


def build_miccai2012(root: str, **_) -> Manifest:
    """MICCAI 2012 multi-atlas labelling (OASIS scans, Neuromorphometrics labels).

    ``<root>/**/training-images/<id>_3.nii.gz`` with ``training-labels/<id>_3_glm.nii.gz``
    (15 scans) and the same under ``testing-*`` (20 scans). The challenge's
    folders are the split, as in the paper: ``training`` -> ``train``,
    ``testing`` -> ``test``. Other files in those folders (derived images such
    as ``<id>_3_brain.nii.gz``) are ignored.
    """
    subjects, missing = [], []
    for folder, split in (("training", "train"), ("testing", "test")):
        for image in _find(root, os.path.join("**", f"{folder}-images", "*.nii*")):
            m = re.fullmatch(r"(\d+_\d+)(\.nii(\.gz)?)", os.path.basename(image))
            if not m:
                continue
            labels = os.path.join(os.path.dirname(os.path.dirname(image)), f"{folder}-labels",
                                  f"{m[1]}_glm{m[2]}")
            if not os.path.isfile(labels):
                missing.append(f"{m[1]}: no label map {labels}")
            subjects.append(Subject(m[1], image, {"anatomy": (labels,)}, split))
    if not subjects:
        raise ManifestError(f"{root}: no training-images/<id>_3.nii.gz or testing-images/ files "
                            f"found (MICCAI 2012 multi-atlas layout)")
    _raise_problems(root, missing, "scan(s) without labels")
    return Manifest(tuple(subjects), source=os.path.abspath(root))


def build_ms_lesjak(root: str, **_) -> Manifest:
    """MS lesions (Lesjak et al. 2018): ``<root>/**/patientNN/``.

    Each patient folder holds the co-registered, bias-corrected
    ``patientNN_T1W.nii.gz`` (in FLAIR space, where the consensus mask was
    drawn) and ``patientNN_consensus_gt.nii.gz``; its ``raw/`` folder holds the
    scans in their original space, which do not match the mask and are skipped.
    """
    images = [p for p in _find(root, os.path.join("**", "patient*_T1W.nii*"))
              if "raw" not in os.path.relpath(p, root).split(os.sep)[:-1]]
    subjects, missing = [], []
    for image in images:
        m = re.fullmatch(r"(patient\d+)_T1W(\.nii(\.gz)?)", os.path.basename(image))
        if not m:
            continue
        mask = os.path.join(os.path.dirname(image), f"{m[1]}_consensus_gt{m[2]}")
        if not os.path.isfile(mask):
            missing.append(f"{m[1]}: no consensus mask {mask}")
        subjects.append(Subject(m[1], image, {"mask": (mask,)}))
    if not subjects:
        raise ManifestError(f"{root}: no patientNN/patientNN_T1W.nii.gz files found (layout of "
                            f"the Lesjak et al. 2018 MS database)")
    _raise_problems(root, missing, "patient(s) without a consensus mask")
    return Manifest(tuple(subjects), source=os.path.abspath(root))


_FILE_STEM = r"(?P<subject>[^/]+?)(\.nii(\.gz)?)?$"


def build_glob(root: str, *, image_glob: str = "", label_glob: str = "",
               subject_regex: str = "", patient_regex: str = "",
               ids_of: Callable[[str], tuple[str, str]] | None = None, **_) -> Manifest:
    """A manifest from path patterns under ``root``.

    Args:
      root: data folder; patterns are relative to it (``**`` allowed).
      image_glob: pattern of the images, e.g. ``*/T1.nii.gz``.
      label_glob: pattern of the label files of one subject; ``{subject}``
        is replaced by the subject id, e.g. ``{subject}/lesion*.nii.gz``;
        several matches are unioned. Empty: no labels.
      subject_regex: searched in the image path relative to root; the group
        ``subject`` (or the first group) is the id. Empty: ``ids_of`` (a preset's
        rule), else the file name without extension.
      patient_regex: searched in the same path; the group ``patient`` (or the
        first group) is the patient id, which keeps a patient's scans in one split.
        Empty: ``ids_of``, else each scan is its own patient.
      ids_of: relative image path -> (subject id, patient id), a preset's naming rule.
    """
    if not image_glob:
        raise ManifestError("the glob preset needs --image_glob (e.g. '*/T1.nii.gz')")
    root = os.path.abspath(root)
    images = sorted(glob.glob(os.path.join(glob.escape(root), image_glob), recursive=True))
    if not images:
        raise ManifestError(f"{root}: no files match image_glob '{image_glob}'")
    regex = re.compile(subject_regex or _FILE_STEM)
    patients = re.compile(patient_regex) if patient_regex else None
    subjects, problems = [], []
    for image in images:
        rel = os.path.relpath(image, root).replace(os.sep, "/")
        m = regex.search(rel)
        p = patients.search(rel) if patients else None
        if not m or (patients and not p):
            problems.append(f"{rel}: {'subject' if not m else 'patient'}_regex "
                            f"'{subject_regex if not m else patient_regex}' does not match")
            continue
        sid = m.group("subject") if "subject" in regex.groupindex else m.group(1)
        if ids_of and not subject_regex:
            sid = ids_of(rel)[0]
        patient = (p.group("patient") if "patient" in patients.groupindex else p.group(1)) \
            if p else (ids_of(rel)[1] if ids_of else None)
        labels = ()
        if label_glob:
            pat = os.path.join(glob.escape(root), label_glob.replace("{subject}", glob.escape(sid)))
            labels = tuple(sorted(glob.glob(pat, recursive=True)))
            if not labels:
                wanted = label_glob.replace("{subject}", sid)
                problems.append(f"{sid}: no label file matches '{wanted}'")
        subjects.append(Subject(sid, image, {"mask": labels} if labels else {}, patient_id=patient))
    if problems:
        raise ManifestError(f"{root}: {len(problems)} problem(s): " + "; ".join(problems))
    return Manifest(tuple(subjects), source=root)


@dataclasses.dataclass(frozen=True)
class Preset:
    """Per-data-set defaults (docs/conversion.md, Presets) and an optional layout builder.

    Attributes:
      crop_top / crop_bottom: axial slices dropped from the top / bottom.
      skip_registration: data already in MNI space.
      split_counts / split_fractions: the split of scans the layout does not
        split itself (counts take precedence).
      mask_mode: binary (lesion) or multiclass (anatomy).
      label_mapping: default label-mapping CSV for multiclass targets.
      builder: root -> Manifest for a fixed published layout (None: give --manifest).
      image_glob / label_glob / subject_regex: default patterns for the glob builder.
      ids_of: the naming rule the glob builder applies to this preset's files
        (relative image path -> (subject id, patient id)) where no ``--subject_regex``
        / ``--patient_regex`` is given.
    """
    crop_top: int = 0
    crop_bottom: int = 0
    skip_registration: bool = False
    split_counts: Mapping[str, int] | None = None
    split_fractions: Mapping[str, float] | None = None
    mask_mode: str = "binary"
    label_mapping: str = ""
    builder: Callable[..., Manifest] | None = None
    image_glob: str = ""
    label_glob: str = ""
    subject_regex: str = ""
    ids_of: Callable[[str], tuple[str, str]] | None = None
    description: str = ""


PRESETS: dict[str, Preset] = {
    "bahc": Preset(crop_top=61, split_counts={"train": 670, "val": 100, "test": 100},
                   description="BAHC healthy T1 (source task); give --manifest and the "
                               "870 selected scans with --subjects_csv"),
    "atlas_r12": Preset(crop_top=29, skip_registration=True,
                        split_counts={"train": 200, "test": 104}, builder=build_atlas_r12,
                        ids_of=atlas_r12_ids,
                        description="ATLAS R1.2 stroke, MNI space, found under --root"),
    "atlas_r20": Preset(crop_top=29, skip_registration=True,
                        split_fractions={"train": 0.7, "test": 0.3}, builder=build_atlas_r20,
                        description="ATLAS R2.0 stroke (BIDS, MNI152NLin2009aSym), Training/ "
                                    "under --root"),
    "ms_lesjak": Preset(crop_top=11, crop_bottom=50, split_counts={"train": 20, "test": 10},
                        builder=build_ms_lesjak,
                        description="MS lesions (Lesjak et al. 2018): patientNN/patientNN_T1W + "
                                    "patientNN_consensus_gt under --root"),
    "oasis_ba": Preset(crop_top=11, crop_bottom=50, split_counts={"train": 15, "test": 20},
                       mask_mode="multiclass",
                       label_mapping=MICCAI2012_6CLASS, builder=build_miccai2012,
                       description="MICCAI 2012 multi-atlas (OASIS) brain anatomy: the "
                                   "challenge's training (15) / testing (20) folders, 6 classes"),
    "stroke": Preset(crop_top=29, description="stroke crop defaults only; give --manifest"),
    "glob": Preset(builder=build_glob, description="any layout: --image_glob, --label_glob, "
                                                   "--subject_regex under --root"),
}


def build_manifest(preset: str, root: str, *, image_glob: str = "", label_glob: str = "",
                   subject_regex: str = "", patient_regex: str = "",
                   check: bool = True) -> Manifest:
    """Build a manifest from a preset's layout under ``root``.

    Explicit ``image_glob`` / ``label_glob`` / ``subject_regex`` / ``patient_regex``
    switch to the ``glob`` builder with those patterns while the preset's other
    defaults stay (for a copy whose files were renamed), its patient rule included:
    a patient's scans stay in one split whichever way the files are found.
    """
    p = get_preset(preset)
    if p.builder is None:
        raise ManifestError(f"preset '{preset}' has no fixed layout; give --manifest "
                            f"(the preset still sets the cropping defaults)")
    if not os.path.isdir(root):
        raise ManifestError(f"{root}: data root folder not found")
    globbed = image_glob or label_glob or subject_regex or patient_regex
    builder = build_glob if globbed else p.builder
    kwargs = {"image_glob": image_glob or p.image_glob, "label_glob": label_glob or p.label_glob,
              "patient_regex": patient_regex, "ids_of": p.ids_of}
    if subject_regex or p.subject_regex:
        kwargs["subject_regex"] = subject_regex or p.subject_regex
    manifest = builder(root, **kwargs)
    validate(manifest, check_files=check)
    return manifest


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a clear error listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ManifestError(f"unknown preset '{name}'; known: {sorted(PRESETS)}") from None
