"""Issue "today's sources through one decoder", done when: one sweep runs a keras-hub
source, a self-supervised source and the frozen random-encoder control beside scratch, each
encoder on its own network, and the report shows each as its own source with its paired
difference to scratch. Everything through the command-line modules, in-process."""
import os

import pandas as pd
import pytest

pytest.importorskip("keras_hub")


def test_hub_ssl_and_frozen_random_side_by_side(tiny_data_dir, hub_presets, tmp_path):
    from tl_keras import pretrain, report, sweep
    common = [f"--data_dir={tiny_data_dir}", "--batch_size=2", "--mixed_precision=none"]
    ssl_dir = tmp_path / "restoration"
    assert pretrain.main(["pretrain", *common, f"--model_dir={ssl_dir}", "--network=tiny",
                          "--task=restoration", "--max_steps=2", "--epochs=1"]) == 0
    encoder = ssl_dir / "encoder_last"
    assert (encoder / "encoder.json").exists()
    out = tmp_path / "sweep"
    sources = ",".join(["scratch", "random+frozen", f"ssl={encoder}",
                        f"hub=keras_hub:{hub_presets['resnet']}"])
    code = sweep.main(["sweep", *common, f"--out_dir={out}", "--network=tiny",
                       "--decoder_variant=unet", "--max_steps=1", "--novalidate",
                       "--class_weights=none", "--set_sizes=2", "--repeats=2",
                       f"--sources={sources}"])
    assert code == 0
    runs = pd.read_csv(out / "sweep_results.csv")
    networks = runs.groupby("source")["init_from"].first()
    assert len(runs) == 8 and set(networks.index) == {"scratch", "random_frozen", "ssl", "hub"}
    rep = tmp_path / "report"
    assert report.main(["report", f"--results={out}", f"--out_dir={rep}"]) == 0
    table = pd.read_csv(rep / "table.csv").set_index("source")
    labels = {"scratch", "random encoder (frozen)", "t1 restoration", "keras-hub resnet"}
    assert labels <= set(table.index), table.index.tolist()
    for label in labels - {"scratch"}:  # each paired with scratch on the same 2 subsets
        assert table.loc[label, "n_pairs"] == 2, table.loc[label].to_dict()
    assert os.path.exists(rep / "summary.md")
