"""End to end with the real Taskonomy networks at 32 px: pre-train two steps, fine-tune
one step from the exported encoder, export and evaluate. Slow (ResNet-50 + 15-layer
decoder: ~40 M parameters to trace and update)."""
import json
import os

import pytest


@pytest.mark.slow
def test_pretrain_then_finetune_with_taskonomy_networks(tiny_data_dir, tmp_path):
    from tl_keras.models.export import load_exported
    from tl_keras.studies import finetune_and_evaluate
    from tl_keras.training import FinetuneConfig, PretrainConfig, run_pretrain
    pre = PretrainConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path / "pre"), batch_size=2,
                         max_steps=2, validate=False, checkpoint_every=1)
    logs = run_pretrain(pre)
    assert logs["final_loss"] > 0
    encoder = os.path.join(pre.model_dir, "encoder_last")
    ft = FinetuneConfig(data_dir=tiny_data_dir, model_dir=str(tmp_path / "ft"), batch_size=2,
                        max_steps=1, validate=False, init_from=encoder, train_subjects=2)
    result = finetune_and_evaluate(ft)
    assert (result["source_task"], result["source_domain"]) == ("segmentation", "t1")
    model, meta = load_exported(ft.model_dir)
    assert meta.init_from == encoder and meta.num_classes == 2
    assert model.output_shape == (None, 32, 32, 2)
    assert json.load(open(os.path.join(ft.model_dir, "result.json")))["steps"] == 1
