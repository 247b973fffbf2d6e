"""Subject manifests: a CSV file, or one built from a data set's published layout.

A manifest lists, per subject, the T1 image, the label files (several per
kind, unioned later by the pre-processing) and optionally the split. The CSV
has the columns ``subject_id,image`` and optionally ``label`` (target mask,
e.g. lesion), ``split``, ``tissue`` (FAST-style tissue map), ``structures``
(FIRST / aseg label map), ``brain`` (brain mask), ``anatomy`` (multi-class
anatomy labels: the target mask in ``multiclass`` mode, ``label`` otherwise)
and ``synthetic`` (truthy when the scans are generated; a file
``SYNTHETIC_README.txt`` beside the CSV says the same). A cell may hold
several files separated by ``;``.
Relative paths are resolved against the CSV file's folder.

Presets (``PRESETS``) hold the per-data-set defaults of paper_spec section 3
(slice cropping, registration) and, where the published layout is fixed, a
builder that finds the files under a root folder.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

# Manifest column -> key of the ``labels`` dict given to preprocess_subject.
LABEL_COLUMNS = {"label": "mask", "anatomy": "anatomy", "tissue": "tissue",
                 "structures": "structures", "brain": "brain"}
SYNTHETIC_MARKER = "SYNTHETIC_README.txt"  # written beside the manifest by tfrecords_tools.phantoms
REQUIRED_COLUMNS = ("subject_id", "image")
OPTIONAL_COLUMNS = ("split", "synthetic") + tuple(LABEL_COLUMNS)
_TRUE = {"1", "true", "yes", "y", "t"}


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file(s) and the problem."""


