"""Natural RGB images -> the same TFRecord shard format (unequal-domain pre-training).

The library of ``python -m tfrecords_tools.convert_images`` (docs/conversion.md).
One example per image (``slice_index`` 0, subject id = file stem, or
``<building>_point_<i>_view_<j>`` for Taskonomy, see ``taskonomy_layout``): ``image``
(S, S, 3) in [0, 1], ``tissue`` = semantic segmentation labels (from a mask
PNG with the same stem), ``presence`` = class vector (one-hot, or multi-hot
when a file has several rows in the labels CSV; without a CSV, the
segmentation classes present), ``mask`` all zeros. Images are resized like
Taskonomy's loader: ``skimage.transform.resize`` bilinear (order 1, no
anti-aliasing) to S x S; masks nearest (order 0). Splits are drawn by seed, by
group where items have one (Taskonomy: all views of a building in one split).
An ignore label (Taskonomy: 0, unlabelled) is stored as the last class,
``ignore``, named in dataset.json ``ignore_class``; the pre-training loss
weighs it 0 (``tl_keras.training.class_weights``).
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import sys
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from tfrecords_tools import schema
from tfrecords_tools.dataset_meta import DatasetMeta
from tfrecords_tools.errors import InputError
from tfrecords_tools.manifests import manifest as mf
from tfrecords_tools.shards import writer as shards
from tl_common.io import write_csv_atomic, write_json_atomic
from tl_common.runinfo import TOOL_VERSION
from tl_common.cli import FlagError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
IGNORE_CLASS = "ignore"  # name of the class whose pixels the loss leaves out
RECORD_DIR = ".shards"


@dataclasses.dataclass(frozen=True)
class ImageItem:
    """One image to write: ``load()`` -> (rgb float32 (S, S, 3) in [0, 1], labels uint8 or None)."""
    subject_id: str
    load: Callable[[], tuple[np.ndarray, np.ndarray | None]]
    presence: tuple[float, ...]
    source: str
    key: str  # identity for resume (file path + size + mtime, or generator parameters)
    group: str | None = None  # images of one group share a split (Taskonomy: the building)


def resize_rgb(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W[, C]) image of any dtype -> (size, size, 3) float32 in [0, 1], bilinear."""
    from skimage.transform import resize
    from skimage.util import img_as_float32
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"expected an RGB image, got shape {image.shape}")
    image = img_as_float32(image[..., :3])
    out = resize(image, (size, size), order=1, mode="reflect", anti_aliasing=False)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """(H, W) integer labels -> (size, size) uint8, nearest neighbour."""
    from skimage.transform import resize
    labels = np.asarray(labels)
    out = resize(labels, (size, size), order=0, preserve_range=True, anti_aliasing=False)
    return np.rint(out).astype(np.uint8)


def _file_key(path: str) -> str:
    st = os.stat(path)
    return f"{os.path.abspath(path)}:{st.st_size}:{int(st.st_mtime)}"


def _read(subject: str, path: str, labels: bool = False) -> np.ndarray:
    from skimage import io
    try:
        array = io.imread(path)
    except Exception as e:  # noqa: BLE001 - any decoder error means an unusable file
        raise InputError(subject, path, f"cannot read image ({type(e).__name__}: {e})") from None
    if labels:
        if array.ndim == 3:  # a palette / RGB-coded mask: use the first channel
            array = array[..., 0]
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer) or array.max() > 255:
            raise InputError(subject, path, "segmentation mask must be a 2D integer image "
                                            "with class values 0..255")
    return array


def _images_in(folder: str) -> list[str]:
    return sorted(p for p in glob.glob(os.path.join(glob.escape(folder), "*"))
                  if p.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(p))


def folder_items(image_dir: str, size: int, *, mask_dir: str = "", labels_csv: str = "",
                 ignore_label: int | None = None
                 ) -> tuple[list[ImageItem], list[str], list[str]]:
    """Items of an image folder with optional masks (same stems) and class labels.

    The images are the folder's own, or, when it has none, those of its sub-folders,
    one per class (ImageNet as distributed: ``n03001627/n03001627_1000.JPEG``); the
    sub-folder is then the image's class unless ``labels_csv`` is given.

    Returns:
      (items, segmentation class names, presence label names), as ``image_items``.
    """
    paths, folder_classes = _images_in(image_dir), {}
    if not paths and os.path.isdir(image_dir):
        for sub in sorted(e.path for e in os.scandir(image_dir) if e.is_dir()):
            found = _images_in(sub)
            paths += found
            folder_classes.update({os.path.splitext(os.path.basename(p))[0]:
                                   os.path.basename(sub) for p in found})
    if not paths:
        raise mf.ManifestError(f"{image_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}) in "
                               "the folder nor in its sub-folders (one per class)")
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(stems)) != len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})
        raise mf.ManifestError(f"{image_dir}: several images share a file stem: {twice[:5]}")
    pairs, problems = [], []
    for stem, path in zip(stems, paths):
        mask = None
        if mask_dir:
            pattern = os.path.join(glob.escape(mask_dir), glob.escape(stem) + ".*")
            found = [p for p in glob.glob(pattern) if p.lower().endswith(IMAGE_EXTENSIONS)]
            mask = found[0] if found else None
            if not found:
                problems.append(f"{stem}: no mask {mask_dir}/{stem}.png")
        pairs.append((stem, path, mask))
    return image_items(pairs, size, labels_csv=labels_csv, ignore_label=ignore_label,
                       problems=problems, with_masks=bool(mask_dir),
                       classes_of=None if labels_csv else folder_classes or None)


