"""CLI: natural RGB images -> the same TFRecord shard format (unequal-domain pre-training).

::

    python -m tfrecords_tools.convert_images --image_dir D [--mask_dir M] [--labels_csv C] \\
        --out_dir O --image_size 256
    python -m tfrecords_tools.convert_images --taskonomy_dir T --out_dir O --image_size 256
    python -m tfrecords_tools.convert_images --from_skimage_samples --num_images 64 --out_dir O

What each example holds, how images are resized and the ignore label:
``tfrecords_tools.images.dataset`` and docs/conversion.md.
"""
from __future__ import annotations

import dataclasses
import os
import sys

from absl import flags

from tfrecords_tools.conversion import outdir
from tfrecords_tools.images.dataset import folder_items, image_items, write_image_dataset
from tfrecords_tools.images.taskonomy_layout import building_of, taskonomy_pairs
from tfrecords_tools.manifests import manifest as mf
from tfrecords_tools.synthetic.natural_samples import convert_skimage_samples
from tl_common import cli, lock, paths


def define_flags(flag_values: flags.FlagValues) -> None:
    """Define the absl flags of the CLI on ``flag_values``."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("image_dir", "", "Folder of RGB images (png, jpg, bmp, tif).", **fv)
    flags.DEFINE_string("mask_dir", "", "Segmentation masks with the images' file stems "
                        "(2D integer PNG, class per pixel).", **fv)
    flags.DEFINE_string("labels_csv", "", "CSV file,class of image class labels "
                        "(several rows per file: multi-label).", **fv)
    flags.DEFINE_boolean("from_skimage_samples", False, "Build the offline example from "
                         "scikit-image's bundled photographs instead of --image_dir.", **fv)
    flags.DEFINE_integer("num_images", 64, "Images generated from the skimage samples.", **fv)
    flags.DEFINE_integer("num_seg_classes", 8, "Colour-cluster classes of the skimage samples.",
                         **fv)
    flags.DEFINE_string("out_dir", None, "Output folder.", **fv)
    flags.DEFINE_integer("image_size", 256, "Output side in pixels.", **fv)
    flags.DEFINE_integer("num_shards", 4, "Shards per split.", **fv)
    flags.DEFINE_string("splits", "train=0.8,val=0.1,test=0.1", "Split counts or fractions.", **fv)
    flags.DEFINE_integer("seed", 0, "Seed of the split (and of the sample augmentation).", **fv)
    flags.DEFINE_boolean("synthetic", False, "Mark a folder data set synthetic.", **fv)
    flags.DEFINE_boolean("progress", True, "Show a progress bar.", **fv)
    flags.DEFINE_string("taskonomy_dir", "", "Taskonomy folder (one folder per domain in each "
                        "building, point_<i>_view_<j>_domain_<d>.png), instead of --image_dir.",
                        **fv)
    flags.DEFINE_string("image_domain", "rgb", "--taskonomy_dir: domain of the images.", **fv)
    flags.DEFINE_string("mask_domain", "segmentsemantic", "--taskonomy_dir: domain of the "
                        "segmentation labels ('' = none).", **fv)
    flags.DEFINE_integer("ignore_label", None, "Mask value whose pixels are left out of the "
                         "loss (stored as the last class, 'ignore'). Default: none; 0 with "
                         "--taskonomy_dir (Taskonomy's unlabelled pixels); -1 = none.", **fv)


@dataclasses.dataclass(frozen=True)
class ImageFlags:
    """The parsed command line."""
    image_dir: str
    mask_dir: str
    labels_csv: str
    from_skimage_samples: bool
    num_images: int
    num_seg_classes: int
    out_dir: str
    image_size: int
    num_shards: int
    splits: str
    seed: int
    synthetic: bool
    progress: bool
    taskonomy_dir: str = ""
    image_domain: str = "rgb"
    mask_domain: str = "segmentsemantic"
    ignore_label: int | None = None


def run_flags(cfg: ImageFlags) -> dict:
    """Convert as the CLI does, from a frozen ImageFlags."""
    counts, fractions = mf.parse_split_spec(cfg.splits)
    common = dict(image_size=cfg.image_size, num_shards=cfg.num_shards, split_counts=counts,
                  split_fractions=fractions, seed=cfg.seed, progress=cfg.progress)
    if cfg.from_skimage_samples + bool(cfg.image_dir) + bool(cfg.taskonomy_dir) != 1:
        raise cli.FlagError("give exactly one of --image_dir, --taskonomy_dir or "
                         "--from_skimage_samples")
    if cfg.from_skimage_samples:
        return convert_skimage_samples(cfg.out_dir, num_images=cfg.num_images,
                                       num_classes=cfg.num_seg_classes, **common)
    ignore = cfg.ignore_label if cfg.ignore_label is not None else (
        0 if cfg.taskonomy_dir else -1)
    ignore = None if ignore < 0 else ignore
    if cfg.taskonomy_dir:
        pairs = taskonomy_pairs(cfg.taskonomy_dir, cfg.image_domain, cfg.mask_domain)
        # Split by building: the views of one point (and one building) look alike.
        items, seg, presence = image_items(pairs, cfg.image_size, labels_csv=cfg.labels_csv,
                                           ignore_label=ignore, with_masks=bool(cfg.mask_domain),
                                           groups={sid: building_of(sid) or None
                                                   for sid, _, _ in pairs})
    else:
        items, seg, presence = folder_items(cfg.image_dir, cfg.image_size,
                                            mask_dir=cfg.mask_dir, labels_csv=cfg.labels_csv,
                                            ignore_label=ignore)
    pre = {"kind": "natural_images", "image_dir": os.path.abspath(cfg.image_dir or
                                                                  cfg.taskonomy_dir),
           "layout": "taskonomy" if cfg.taskonomy_dir else "flat",
           "image_domain": cfg.image_domain if cfg.taskonomy_dir else "",
           "mask_domain": cfg.mask_domain if cfg.taskonomy_dir else "",
           "ignore_label": ignore,
           "mask_dir": cfg.mask_dir, "labels_csv": cfg.labels_csv, "image_size": cfg.image_size,
           "resize": "skimage.transform.resize order=1 (labels order=0), no anti-aliasing",
           "split_seed": cfg.seed, "splits": cfg.splits}
    return write_image_dataset(items, cfg.out_dir, seg_classes=seg, presence_labels=presence,
                               synthetic=cfg.synthetic, preprocessing=pre, **common)


def run(f: flags.FlagValues, args) -> None:
    """Convert as the flags say, one conversion at a time per --out_dir
    (docs/conversion.md, Reliability)."""
    cfg = ImageFlags(**{field.name: getattr(f, field.name)
                        for field in dataclasses.fields(ImageFlags)})
    for flag in ("image_dir", "mask_dir", "taskonomy_dir", "labels_csv"):
        path = getattr(cfg, flag)
        if path and not os.path.exists(path):  # before anything is created
            raise mf.ManifestError(f"{path}: --{flag} does not exist")
    outdir.check_folder(os.path.abspath(cfg.out_dir))
    paths.refuse_overlap("--out_dir", cfg.out_dir, [
        ("--image_dir", cfg.image_dir), ("--mask_dir", cfg.mask_dir),
        ("--labels_csv", cfg.labels_csv), ("--taskonomy_dir", cfg.taskonomy_dir)],
        outdir.OutDirError)
    with lock.acquire(os.path.abspath(cfg.out_dir)):
        meta = run_flags(cfg)
    counts = ", ".join(f"{k}: {v.slices}" for k, v in sorted(meta.splits.items()))
    print(f"convert_images: {f.out_dir}: {counts} images")


FLAGS = cli.private_flags(define_flags, required=("out_dir",))
main = cli.make_main("convert_images", FLAGS, __doc__, run, tensorflow=True)

if __name__ == "__main__":
    sys.exit(main())
