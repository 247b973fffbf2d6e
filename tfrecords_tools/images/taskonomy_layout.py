"""Pair Taskonomy images and labels by building, point and view.

The Taskonomy data set keeps one folder per domain (``rgb``,
``segmentsemantic``, ...) in each building, with file names
``point_<i>_view_<j>_domain_<domain>.png``; the omnidata download tool puts the
building below the domain instead (``rgb/taskonomy/<building>/...``, with the
folder ``segment_semantic`` for the ``segmentsemantic`` files; so do per-building
downloads of the full release, ``<building>/segment_semantic/``). All are read
here: a file's building is the nearest folder above it that is not a domain
folder (nor ``taskonomy``), and an image is paired with the label file of the
same (building, point, view). docs/conversion.md says where the layout was
checked.
"""
from __future__ import annotations

import glob
import os
import re

from tfrecords_tools.manifests.manifest import ManifestError

# Folder names that are never a building: Taskonomy domains as folders, in both layouts.
_NOT_BUILDINGS = {"taskonomy", "segment_semantic"}


def _views(root: str, domain: str) -> dict[tuple[str, str, str], str]:
    """(building, point, view) -> file of ``domain`` under ``root``."""
    name = re.compile(rf"point_(\d+)_view_(\d+)_domain_{re.escape(domain)}\.png")
    pattern = os.path.join(glob.escape(os.path.abspath(root)), "**",
                           f"point_*_view_*_domain_{domain}.png")
    found = {}
    for path in sorted(glob.glob(pattern, recursive=True)):
        m = name.fullmatch(os.path.basename(path))
        if not m:
            continue
        folders = os.path.relpath(os.path.dirname(path), root).split(os.sep)
        building = next((f for f in reversed(folders) if f not in (".", domain)
                         and f not in _NOT_BUILDINGS), "")
        found[(building, m[1], m[2])] = path
    return found


def building_of(subject_id: str) -> str:
    """The building of a ``<building>_point_<i>_view_<j>`` subject id ('' when none)."""
    head, sep, _ = subject_id.rpartition("_point_")
    return head if sep else ""


def taskonomy_pairs(root: str, image_domain: str = "rgb",
                    mask_domain: str = "segmentsemantic") -> list[tuple[str, str, str | None]]:
    """(subject id, image, label file or None) for every image of ``image_domain``.

    Subject ids are ``<building>_point_<i>_view_<j>`` (``point_<i>_view_<j>``
    when the root is a single building's domain folder). With an empty
    ``mask_domain`` no label files are looked for.

    Raises:
      ManifestError: no images, or images without a label file (all listed).
    """
    if not os.path.isdir(root):
        raise ManifestError(f"{root}: Taskonomy folder not found")
    images = _views(root, image_domain)
    if not images:
        raise ManifestError(f"{root}: no point_<i>_view_<j>_domain_{image_domain}.png files "
                            f"(Taskonomy layout <building>/{image_domain}/...)")
    masks = _views(root, mask_domain) if mask_domain else {}
    pairs, missing = [], []
    for (building, point, view), image in sorted(images.items()):
        sid = f"point_{point}_view_{view}" if not building else \
            f"{building}_point_{point}_view_{view}"
        mask = masks.get((building, point, view)) if mask_domain else None
        if mask_domain and mask is None:
            missing.append(f"{sid}: no point_{point}_view_{view}_domain_{mask_domain}.png")
        pairs.append((sid, image, mask))
    if missing:
        raise ManifestError(f"{root}: {len(missing)} image(s) without labels: "
                            + "; ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))
    return pairs
