"""The quickstart end to end (--tiny): every output exists and every figure is finite."""
import json
import math
import os

import pandas as pd
import pytest


@pytest.mark.slow
def test_tiny_quickstart_end_to_end(tmp_path):
    from tl_keras.quickstart import plan, run_quickstart
    config = plan(str(tmp_path / "qs"), tiny=True)
    written = run_quickstart(config)
    for name in ("table", "table_md", "curve", "curve_png", "detection", "detection_png",
                 "examples_png", "sweep_results", "runs", "summary_md"):
        assert name in written, f"quickstart did not write {name}"
        assert os.path.getsize(written[name]) > 0
    for png in ("curve_png", "detection_png", "examples_png"):
        with open(written[png], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    sweep = pd.read_csv(written["sweep_results"])
    from tl_keras.quickstart import SOURCES
    n_sources = len(config.sources)  # the default sources, scratch and the controls included
    assert {"t1_restoration", "random_frozen", "scratch"} <= set(config.sources)
    assert len(sweep) == n_sources * len(config.set_sizes) * config.repeats
    assert set(sweep["train_subjects"]) == set(config.set_sizes)
    for column in ("test_dice", "test_detection_rate_o0_v0", "test_detection_rate_o0.2_v0"):
        assert sweep[column].map(lambda v: math.isfinite(float(v))).all(), column
        assert sweep[column].between(0, 1).all(), column
    table = pd.read_csv(written["table"])  # a row per source and set size
    numeric = table[["train_subjects", "n_runs", "mean", "sd"]]
    assert len(table) == n_sources * len(config.set_sizes)
    assert numeric.map(lambda v: math.isfinite(float(v))).all().all()
    sources = table[table["source"] != "scratch"]  # every run has its scratch pair
    assert (sources["n_pairs"] == config.repeats).all()
    assert sources["diff_mean"].map(lambda v: math.isfinite(float(v))).all()
    detection = pd.read_csv(written["detection"])
    assert detection["mean"].between(0, 1).all()
    pretrained = [n for n in config.sources if not SOURCES[n].init_from]
    assert "t1_restoration" in pretrained and "random_frozen" not in pretrained
    for d in pretrained:
        assert os.path.exists(tmp_path / "qs" / "pretrain" / d / "encoder_last" / "encoder.json")
    assert os.path.exists(tmp_path / "qs" / "quickstart.json")
    # the fine-tuning cells ran with the study's decoder and loss (docs/decoders.md)
    cell = json.load(open(os.path.join(sweep["run_dir"].iloc[0], "flags.json")))["flags"]
    assert (cell["decoder_variant"], cell["loss"]) == (config.decoder_variant, config.loss)
    assert cell["mixed_precision"] == config.mixed_precision == "none"


def test_sources_flag_picks_registered_sources(tmp_path, capsys):
    from tl_keras import quickstart
    assert set(quickstart.DEFAULT_SOURCES) <= set(quickstart.SOURCES)
    assert quickstart.plan(str(tmp_path), tiny=False).sources == quickstart.DEFAULT_SOURCES
    assert quickstart.check_sources(["scratch", "t1_segmentation"]) == ("scratch",
                                                                        "t1_segmentation")
    assert quickstart.FLAGS["sources"].default == list(quickstart.DEFAULT_SOURCES)
    for sources, message in (("t1_segmentation", "must include scratch"),
                             ("scratch,imagenet", "unknown imagenet; known: t1_segmentation"),
                             ("scratch,scratch", "named twice")):
        workdir = tmp_path / "qs"
        code = quickstart.main(["quickstart", f"--workdir={workdir}", f"--sources={sources}"])
        err = capsys.readouterr().err
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
        assert not workdir.exists()  # refused before anything is written


def test_default_study_can_reach_a_verdict():
    """Every source has enough pairs for Holm over the default report's comparisons."""
    from tl_keras import quickstart
    from tl_keras.evaluation import stats
    c = quickstart.plan("qs", tiny=False)
    comparisons = (len(c.sources) - 1) * len(c.set_sizes)
    assert c.repeats >= stats.pairs_needed(comparisons) >= stats.MIN_PAIRS


def test_the_random_control_is_a_frozen_random_encoder():
    from tl_keras import quickstart
    (name, spec, mode), = quickstart.sweep_sources({"random_frozen": "random"})
    assert (name, spec) == ("random_frozen", "random") and mode["freeze_encoder"] is True
    (_, _, mode), = quickstart.sweep_sources({"scratch": "scratch"})
    assert mode is None