@dataclasses.dataclass(frozen=True)
class Subject:
    """One scan to convert.

    Attributes:
      subject_id: unique id (used in shard records and file names).
      image: absolute path of the T1 image.
      labels: label kind (mask, anatomy, tissue, structures, brain) -> absolute paths.
      split: split name, or None when the manifest has none.
    """
    subject_id: str
    image: str
    labels: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    split: str | None = None

    def files(self) -> list[str]:
        """Every input file of the subject, image first."""
        return [self.image] + [p for paths in self.labels.values() for p in paths]

    def label_dict(self, mask_mode: str = "binary") -> dict[str, list[str]]:
        """Labels in the form ``preprocess_subject`` takes.

        The target ``mask`` is the ``label`` files (lesions, unioned) in binary
        mode; in multiclass mode the ``anatomy`` files when given, else ``label``.
        """
        out = {k: list(v) for k, v in self.labels.items() if v and k != "anatomy"}
        if mask_mode == "multiclass" and self.labels.get("anatomy"):
            out["mask"] = list(self.labels["anatomy"])
        return out


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Subjects plus facts about the whole data set."""
    subjects: tuple[Subject, ...]
    source: str = ""
    synthetic: bool = False


def _split_paths(cell, base: str) -> tuple[str, ...]:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return ()
    parts = [p.strip() for p in str(cell).split(";") if p.strip()]
    return tuple(os.path.normpath(os.path.join(base, os.path.expanduser(p))) for p in parts)


def read_manifest(path: str, *, check: bool = True) -> Manifest:
    """Read a CSV manifest.

    Args:
      path: CSV file with at least ``subject_id`` and ``image`` columns.
      check: verify that every listed file exists (all missing files are
        reported in one error).

    Returns:
      The Manifest, subjects in file order.

    Raises:
      ManifestError: missing columns, empty or duplicate subject ids, unknown
        columns, or (with ``check``) missing files.
    """
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: manifest file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""],
                            comment="#", skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: not a readable CSV file ({e})") from e
    frame.columns = [c.strip().lower() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {missing}; "
                            f"expected subject_id,image[,label,split,...]")
    unknown = sorted(set(frame.columns) - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS))
    if unknown:
        raise ManifestError(f"{path}: unknown column(s) {unknown}; allowed "
                            f"{list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}")
    base = os.path.dirname(os.path.abspath(path))
    subjects = []
    for row_no, row in enumerate(frame.to_dict("records"), start=2):
        sid = str(row.get("subject_id") or "").strip()
        image = _split_paths(row.get("image"), base)
        if not sid or sid == "nan" or len(image) != 1:
            raise ManifestError(f"{path}: line {row_no}: needs a subject_id and exactly one image")
        labels: dict[str, tuple[str, ...]] = {}
        for column, kind in LABEL_COLUMNS.items():
            labels[kind] = labels.get(kind, ()) + _split_paths(row.get(column), base)
        split = row.get("split")
        split = None if split is None or str(split) in ("", "nan") else str(split).strip()
        subjects.append(Subject(sid, image[0], {k: v for k, v in labels.items() if v}, split))
    synthetic = os.path.exists(os.path.join(base, SYNTHETIC_MARKER)) or (
        "synthetic" in frame.columns and any(str(v).strip().lower() in _TRUE
                                             for v in frame["synthetic"]))
    manifest = Manifest(tuple(subjects), source=os.path.abspath(path), synthetic=synthetic)
    validate(manifest, check_files=check)
    return manifest


def validate(manifest: Manifest, *, check_files: bool = True) -> None:
    """Check ids are unique and safe, and (optionally) that every file exists.

    Every problem is collected first, so one error lists all missing files.
    """
    where = manifest.source or "manifest"
    if not manifest.subjects:
        raise ManifestError(f"{where}: no subjects")
    ids = [s.subject_id for s in manifest.subjects]
    dups = sorted({i for i in ids if ids.count(i) > 1})
    if dups:
        raise ManifestError(f"{where}: duplicate subject ids {dups}")
    bad = [i for i in ids if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", i)]
    if bad:
        raise ManifestError(f"{where}: subject ids must be letters, digits, '_', '-', '.': {bad}")
    if check_files:
        missing = [f"{s.subject_id}: {f}" for s in manifest.subjects for f in s.files()
                   if not os.path.isfile(f)]
        if missing:
            raise ManifestError(f"{where}: {len(missing)} missing file(s): " + "; ".join(missing))


def assign_splits(manifest: Manifest, *, counts: Mapping[str, int] | None = None,
                  fractions: Mapping[str, float] | None = None, seed: int = 0) -> Manifest:
    """Give a split to every subject that has none, by a seeded random permutation.

    Subjects that already have a split keep it. ``counts`` (e.g. ``{"train":
    200, "test": 104}`` for ATLAS) takes precedence over ``fractions``
    (default train 0.8 / val 0.1 / test 0.1); the last split named takes the
    remainder. The permutation is over the sorted ids of the unassigned
    subjects, so the result depends only on (ids, counts/fractions, seed).
    """
    todo = sorted(s.subject_id for s in manifest.subjects if s.split is None)
    if not todo:
        return manifest
    names, sizes = _split_sizes(len(todo), counts, fractions)
    order = np.random.default_rng(seed).permutation(len(todo))
    assigned, start = {}, 0
    for name, size in zip(names, sizes):
        for i in order[start:start + size]:
            assigned[todo[i]] = name
        start += size
    subjects = tuple(s if s.split is not None
                     else dataclasses.replace(s, split=assigned[s.subject_id])
                     for s in manifest.subjects)
    return dataclasses.replace(manifest, subjects=subjects)


def _split_sizes(n, counts, fractions) -> tuple[list[str], list[int]]:
    if counts:
        names = list(counts)
        sizes = [int(counts[k]) for k in names]
        if any(v < 0 for v in sizes) or sum(sizes[:-1]) > n:
            raise ManifestError(f"split counts {dict(counts)} do not fit the {n} subject(s) "
                                f"without a split; give --splits (counts or fractions)")
        sizes[-1] = n - sum(sizes[:-1])
        return names, sizes
    fractions = fractions or {"train": 0.8, "val": 0.1, "test": 0.1}
    names = list(fractions)
    total = float(sum(fractions.values()))
    if total <= 0 or any(v < 0 for v in fractions.values()):
        raise ManifestError(f"split fractions {dict(fractions)} must be >= 0 with a positive sum")
    sizes = [int(round(n * fractions[k] / total)) for k in names[:-1]]
    while sum(sizes) > n:  # rounding can overshoot for tiny cohorts
        sizes[int(np.argmax(sizes))] -= 1
    return names, sizes + [n - sum(sizes)]


def parse_split_spec(spec: str) -> tuple[dict[str, int] | None, dict[str, float] | None]:
    """Parse ``train=200,test=104`` (counts) or ``train=0.8,val=0.1,test=0.1`` (fractions)."""
    if not spec:
        return None, None
    items = {}
    for part in spec.split(","):
        name, _, value = part.partition("=")
        if not name.strip() or not value.strip():
            raise ManifestError(f"split spec '{spec}': expected name=value,name=value")
        items[name.strip()] = value.strip()
    try:
        if all(re.fullmatch(r"\d+", v) for v in items.values()):
            return {k: int(v) for k, v in items.items()}, None
        return None, {k: float(v) for k, v in items.items()}
    except ValueError as e:
        raise ManifestError(f"split spec '{spec}': {e}") from e


# ----------------------------------------------------------------------------- layouts


def _nii_stem(path: str) -> str:
    name = os.path.basename(path)
    for ext in (".nii.gz", ".nii", ".mgz", ".gz"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return os.path.splitext(name)[0]


def build_atlas_r12(root: str, **_) -> Manifest:
    """ATLAS R1.2 (and R1.1): ``<root>/**/<site>/<subject>/t01/``.

    Each session folder holds ``<subject>_t1w_deface_stx.nii.gz`` and one or
    more ``<subject>_LesionSmooth*_stx.nii.gz`` masks (unioned). ``root`` may
    be any folder above the site folders (e.g. the ``standard_MNI`` or
    ``Only_Data`` folder of the release). Sessions other than ``t01`` become
    subjects ``<subject>_<session>``. Scans are in MNI space (``_stx``).
    """
    pattern = os.path.join(glob.escape(os.path.abspath(root)), "**", "*_t1w_deface_stx.nii*")
    images = sorted(glob.glob(pattern, recursive=True))
    if not images:
        raise ManifestError(f"{root}: no '*_t1w_deface_stx.nii.gz' files found (ATLAS R1.2 layout "
                            f"<root>/<site>/<subject>/t01/<subject>_t1w_deface_stx.nii.gz)")
    subjects, missing = [], []
    for image in images:
        folder = os.path.dirname(image)
        session = os.path.basename(folder)
        subject = os.path.basename(image).split("_t1w_deface_stx")[0]
        pattern = os.path.join(glob.escape(folder), f"{subject}_LesionSmooth*_stx.nii*")
        masks = sorted(glob.glob(pattern))
        if not masks:
            missing.append(f"{subject}: {folder}/{subject}_LesionSmooth*_stx.nii.gz")
        sid = subject if session in ("t01", "") or not re.fullmatch(r"t\d+", session) \
            else f"{subject}_{session}"
        subjects.append(Subject(sid, image, {"mask": tuple(masks)}))
    if missing:
        raise ManifestError(f"{root}: {len(missing)} subject(s) without a lesion mask: "
                            + "; ".join(missing))
    return Manifest(tuple(subjects), source=os.path.abspath(root))


def build_glob(root: str, *, image_glob: str = "", label_glob: str = "",
               subject_regex: str = r"(?P<subject>[^/]+?)(\.nii(\.gz)?)?$", **_) -> Manifest:
    """A manifest from path patterns under ``root``.

    Args:
      root: data folder; patterns are relative to it (``**`` allowed).
      image_glob: pattern of the images, e.g. ``*/T1.nii.gz``.
      label_glob: pattern of the label files of one subject; ``{subject}``
        is replaced by the subject id, e.g. ``{subject}/lesion*.nii.gz``;
        several matches are unioned. Empty: no labels.
      subject_regex: searched in the image path relative to root; the group
        ``subject`` (or the first group) is the id. The default takes the
        file name without extension.
    """
    if not image_glob:
        raise ManifestError("the glob preset needs --image_glob (e.g. '*/T1.nii.gz')")
    root = os.path.abspath(root)
    images = sorted(glob.glob(os.path.join(glob.escape(root), image_glob), recursive=True))
    if not images:
        raise ManifestError(f"{root}: no files match image_glob '{image_glob}'")
    regex = re.compile(subject_regex)
    subjects, problems = [], []
    for image in images:
        rel = os.path.relpath(image, root).replace(os.sep, "/")
        m = regex.search(rel)
        if not m:
            problems.append(f"{rel}: subject_regex '{subject_regex}' does not match")
            continue
        sid = m.group("subject") if "subject" in regex.groupindex else m.group(1)
        labels = ()
        if label_glob:
            pat = os.path.join(glob.escape(root), label_glob.replace("{subject}", glob.escape(sid)))
            labels = tuple(sorted(glob.glob(pat, recursive=True)))
            if not labels:
                wanted = label_glob.replace("{subject}", sid)
                problems.append(f"{sid}: no label file matches '{wanted}'")
        subjects.append(Subject(sid, image, {"mask": labels} if labels else {}))
    if problems:
        raise ManifestError(f"{root}: {len(problems)} problem(s): " + "; ".join(problems))
    return Manifest(tuple(subjects), source=root)


@dataclasses.dataclass(frozen=True)
class Preset:
    """Per-data-set defaults (paper_spec sections 2 and 3) and an optional layout builder.

    Attributes:
      crop_top / crop_bottom: axial slices dropped from the top / bottom.
      skip_registration: data already in MNI space.
      split_counts: the paper's split when the layout has none.
      mask_mode: binary (lesion) or multiclass (anatomy).
      builder: root -> Manifest for a fixed published layout (None: give --manifest).
      image_glob / label_glob: default patterns for the glob builder.
    """
    crop_top: int = 0
    crop_bottom: int = 0
    skip_registration: bool = False
    split_counts: Mapping[str, int] | None = None
    mask_mode: str = "binary"
    builder: Callable[..., Manifest] | None = None
    image_glob: str = ""
    label_glob: str = ""
    subject_regex: str = ""
    description: str = ""


PRESETS: dict[str, Preset] = {
    "bahc": Preset(crop_top=61, split_counts={"train": 670, "val": 100, "test": 100},
                   description="BAHC healthy T1 (source task); give --manifest"),
    "atlas_r12": Preset(crop_top=29, skip_registration=True,
                        split_counts={"train": 200, "test": 104}, builder=build_atlas_r12,
                        description="ATLAS R1.2 stroke, MNI space, found under --root"),
    "ms_lesjak": Preset(crop_top=11, crop_bottom=50, split_counts={"train": 20, "test": 10},
                        builder=build_glob, image_glob="**/patient*_T1W.nii*",
                        label_glob="**/{subject}_consensus_gt.nii*",
                        subject_regex=r"(?P<subject>patient[^/_]+)_T1W",
                        description="MS lesions (Lesjak et al. 2018): patientNN_T1W / "
                                    "patientNN_consensus_gt under --root"),
    "oasis_ba": Preset(crop_top=11, crop_bottom=50, split_counts={"train": 15, "test": 20},
                       mask_mode="multiclass", builder=build_glob,
                       image_glob="**/*-images/*.nii*", label_glob="**/*-labels/{subject}_glm.nii*",
                       subject_regex=r"(?P<subject>[^/]+?)\.nii(\.gz)?$",
                       description="MICCAI 2012 multi-atlas (OASIS) brain anatomy: "
                                   "*-images/ID.nii.gz + *-labels/ID_glm.nii.gz; "
                                   "needs --label_mapping"),
    "stroke": Preset(crop_top=29, description="stroke crop defaults only; give --manifest"),
    "glob": Preset(builder=build_glob, description="any layout: --image_glob, --label_glob, "
                                                   "--subject_regex under --root"),
}


def build_manifest(preset: str, root: str, *, image_glob: str = "", label_glob: str = "",
                   subject_regex: str = "", check: bool = True) -> Manifest:
    """Build a manifest from a preset's layout under ``root``.

    Explicit ``image_glob`` / ``label_glob`` / ``subject_regex`` override the
    preset's patterns (useful when a release renamed its folders).
    """
    p = get_preset(preset)
    if p.builder is None:
        raise ManifestError(f"preset '{preset}' has no fixed layout; give --manifest "
                            f"(the preset still sets the cropping defaults)")
    if not os.path.isdir(root):
        raise ManifestError(f"{root}: data root folder not found")
    kwargs = {"image_glob": image_glob or p.image_glob, "label_glob": label_glob or p.label_glob}
    if subject_regex or p.subject_regex:
        kwargs["subject_regex"] = subject_regex or p.subject_regex
    manifest = p.builder(root, **kwargs)
    validate(manifest, check_files=check)
    return manifest


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a clear error listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ManifestError(f"unknown preset '{name}'; known: {sorted(PRESETS)}") from None


def write_manifest(manifest: Manifest, path: str) -> None:
    """Write a manifest as CSV (absolute paths; ``;`` between several files)."""
    from tl_keras.utils.io import write_csv_atomic
    rows = []
    for s in manifest.subjects:
        row = {"subject_id": s.subject_id, "image": s.image, "split": s.split or ""}
        for column in ("label", "anatomy", "tissue", "structures", "brain"):
            row[column] = ";".join(s.labels.get(LABEL_COLUMNS[column], ()))
        if manifest.synthetic:
            row["synthetic"] = "true"
        rows.append(row)
    write_csv_atomic(path, pd.DataFrame(rows))


def split_of(subjects: Sequence[Subject]) -> dict[str, list[Subject]]:
    """Group subjects by split, each group sorted by id (the shard order)."""
    groups: dict[str, list[Subject]] = {}
    for s in sorted(subjects, key=lambda s: s.subject_id):
        groups.setdefault(s.split or "train", []).append(s)
    return groups
