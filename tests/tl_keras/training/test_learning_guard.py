"""Regression guard: with the quickstart's fine-tuning settings the compact network
learns small lesions at 16 subjects, i.e. beats the best constant (location-prior)
prediction by a wide margin (docs/decoders.md explains why it once did not)."""
import dataclasses

import numpy as np

from tests.helpers import make_lesion_dataset


def _location_prior_dice(train_masks, test_masks):
    """Test Dice of the best fixed mask: the k most often lesioned training pixels,
    k = the mean lesion area per slice (a location prior, the old failure mode)."""
    freq = train_masks.mean(0)
    k = max(int(round(train_masks.sum((1, 2)).mean())), 1)
    prior = np.zeros(freq.size, bool)
    prior[np.argsort(freq.ravel())[-k:]] = True
    prior = prior.reshape(freq.shape)
    scores = [2 * np.sum(prior & m) / (prior.sum() + m.sum()) for m in test_masks if m.any()]
    return float(np.mean(scores))


def _masks(data_dir, split, meta):
    from tl_keras.data.dataset import build_dataset
    ds = build_dataset(data_dir, split, "raw", 8, training=False, meta=meta)
    return np.concatenate([ex["mask"].numpy() for ex in ds]) > 0


def test_compact_network_beats_a_location_prior(tmp_path):
    from tl_keras.quickstart import QuickstartConfig
    from tl_keras.studies import finetune_and_evaluate
    from tl_keras.training import FinetuneConfig
    from tl_keras.models.presets import build_compact_models
    data = str(tmp_path / "data")
    meta = make_lesion_dataset(data)
    q = QuickstartConfig(workdir="")
    config = FinetuneConfig(
        data_dir=data, model_dir=str(tmp_path / "run"), target="stroke", input_channels=1,
        train_subjects=16, max_steps=50, epochs=1, batch_size=q.batch_size,
        learning_rate=q.learning_rate, decoder_variant=q.decoder_variant, loss=q.loss,
        class_weights=q.class_weights, foreground_weight=q.foreground_weight,
        mixed_precision=q.mixed_precision, validate=False,
        checkpoint_every=1000)
    result = finetune_and_evaluate(config, build_compact_models)
    baseline = _location_prior_dice(_masks(data, "train", meta), _masks(data, "test", meta))
    assert baseline < 0.2  # the cohort really has no fixed lesion location
    assert result["test_dice"] >= max(0.5, baseline + 0.3), (result["test_dice"], baseline)
