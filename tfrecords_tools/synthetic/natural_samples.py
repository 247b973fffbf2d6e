"""An offline natural-image data set from scikit-image's bundled photographs.

Synthetic, and says so in dataset.json. Only photographs shipped inside the
scikit-image package are used (nothing is downloaded). ``num_images`` images
are made by random square crops (30-100 % of the shorter side) and horizontal
flips, cycling over the photos so classes are balanced:

- class label (``presence``, one-hot) = index of the source photograph;
- segmentation labels (``tissue``) = ``num_classes`` colour clusters: k-means
  in CIELAB over the pixels of all photos (seeded), centroids ordered by
  lightness, each pixel of the lightly smoothed crop assigned to the nearest
  centroid. A stand-in for semantic classes, consistent across images.
"""
from __future__ import annotations

import functools
import hashlib

import numpy as np

from tfrecords_tools.dataset_meta import DatasetMeta
from tfrecords_tools.images.dataset import ImageItem, resize_rgb, write_image_dataset
from tl_common.cli import FlagError

# Colour photographs bundled with scikit-image (no pooch download needed).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
          "immunohistochemistry", "retina", "motorcycle")


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """One bundled photograph as (H, W, 3) uint8 (read-only)."""
    from skimage import data
    image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    image = np.ascontiguousarray(image[..., :3])
    image.setflags(write=False)
    return image


def colour_centroids(num_classes: int, seed: int, photos=PHOTOS) -> np.ndarray:
    """(num_classes, 3) CIELAB k-means centroids over all photos, darkest first."""
    from scipy.cluster.vq import kmeans2
    from skimage.color import rgb2lab
    pixels = np.concatenate([rgb2lab(resize_rgb(load_photo(p), 64)).reshape(-1, 3)
                             for p in photos])
    centroids, _ = kmeans2(pixels, num_classes, seed=np.random.default_rng(seed),
                           minit="++", iter=20)
    return centroids[np.argsort(centroids[:, 0])].astype(np.float32)


def colour_labels(rgb: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(S, S) uint8 index of the nearest centroid of each (smoothed) pixel."""
    from skimage.color import rgb2lab
    from skimage.filters import gaussian
    lab = rgb2lab(gaussian(rgb, sigma=1.0, channel_axis=-1))
    dist = ((lab[:, :, None, :] - centroids[None, None]) ** 2).sum(-1)
    return np.argmin(dist, axis=-1).astype(np.uint8)


def sample_items(num_images: int, image_size: int, num_classes: int, seed: int,
                 photos=PHOTOS) -> list[ImageItem]:
    """Deterministic augmented crops of the photos, with their labels."""
    centroids = colour_centroids(num_classes, seed, photos)
    digest = hashlib.sha1(centroids.tobytes()).hexdigest()[:12]
    rng = np.random.default_rng(seed)
    items = []
    for i in range(num_images):
        cls = i % len(photos)
        h, w = load_photo(photos[cls]).shape[:2]
        side = int(min(h, w) * rng.uniform(0.3, 1.0))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        flip = bool(rng.random() < 0.5)
        presence = tuple(float(k == cls) for k in range(len(photos)))
        items.append(ImageItem(
            subject_id=f"{photos[cls]}_{i:05d}",
            load=functools.partial(_crop, photos[cls], top, left, side, flip, image_size,
                                   centroids),
            presence=presence, source=f"skimage.data.{photos[cls]}",
            key=f"{photos[cls]}:{top}:{left}:{side}:{flip}:{digest}"))
    return items


def _crop(name, top, left, side, flip, size, centroids):
    crop = load_photo(name)[top:top + side, left:left + side]
    if flip:
        crop = crop[:, ::-1]
    rgb = resize_rgb(crop, size)
    return rgb, colour_labels(rgb, centroids)


def convert_skimage_samples(out_dir: str, *, num_images: int = 64, num_classes: int = 8,
                            image_size: int = 256, seed: int = 0, photos=PHOTOS,
                            **kwargs) -> DatasetMeta:
    """Write the skimage-sample data set to ``out_dir``; returns the dataset.json record.

    ``kwargs`` go to ``images.dataset.write_image_dataset`` (num_shards,
    split_counts, split_fractions, progress).
    """
    if num_images < 1 or num_classes < 2:
        raise FlagError("need num_images >= 1 and num_classes >= 2")
    items = sample_items(num_images, image_size, num_classes, seed, photos)
    pre = {"kind": "skimage_samples", "photos": list(photos), "num_images": num_images,
           "image_size": image_size, "seed": seed,
           "augmentation": "random square crop 30-100% of shorter side, horizontal flip p=0.5",
           "segmentation": f"{num_classes} CIELAB k-means colour clusters (darkest first)",
           "resize": "skimage.transform.resize order=1 (labels computed after resizing)"}
    return write_image_dataset(
        items, out_dir, seg_classes=[f"colour_{k}" for k in range(num_classes)],
        presence_labels=list(photos), image_size=image_size, seed=seed, synthetic=True,
        preprocessing=pre, **kwargs)
