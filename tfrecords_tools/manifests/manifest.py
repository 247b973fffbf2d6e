"""Subject manifests: a CSV file, or one built from a data set's published layout.

A manifest lists, per subject, the T1 image, the label files (several per
kind, unioned later by the pre-processing) and optionally the split. The CSV
has the columns ``subject_id,image`` and optionally ``label`` (target mask,
e.g. lesion), ``split``, ``tissue`` (FAST-style tissue map), ``structures``
(FIRST / aseg label map), ``brain`` (brain mask), ``anatomy`` (multi-class
anatomy labels: the target mask in ``multiclass`` mode, ``label`` otherwise)
``synthetic`` (truthy when the scans are generated; a file
``SYNTHETIC_README.txt`` beside the CSV says the same) and ``patient_id``
(several scans of one patient, e.g. sessions, share it; the random split keeps
them together). A cell may hold several files separated by ``;``.
Relative paths are resolved against the CSV file's folder.

The per-data-set presets and the builders of the published layouts are in
``tfrecords_tools.manifests.releases``.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from tl_common.cli import UserError
from tl_common.io import sha256_file, write_csv_atomic

# Manifest column -> key of the ``labels`` dict given to preprocess_subject.
LABEL_COLUMNS = {"label": "mask", "anatomy": "anatomy", "tissue": "tissue",
                 "structures": "structures", "brain": "brain"}
SYNTHETIC_MARKER = "SYNTHETIC_README.txt"  # written beside the manifest by tfrecords_tools.phantoms
REQUIRED_COLUMNS = ("subject_id", "image")
OPTIONAL_COLUMNS = ("split", "synthetic", "patient_id") + tuple(LABEL_COLUMNS)
# A split given by counts may end up at most this much larger than its count
# (the last split takes the remainder) before assign_splits refuses.
MAX_REMAINDER_EXCESS = 0.1
_TRUE = {"1", "true", "yes", "y", "t"}


class ManifestError(UserError, ValueError):
    """A manifest that cannot be used; the message names the file(s) and the problem."""


@dataclasses.dataclass(frozen=True)
class Subject:
    """One scan to convert.

    Attributes:
      subject_id: unique id (used in shard records and file names).
      image: absolute path of the T1 image.
      labels: label kind (mask, anatomy, tissue, structures, brain) -> absolute paths.
      split: split name, or None when the manifest has none.
      patient_id: the patient the scan belongs to (None: its own patient).
        Scans of one patient always land in the same random split.
    """
    subject_id: str
    image: str
    labels: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    split: str | None = None
    patient_id: str | None = None

    @property
    def patient(self) -> str:
        """The patient id used by the splitter (the subject id when none is given)."""
        return self.patient_id or self.subject_id

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
        patient = str(row.get("patient_id") or "").strip()
        subjects.append(Subject(sid, image[0], {k: v for k, v in labels.items() if v}, split,
                                None if patient in ("", "nan") else patient))
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
    splits: dict[str, set] = {}
    for subject in manifest.subjects:
        if subject.split is not None:
            splits.setdefault(subject.patient, set()).add(subject.split)
    mixed = {p: sorted(v) for p, v in sorted(splits.items()) if len(v) > 1}
    if mixed:
        raise ManifestError(f"{where}: scans of one patient in several splits (a leak between "
                            f"them): {mixed}")
    if check_files:
        missing = [f"{s.subject_id}: {f}" for s in manifest.subjects for f in s.files()
                   if not os.path.isfile(f)]
        if missing:
            raise ManifestError(f"{where}: {len(missing)} missing file(s): " + "; ".join(missing))


def assign_splits(manifest: Manifest, *, counts: Mapping[str, int] | None = None,
                  fractions: Mapping[str, float] | None = None, seed: int = 0,
                  allow_large_last_split: bool = False) -> Manifest:
    """Give a split to every subject that has none, by a seeded random permutation of patients.

    Subjects that already have a split keep it, and the other scans of their
    patient join them. The remaining patients are permuted (seeded, over their
    sorted ids) and dealt out in order: a patient goes, with all its scans, to
    the split in which its first scan falls when the scans are counted off
    against the split sizes. Sizes count scans: ``counts`` (e.g. ``{"train":
    200, "test": 104}`` for ATLAS) takes precedence over ``fractions``
    (default train 0.8 / val 0.1 / test 0.1); the last split named takes the
    remainder. With one scan per patient this is a plain permutation of the
    sorted subject ids, so the result depends only on (ids, sizes, seed);
    several scans per patient can move a boundary by up to that patient's
    scans minus one.

    Args:
      manifest: the subjects.
      counts / fractions: split sizes (see above).
      seed: permutation seed.
      allow_large_last_split: with ``counts``, accept a last split more than
        ``MAX_REMAINDER_EXCESS`` larger than its count (e.g. BAHC's 2001 scans
        against 670 / 100 / 100 would silently make a 1231-scan test split).

    Raises:
      ManifestError: the counts do not fit, or the remainder is too large.
    """
    given = {s.patient: s.split for s in manifest.subjects if s.split is not None}
    todo = [s for s in manifest.subjects if s.split is None and s.patient not in given]
    assigned: dict[str, str] = {}
    if todo:
        scans: dict[str, int] = {}
        for s in todo:
            scans[s.patient] = scans.get(s.patient, 0) + 1
        names, sizes = _split_sizes(len(todo), counts, fractions)
        if counts and not allow_large_last_split:
            _check_remainder(names[-1], sizes[-1], int(counts[names[-1]]), len(todo))
        patients = sorted(scans)
        bounds = np.cumsum(sizes)
        dealt = 0
        for i in np.random.default_rng(seed).permutation(len(patients)):
            k = min(int(np.searchsorted(bounds, dealt, side="right")), len(names) - 1)
            assigned[patients[i]] = names[k]
            dealt += scans[patients[i]]
    subjects = tuple(s if s.split is not None
                     else dataclasses.replace(s, split=given.get(s.patient) or assigned[s.patient])
                     for s in manifest.subjects)
    return dataclasses.replace(manifest, subjects=subjects)


def check_split_leaks(manifest: Manifest) -> list[str]:
    """Refuse one image file listed for two subjects; return a warning for each pair of
    subjects in different splits whose images have identical content (a copy of a scan).

    Paths are compared after resolving links; contents by SHA-256, computed only for
    images of equal size, so a cohort of distinct scans costs one ``stat`` each.

    Raises:
      ManifestError: the same image file for two subjects (all listed).
    """
    where = manifest.source or "manifest"
    by_path: dict[str, list[Subject]] = {}
    for s in manifest.subjects:
        by_path.setdefault(os.path.realpath(s.image), []).append(s)
    twice = [f"{path} ({', '.join(f'{s.subject_id} in {s.split}' for s in group)})"
             for path, group in sorted(by_path.items()) if len(group) > 1]
    if twice:
        raise ManifestError(f"{where}: {len(twice)} image file(s) listed for several subjects "
                            f"(test data would reach training): " + "; ".join(twice))
    by_size: dict[int, list[Subject]] = {}
    for s in manifest.subjects:
        by_size.setdefault(os.path.getsize(s.image), []).append(s)
    warnings = []
    for group in by_size.values():
        if len({s.split for s in group}) < 2:
            continue
        by_hash: dict[str, list[Subject]] = {}
        for s in group:
            by_hash.setdefault(sha256_file(s.image), []).append(s)
        for same in by_hash.values():
            if len({s.split for s in same}) > 1:
                names = ", ".join(f"{s.subject_id} ({s.split})" for s in same)
                warnings.append(f"warning: {where}: subjects {names} have identical images "
                                f"({', '.join(s.image for s in same)}): the same scan in "
                                "several splits leaks test data into training")
    return warnings


def _check_remainder(name: str, size: int, stated: int, n: int) -> None:
    """Refuse a last split that the remainder made much larger than its count."""
    if size > stated * (1 + MAX_REMAINDER_EXCESS):
        raise ManifestError(
            f"split '{name}' would hold {size} of the {n} scan(s) without a split, its count "
            f"is {stated}; select the scans (--subjects_csv), give every split a count "
            f"(--splits), or pass --allow_large_last_split")


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


def select_subjects(manifest: Manifest, path: str) -> Manifest:
    """Keep only the subjects listed in a CSV (column ``subject_id``, optional ``split``).

    For data sets of which a paper used a selection (BAHC: 870 of 2001
    scans). A ``split`` column in the list overrides the manifest's; every
    listed id must exist in the manifest.

    Raises:
      ManifestError: unreadable list, no ``subject_id`` column, duplicate or
        unknown ids (all listed).
    """
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: subject list not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, comment="#",
                            skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: not a readable CSV file ({e})") from e
    table.columns = [c.strip().lower() for c in table.columns]
    if "subject_id" not in table.columns:
        raise ManifestError(f"{path}: subject list needs a subject_id column")
    ids = [i.strip() for i in table["subject_id"]]
    dups = sorted({i for i in ids if ids.count(i) > 1})
    known = {s.subject_id: s for s in manifest.subjects}
    unknown = [i for i in ids if i not in known]
    problems = (["no subjects listed"] if not ids else []) + (
        [f"duplicate ids {dups}"] if dups else []) + (
        [f"{len(unknown)} id(s) not in the manifest: {unknown[:20]}"] if unknown else [])
    if problems:
        raise ManifestError(f"{path}: subject list: " + "; ".join(problems))
    splits = [v.strip() for v in table["split"]] if "split" in table.columns else [""] * len(ids)
    chosen = tuple(dataclasses.replace(known[i], split=split or known[i].split)
                   for i, split in zip(ids, splits))
    return dataclasses.replace(manifest, subjects=chosen)


def write_manifest(manifest: Manifest, path: str) -> None:
    """Write a manifest as CSV (absolute paths; ``;`` between several files)."""
    rows = []
    for s in manifest.subjects:
        row = {"subject_id": s.subject_id, "image": s.image, "split": s.split or "",
               "patient_id": s.patient_id or ""}
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