def image_items(pairs, size: int, *, labels_csv: str = "", ignore_label: int | None = None,
                problems: Sequence[str] = (), with_masks: bool | None = None,
                classes_of: dict[str, str] | None = None,
                groups: dict[str, str] | None = None
                ) -> tuple[list[ImageItem], list[str], list[str]]:
    """Items from (subject id, image path, mask path or None) triples.

    Args:
      pairs: the images and their masks.
      size: output side.
      labels_csv: ``file,class`` rows; ``file``'s stem is the subject id.
      ignore_label: mask value whose pixels are left out of the loss: stored as
        the last class, named ``ignore`` (see ``label_table``).
      problems: problems found by the caller, reported with these.
      with_masks: the data set has masks (default: any pair has one).
      classes_of: subject id -> class label, instead of ``labels_csv`` (one-hot).
      groups: subject id -> group; a group's images share a split (e.g. a building).

    Returns:
      (items, segmentation class names, presence label names). Every missing
      mask or label is reported in one ManifestError.
    """
    problems = list(problems)
    classes, per_file = [], {}
    if labels_csv:
        table = pd.read_csv(labels_csv, dtype=str)
        if not {"file", "class"} <= set(table.columns):
            raise mf.ManifestError(f"{labels_csv}: expected columns file,class")
        classes = sorted(set(table["class"]))
        for f, c in zip(table["file"], table["class"]):
            per_file.setdefault(os.path.splitext(os.path.basename(f))[0], set()).add(c)
        problems += [f"{s}: no row in {labels_csv}" for s, _, _ in pairs if s not in per_file]
    elif classes_of:
        classes = sorted(set(classes_of.values()))
        per_file = {s: {c} for s, c in classes_of.items()}
    if problems:
        raise mf.ManifestError(f"{len(problems)} problem(s): " + "; ".join(problems))
    with_masks = any(m for _, _, m in pairs) if with_masks is None else with_masks
    masks = {s: m for s, _, m in pairs if m}
    lut, seg_classes = label_table(masks, ignore_label) if with_masks else (None, [])
    valid = [c for c in seg_classes if c != IGNORE_CLASS]
    presence_names = classes or valid[1:]
    items = []
    for stem, path, mask in pairs:
        presence = tuple(float(c in per_file[stem]) for c in classes) if classes else None
        item = _folder_item(stem, path, mask, size, presence, lut, len(valid))
        items.append(dataclasses.replace(item, group=(groups or {}).get(stem)))
    return items, seg_classes, presence_names


