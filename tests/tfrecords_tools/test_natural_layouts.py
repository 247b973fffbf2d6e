"""Natural-image releases as distributed: Taskonomy split by building (its
``segment_semantic/`` folders), ImageNet's per-synset folders."""
import numpy as np
import pandas as pd

from tfrecords_tools import convert_images as ci, schema
from tfrecords_tools.images import dataset as images
from tfrecords_tools.images.taskonomy_layout import building_of, taskonomy_pairs


def _png(path, array):
    from skimage import io
    path.parent.mkdir(parents=True, exist_ok=True)
    io.imsave(str(path), array, check_contrast=False)


def _taskonomy(root, buildings=("allensville", "beechwood", "cosmos", "darden"), views=3):
    rng = np.random.default_rng(0)
    for b in buildings:
        for v in range(views):
            stem = f"point_{v // 2}_view_{v % 2}_domain_"
            _png(root / b / "rgb" / f"{stem}rgb.png", (rng.random((16, 16, 3)) * 255)
                 .astype(np.uint8))
            _png(root / b / "segment_semantic" / f"{stem}segmentsemantic.png",
                 rng.integers(0, 4, (16, 16)).astype(np.uint8))


def test_taskonomy_release_folders_and_split_by_building(tmp_path):
    _taskonomy(tmp_path / "taskonomy")
    pairs = taskonomy_pairs(str(tmp_path / "taskonomy"))
    assert [sid for sid, _, _ in pairs][:3] == ["allensville_point_0_view_0",
                                               "allensville_point_0_view_1",
                                               "allensville_point_1_view_0"]
    assert all("segment_semantic" in mask for _, _, mask in pairs)
    for seed in range(4):
        out = tmp_path / f"out{seed}"
        ci.run_flags(ci.ImageFlags(
            image_dir="", mask_dir="", labels_csv="", from_skimage_samples=False, num_images=0,
            num_seg_classes=0, out_dir=str(out), image_size=16, num_shards=1,
            splits="train=0.5,test=0.5", seed=seed, synthetic=False, progress=False,
            taskonomy_dir=str(tmp_path / "taskonomy")))
        splits = schema.read_meta(str(out)).splits
        where = {}
        for split, info in splits.items():
            for sid in info.subjects:
                where.setdefault(building_of(sid), set()).add(split)
        assert len(where) == 4 and all(len(v) == 1 for v in where.values()), where
        assert {len(info.subjects) for info in splits.values()} == {6}


def test_imagenet_synset_folders(tmp_path):
    rng = np.random.default_rng(0)
    for synset in ("n03001627", "n04256520"):
        for i in range(2):
            _png(tmp_path / "train" / synset / f"{synset}_{1000 + i}.JPEG",
                 (rng.random((20, 24, 3)) * 255).astype(np.uint8))
    items, seg, presence = images.folder_items(str(tmp_path / "train"), 16)
    assert presence == ["n03001627", "n04256520"] and seg == []
    assert [(it.subject_id, it.presence) for it in items] == [
        ("n03001627_1000", (1.0, 0.0)), ("n03001627_1001", (1.0, 0.0)),
        ("n04256520_1000", (0.0, 1.0)), ("n04256520_1001", (0.0, 1.0))]
    # A labels CSV (the documented indoor-100 command) still names the classes.
    pd.DataFrame({"file": ["n03001627_1000.JPEG", "n03001627_1001.JPEG",
                           "n04256520_1000.JPEG", "n04256520_1001.JPEG"],
                  "class": ["chair", "chair", "sofa", "sofa"]}).to_csv(tmp_path / "l.csv",
                                                                      index=False)
    items, _, presence = images.folder_items(str(tmp_path / "train"), 16,
                                             labels_csv=str(tmp_path / "l.csv"))
    assert presence == ["chair", "sofa"] and items[2].presence == (0.0, 1.0)
    assert items[0].load()[0].shape == (16, 16, 3)
