"""``--network`` on pretrain, finetune and sweep: one registry (tl_keras.models.presets),
``auto`` resolved from ``--init_from``, a contradiction refused in one line."""
import json
import os

import pytest

from tl_keras.models import presets
from tl_keras.training.config import ConfigError, FinetuneConfig, PretrainConfig
from tl_keras.training.validation import resolve, resolve_network


def _flags(model_dir):
    return json.load(open(os.path.join(model_dir, "flags.json")))["flags"]


def test_tiny_pretrain_then_finetune_through_the_clis(tiny_data_dir, tmp_path, capsys):
    """The exported encoder records its network; fine-tuning from it with --network auto
    builds that network (a Taskonomy encoder would not load the tiny weights)."""
    from tl_keras import finetune, pretrain
    pre, ft = tmp_path / "pre", tmp_path / "ft"
    common = [f"--data_dir={tiny_data_dir}", "--batch_size=2", "--max_steps=2",
              "--log_every=1", "--deterministic"]
    assert pretrain.main(["pretrain", *common, f"--model_dir={pre}", "--network=tiny"]) == 0
    encoder = pre / "encoder_best"
    meta = json.load(open(encoder / "encoder.json"))
    assert (meta["network"], meta["source_task"]) == ("tiny", "segmentation")
    assert _flags(pre)["network"] == "tiny"
    assert finetune.main(["finetune", *common, f"--model_dir={ft}", f"--init_from={encoder}",
                          "--noevaluate"]) == 0
    assert _flags(ft)["network"] == "tiny"  # auto, resolved from encoder.json
    result = json.load(open(ft / "result.json"))
    assert result["steps"] == 2 and "matched" in capsys.readouterr().out
    # An explicit network the source contradicts: one line, exit 1, nothing written.
    other = tmp_path / "other"
    assert finetune.main(["finetune", *common, f"--model_dir={other}",
                          f"--init_from={encoder}", "--network=compact"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"--network=compact but --init_from {encoder} holds a tiny encoder "
                        "(leave --network=auto, or pass --network=tiny)"), err
    assert len(err.splitlines()) == 1 and not other.exists()
    assert finetune.main(["finetune", *common, f"--model_dir={other}",
                          "--network=resnet"]) == 1
    assert "--network='resnet' is not one of auto, taskonomy, compact, tiny" in \
        capsys.readouterr().err


def test_auto_resolution(tmp_path):
    from tl_keras.models.small import tiny_encoder
    from tl_keras.weights import save_encoder
    assert resolve_network(PretrainConfig()) == "taskonomy"
    assert resolve_network(PretrainConfig(network="compact")) == "compact"
    assert resolve_network(FinetuneConfig()) == "taskonomy"  # scratch
    ckpt = "taskonomy:/ckpts/autoencoder/model.permanent-ckpt"  # parsed, not read
    assert resolve_network(FinetuneConfig(init_from=ckpt)) == "taskonomy"
    with pytest.raises(ConfigError, match="--network=tiny but --init_from taskonomy:"):
        resolve_network(FinetuneConfig(init_from=ckpt, network="tiny"))
    recorded, old = str(tmp_path / "recorded"), str(tmp_path / "old")
    save_encoder(tiny_encoder(32, 3), recorded, source_task="segmentation", domain="t1",
                 network="compact")
    save_encoder(tiny_encoder(32, 3), old, source_task="segmentation", domain="t1")
    assert resolve_network(FinetuneConfig(init_from=recorded)) == "compact"
    assert resolve_network(FinetuneConfig(init_from=old)) == "taskonomy"  # says nothing
    assert resolve_network(FinetuneConfig(init_from=old, network="tiny")) == "tiny"
    config = resolve(PretrainConfig(task="autoencoding"))
    assert config.network == "taskonomy" and config.task_options.disc_start_step == 26000
    assert resolve(config) == config


def test_a_registered_prefix_builds_and_is_checked(monkeypatch):
    """The hook helper modules use for network families (``keras_hub:PRESET``)."""
    monkeypatch.setattr(presets, "_PREFIXES", {})
    calls = []

    def build(name, kind, image_size, input_channels, num_outputs, **kw):
        calls.append((name, kind, image_size))
        return presets.build_models("tiny", kind, image_size, input_channels, num_outputs)

    assert presets.check_network("fam:x") is not None
    presets.register_network_prefix("fam:", build,
                                    check=lambda n, decoder_variant=None:
                                    None if n != "bad" else "fam:bad is bad")
    with pytest.raises(ValueError, match="must end with ':' and be new"):
        presets.register_network_prefix("fam:", build)
    assert "fam:NAME" in presets.network_choices()
    assert presets.check_network("fam:ok") is None
    assert presets.check_network("fam:bad") == "fam:bad is bad"
    assert presets.check_network("fam:").startswith("--network='fam:' is not one of")
    tm = presets.build_models("fam:ok", "target", 32, 1, 2)
    assert calls == [("ok", "target", 32)] and tm.network == "fam:ok"
    assert tm.model.output_shape == (None, 32, 32, 2)