def label_table(masks: dict, ignore_label: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Mask value -> stored class, and the class names.

    Without ``ignore_label`` values are classes as they are (``class_0`` ..
    ``class_K``, K the largest value found). With it, the other values keep
    their order but close the gap (``class_<value>`` names keep the original
    value) and the ignored value becomes the last class, ``ignore``, which the
    training loss weighs 0 (dataset.json ``ignore_class``).

    Returns:
      (lut, names): a 256-entry uint8 lookup table and the class names.
    """
    if ignore_label is not None and not 0 <= ignore_label <= 255:
        raise FlagError(f"ignore_label must be a mask value 0..255, got {ignore_label}")
    top = 0
    for s, p in masks.items():
        values = np.unique(_read(s, p, labels=True))
        values = values[values != ignore_label] if ignore_label is not None else values
        top = max(top, int(values.max()) if values.size else 0)
    top = max(top, 1)
    kept = [v for v in range(top + 1) if v != ignore_label]
    lut = np.zeros(256, np.uint8)
    lut[kept] = np.arange(len(kept))
    names = [f"class_{v}" for v in kept]
    if ignore_label is not None:
        lut[ignore_label] = len(kept)
        names.append(IGNORE_CLASS)
    return lut, names


def _folder_item(stem, path, mask_path, size, presence, lut, num_valid):
    def load():
        rgb = resize_rgb(_read(stem, path), size)
        if mask_path is None:
            return rgb, None
        return rgb, lut[resize_labels(_read(stem, mask_path, True), size)]
    key = _file_key(path) + ("|" + _file_key(mask_path) if mask_path else "")
    if lut is not None:
        key += "|" + hashlib.sha1(lut.tobytes()).hexdigest()[:12]
    if presence is None and mask_path is not None:
        # Multi-hot of the foreground classes present; needs the mask, read once here.
        present = set(np.unique(lut[_read(stem, mask_path, True)]).tolist())
        presence = tuple(float(k in present) for k in range(1, num_valid))
    return ImageItem(stem, load, presence or (), path, key)


def write_image_dataset(items: Sequence[ImageItem], out_dir: str, *, seg_classes: Sequence[str],
                        presence_labels: Sequence[str], image_size: int, num_shards: int = 4,
                        split_counts=None, split_fractions=None, seed: int = 0,
                        synthetic: bool = False, preprocessing: dict | None = None,
                        progress: bool = True) -> DatasetMeta:
    """Assign splits, write shards (skipping unchanged ones) and the metadata files."""
    subjects = tuple(mf.Subject(it.subject_id, it.source, patient_id=it.group) for it in items)
    # The size bound guards the scan presets' counts; image folders keep the plain remainder rule.
    manifest = mf.assign_splits(mf.Manifest(subjects), counts=split_counts,
                                fractions=split_fractions, seed=seed, allow_large_last_split=True)
    by_id = {it.subject_id: it for it in items}
    num_seg = max(len(seg_classes), 1)
    plans, rows, splits = [], [], {}
    for split, members in sorted(mf.split_of(manifest.subjects).items()):
        n = min(num_shards, len(members))
        for k in range(n):
            ids = [s.subject_id for s in members[k::n]]
            plans.append((split, schema.shard_name(split, k, n), ids))
            rows += [{"subject_id": i, "split": split, "shard": plans[-1][1], "slices": 1,
                      "source": by_id[i].source} for i in ids]
        splits[split] = {"subjects": sorted(s.subject_id for s in members),
                         "slices": len(members), "shards": n, "complete": True}
    os.makedirs(out_dir, exist_ok=True)
    for split, name, ids in tqdm(plans, desc="writing shards", unit="shard", file=sys.stderr,
                                 disable=not progress):
        fp = hashlib.sha1(json.dumps([image_size, num_seg, [by_id[i].key for i in ids]])
                          .encode()).hexdigest()
        record = os.path.join(out_dir, RECORD_DIR, name + ".json")
        if os.path.exists(os.path.join(out_dir, name)) and os.path.exists(record):
            with open(record) as f:
                if json.load(f).get("fingerprint") == fp:
                    continue
        shards.write_shard(os.path.join(out_dir, name), _examples([by_id[i] for i in ids],
                                                                  num_seg))
        write_json_atomic(record, {"fingerprint": fp, "subjects": ids})
    _remove_stale(out_dir, {name for _, name, _ in plans})
    meta = {"image_size": [image_size, image_size], "channels": 3,
            "num_mask_classes": 1, "mask_classes": ["background"],
            "num_tissue_classes": num_seg, "tissue_classes": list(seg_classes) or ["background"],
            "presence_labels": list(presence_labels), "splits": splits,
            "ignore_class": (list(seg_classes).index(IGNORE_CLASS)
                             if IGNORE_CLASS in seg_classes else None),
            "preprocessing": preprocessing or {}, "tool_version": TOOL_VERSION,
            "quant_max": schema.DEFAULT_QUANT_MAX, "synthetic": bool(synthetic),
            "complete": True, "errors": 0}
    record = shards.write_dataset_json(out_dir, meta)
    write_csv_atomic(os.path.join(out_dir, schema.SUBJECTS_CSV),
                     pd.DataFrame(sorted(rows, key=lambda r: (r["split"], r["subject_id"]))))
    return record


def _examples(items: Sequence[ImageItem], num_seg: int) -> Iterator[bytes]:
    for it in items:
        rgb, labels = it.load()
        if labels is not None and labels.max() >= num_seg:
            raise InputError(it.subject_id, it.source,
                             f"mask class {labels.max()} >= {num_seg} classes")
        yield schema.make_example(subject_id=it.subject_id, slice_index=0, image=rgb,
                                  voxel_size=(1.0, 1.0, 1.0), mask=None, num_mask_classes=1,
                                  tissue=labels, num_tissue_classes=num_seg,
                                  presence=it.presence)


def _remove_stale(out_dir: str, wanted: set[str]) -> None:
    for path in glob.glob(os.path.join(out_dir, "*-*-of-*.tfrecord")):
        if os.path.basename(path) not in wanted:
            os.remove(path)
