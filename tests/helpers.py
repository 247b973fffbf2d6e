"""Test helpers: tiny synthetic shard data sets built in a temporary directory."""
from __future__ import annotations

import os

import numpy as np

from tfrecords_tools import schema, shards


def make_tiny_dataset(out_dir, *, size=32, channels=1, splits=None, slices_per_subject=3,
                      num_mask_classes=2, num_tissue_classes=4, num_presence=16, seed=0,
                      num_shards=2):
    """Write a small data set whose labels are simple functions of the image.

    The image holds a bright disc per slice; ``tissue`` bins intensity into
    classes, ``mask`` marks the disc, ``presence`` is a deterministic pattern.
    Returns the dataset.json contents.
    """
    rng = np.random.default_rng(seed)
    splits = splits or {"train": 4, "val": 2, "test": 2}
    meta = {"image_size": [size, size], "channels": channels,
            "num_mask_classes": num_mask_classes, "num_tissue_classes": num_tissue_classes,
            "mask_classes": [f"class{i}" for i in range(num_mask_classes)],
            "tissue_classes": [f"tissue{i}" for i in range(num_tissue_classes)],
            "presence_labels": [f"label{i}" for i in range(num_presence)],
            "splits": {}, "synthetic": True, "preprocessing": {"kind": "tiny-test"}}
    yy, xx = np.mgrid[:size, :size]
    for split, n_subj in splits.items():
        records = []
        subjects = [f"{split}{i:03d}" for i in range(n_subj)]
        for s in subjects:
            for k in range(slices_per_subject):
                cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
                r = rng.uniform(size * 0.1, size * 0.25)
                disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
                img = 0.2 + 0.1 * rng.random((size, size)) + 0.6 * disc
                img = np.clip(img, 0, 1)
                if channels == 3:
                    img = np.stack([img, img * 0.9, img * 0.8], -1)
                grey = img if img.ndim == 2 else img[..., 0]
                tissue = np.minimum((grey * num_tissue_classes).astype(int),
                                    num_tissue_classes - 1)
                mask = (disc.astype(int) * (1 + (k % (num_mask_classes - 1))))
                presence = ((np.arange(num_presence) + k) % 3 == 0).astype(float)
                records.append(schema.make_example(
                    subject_id=s, slice_index=k, image=img, mask=mask,
                    num_mask_classes=num_mask_classes, tissue=tissue,
                    num_tissue_classes=num_tissue_classes, presence=presence))
        n = min(num_shards, len(records))
        for i in range(n):
            shards.write_shard(os.path.join(out_dir, schema.shard_name(split, i, n)),
                               records[i::n])
        meta["splits"][split] = {"subjects": subjects, "slices": len(records), "shards": n}
    shards.write_dataset_json(out_dir, meta)
    return meta


def make_lesion_dataset(out_dir, *, size=32, splits=None, slices_per_subject=4, seed=0):
    """A 1-channel cohort of small dark 'lesions' at random places in a textured 'brain'.

    Each slice: an ellipse of intensity ~0.6 with noise (sd 0.08) on a black
    background; with probability 3/4 one or two lesions (radius 1.5-3 px,
    intensity ~0.35) anywhere inside it. Lesions cover ~1-2 % of the pixels and
    have no fixed location, so a location prior cannot segment them.
    Returns the dataset.json contents.
    """
    rng = np.random.default_rng(seed)
    splits = splits or {"train": 16, "val": 2, "test": 3}
    meta = {"image_size": [size, size], "channels": 1, "num_mask_classes": 2,
            "num_tissue_classes": 2, "mask_classes": ["background", "lesion"],
            "tissue_classes": ["background", "brain"], "presence_labels": ["brain"],
            "splits": {}, "synthetic": True, "preprocessing": {"kind": "lesion-test"}}
    yy, xx = np.mgrid[:size, :size]
    c = size / 2
    brain = ((yy - c) / (0.42 * size)) ** 2 + ((xx - c) / (0.36 * size)) ** 2 < 1
    inside = np.argwhere(((yy - c) / (0.32 * size)) ** 2 + ((xx - c) / (0.26 * size)) ** 2 < 1)
    for split, n_subj in splits.items():
        records, subjects = [], [f"{split}{i:03d}" for i in range(n_subj)]
        for s in subjects:
            for k in range(slices_per_subject):
                mask = np.zeros((size, size), int)
                for _ in range(rng.choice([0, 1, 1, 2])):
                    cy, cx = inside[rng.integers(len(inside))]
                    r = rng.uniform(1.5, 3.0)
                    mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2] = 1
                img = brain * (0.6 + 0.08 * rng.standard_normal((size, size)))
                img = np.clip(np.where(mask > 0, img - 0.25, img), 0, 1)
                records.append(schema.make_example(
                    subject_id=s, slice_index=k, image=img, mask=mask, num_mask_classes=2,
                    tissue=brain.astype(int), num_tissue_classes=2,
                    presence=np.ones(1)))
        for i in range(2):
            shards.write_shard(os.path.join(out_dir, schema.shard_name(split, i, 2)),
                               records[i::2])
        meta["splits"][split] = {"subjects": subjects, "slices": len(records), "shards": 2}
    shards.write_dataset_json(out_dir, meta)
    return meta
