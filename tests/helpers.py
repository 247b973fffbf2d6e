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
