"""Fine-tuning modes with the tiny networks: a frozen encoder stays exactly as initialised
(weights and batch-norm statistics) while the decoder trains, unfreezing after N epochs
trains it, the encoder LR multiplier against a hand-computed Adam step, resume mid-freeze
and after unfreezing, the random-encoder source, and the records of a frozen run."""
import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tl_keras.models.presets import build_tiny_models
from tl_keras.training.config import FinetuneConfig


def _batch(data_dir):
    from tl_keras.data.dataset import build_dataset
    return next(iter(build_dataset(data_dir, "train", "target", 2, training=False,
                                   input_channels=3)))


def _values(variables):
    return [np.array(v.numpy()) for v in variables]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def _mode_and_steps(config, tm, total, steps_per_epoch=2):
    """The run's optimizer, encoder mode and step selection, as train() builds them."""
    from tl_keras.training import freezing, losses
    from tl_keras.training.runs import make_optimizer
    from tl_keras.training.tasks import StepContext, supervised
    optimizer = make_optimizer(config)
    mode = freezing.encoder_mode(config, tm, steps_per_epoch, total,
                                 lambda m, o: make_optimizer(config, multiplier=m, offset=o))
    optimizer.build(mode.other_variables)
    loss = lambda y, out: losses.segmentation_loss(y, out, class_weights=None)  # noqa: E731
    ctx = StepContext(config, tm, optimizer, {}, loss, tf.distribute.get_strategy(), mode)
    return optimizer, mode, supervised(ctx)


def test_frozen_then_unfrozen_encoder_weights_and_batch_norm(tiny_data_dir):
    """Frozen for the first epoch (2 steps): encoder weights and BN moving statistics
    unchanged, decoder trained; the next steps change both (BN statistics included)."""
    import keras
    from tl_keras.models.small import tiny_task_models
    keras.utils.set_random_seed(0)
    tm = tiny_task_models("target", 32, 3, 2)
    config = FinetuneConfig(init_from="random", freeze_encoder=True, freeze_epochs=1,
                            epochs=2, learning_rate=1e-2)
    _, mode, step_for = _mode_and_steps(config, tm, total=4)
    assert mode.freeze_steps == 2 and mode.optimizer is not None
    stats = [v for v in tm.encoder.weights if "moving" in v.path]
    assert len(stats) == 8  # four BN layers
    enc0, stats0, dec0 = (_values(tm.encoder.weights), _values(stats),
                          _values(tm.decoder.weights))
    x, y = _batch(tiny_data_dir)
    for s in range(2):
        step_for(s)(x, y)
    assert not tm.encoder.trainable  # batch norm in inference mode while frozen
    assert _same(_values(tm.encoder.weights), enc0)
    assert not _same(_values(tm.decoder.weights), dec0)
    for s in range(2, 4):
        step_for(s)(x, y)
    assert tm.encoder.trainable
    assert not any(np.array_equal(a, b.numpy()) for a, b in zip(stats0, stats))
    assert not any(np.array_equal(a, w.numpy()) for a, w in zip(enc0, tm.encoder.weights)
                   if "kernel" in w.path)
    assert int(mode.optimizer.iterations.numpy()) == 2  # its Adam state starts at unfreezing


def _adam_first_step(w, g, lr, wd, beta_2=0.999, eps=1e-8):
    """w after one step of Adam (bias-corrected, t = 1) with decoupled per-step decay."""
    return w * (1 - wd) - lr * g * np.sqrt(1 - beta_2) / (np.sqrt(1 - beta_2) * np.abs(g) + eps)


def test_encoder_lr_multiplier_one_step_against_hand_computed(tiny_data_dir):
    """--encoder_lr_multiplier 0.5: the encoder's first step is Adam's at half the LR, the
    decoder's at the LR; the decay is the same fixed 2e-4 * w for both groups."""
    import keras
    from tl_keras.models.small import tiny_task_models
    from tl_keras.training import losses
    keras.utils.set_random_seed(1)
    tm = tiny_task_models("target", 32, 3, 2)
    lr, wd = 1e-3, 2e-4
    config = FinetuneConfig(init_from="random", encoder_lr_multiplier=0.5, learning_rate=lr,
                            weight_decay=wd, batch_size=2)
    _, mode, step_for = _mode_and_steps(config, tm, total=4)
    assert mode.freeze_steps == 0
    x, y = _batch(tiny_data_dir)
    variables = mode.encoder_variables + mode.other_variables
    before = _values(variables)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.segmentation_loss(y, tm.model(x, training=True),
                                                      class_weights=None)) / 2
    grads = [g.numpy() for g in tape.gradient(loss, variables)]
    step_for(0)(x, y)
    n_enc = len(mode.encoder_variables)
    for i, (v, w, g) in enumerate(zip(variables, before, grads)):
        expected = _adam_first_step(w, g, lr * (0.5 if i < n_enc else 1.0), wd)
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-5, atol=1e-8, err_msg=v.path)
    # the two groups really moved by different amounts
    enc_move = np.abs(variables[0].numpy() - before[0] * (1 - wd)).max()
    assert enc_move == pytest.approx(0.5 * lr, rel=1e-2)


def _finetune(tmp_path, name, data_dir, **fields):
    from tl_keras.training.finetuning import run_finetune
    # float32 spelled out: a module-scoped fixture runs before conftest's autouse
    # "auto means float32" patch would apply.
    c = FinetuneConfig(data_dir=data_dir, model_dir=str(tmp_path / name), batch_size=2,
                       validate=False, class_weights="none", deterministic=True,
                       mixed_precision="none",
                       **{"init_from": "random", "max_steps": 2, **fields})
    return c, run_finetune(c, build_tiny_models)


def _export_weights(model_dir):
    from tl_keras.models.export import load_exported
    model, meta = load_exported(model_dir)
    return {w.path: w.numpy() for w in model.weights}, meta


def _initial_weights(config):
    """The networks a run of ``config`` starts from (same seeding as train())."""
    import keras
    from tl_keras.training.strategy import set_determinism
    from tfrecords_tools.schema import read_meta
    keras.backend.clear_session()
    set_determinism(config.seed, config.deterministic)
    tm = build_tiny_models(config, read_meta(config.data_dir), network="target", num_outputs=2)
    return {w.path: w.numpy() for w in tm.model.weights}, tm


def test_frozen_random_run_records_and_keeps_its_seeded_encoder(tiny_data_dir, tmp_path):
    config, result = _finetune(tmp_path, "a", tiny_data_dir, freeze_encoder=True, seed=4)
    assert result["source_label"] == "random encoder (frozen)"
    assert (result["source_task"], result["freeze_encoder"], result["freeze_epochs"],
            result["encoder_lr_multiplier"]) == ("random", True, 0, 1.0)
    weights, meta = _export_weights(config.model_dir)
    assert (meta.source_label, meta.freeze_encoder) == ("random encoder (frozen)", True)
    initial, tm = _initial_weights(config)
    encoder = {w.path for w in tm.encoder.weights}
    assert weights.keys() == initial.keys() and len(encoder) == 22
    for path in weights:  # the encoder (BN statistics included) as initialised, not the rest
        assert np.array_equal(weights[path], initial[path]) == (path in encoder), path
    # --seed seeds the random encoder: another seed, another encoder
    other, _ = _finetune(tmp_path, "b", tiny_data_dir, freeze_encoder=True, seed=5)
    weights_b, _ = _export_weights(other.model_dir)
    assert not any(np.array_equal(weights[p], weights_b[p]) for p in encoder if "kernel" in p)
    record = json.load(open(os.path.join(config.model_dir, "result.json")))
    assert record["source_label"] == "random encoder (frozen)"


def _checkpoint(model_dir):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if not k.startswith("_CHECKPOINTABLE")}


class _Crash(Exception):
    pass


#: 2 epochs of 3 steps (2 subjects, 6 slices), frozen for the first, encoder LR x0.5.
RESUME_FIELDS = dict(freeze_encoder=True, freeze_epochs=1, encoder_lr_multiplier=0.5,
                     max_steps=0, epochs=2, train_subjects=2, checkpoint_every=2,
                     keep_checkpoints_after_done=True, init_from="random")


@pytest.fixture(scope="module")
def uninterrupted(tiny_data_dir, tmp_path_factory):
    reference, _ = _finetune(tmp_path_factory.mktemp("ref"), "run", tiny_data_dir,
                             **RESUME_FIELDS)
    return _checkpoint(reference.model_dir)


@pytest.mark.parametrize("crash_at", [2, 4])
def test_resume_mid_freeze_or_after_unfreezing_equals_uninterrupted(tiny_data_dir, tmp_path,
                                                                     monkeypatch, crash_at,
                                                                     uninterrupted):
    """A run stopped after its checkpoint at step 2 (frozen) or 4 (released at 3) and rerun
    ends with the weights, BN statistics and both optimizers' states of the uninterrupted
    run."""
    from tl_keras.training.checkpointing import RunCheckpoint
    save = RunCheckpoint.save

    def crashing_save(self):
        path = save(self)
        if int(self.step.numpy()) == crash_at:
            raise _Crash(path)
        return path
    monkeypatch.setattr(RunCheckpoint, "save", crashing_save)
    with pytest.raises(_Crash):
        _finetune(tmp_path, "run", tiny_data_dir, **RESUME_FIELDS)
    monkeypatch.setattr(RunCheckpoint, "save", save)
    resumed, result = _finetune(tmp_path, "run", tiny_data_dir, **RESUME_FIELDS)
    assert result["steps"] == 6
    assert result["source_label"] == "random encoder (frozen 1 epoch, encoder LR x0.5)"
    a, b = uninterrupted, _checkpoint(resumed.model_dir)
    assert a.keys() == b.keys() and any(k.startswith("encoder_optimizer/") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    iterations = {k.split("/")[0]: int(v) for k, v in a.items() if "/_iterations/" in k}
    assert iterations == {"optimizer": 6, "encoder_optimizer": 3}, iterations


@pytest.fixture(scope="module")
def grey_export(tmp_path_factory):
    """A fine-tuning run whose export takes 1-channel input (only model.json is read)."""
    from tl_keras.models.export import ExportMeta, save_exported
    from tl_keras.models.small import tiny_task_models
    run = str(tmp_path_factory.mktemp("grey") / "run")
    save_exported(tiny_task_models("target", 32, 1, 2).model, run,
                  ExportMeta(image_size=(32, 32), input_channels=1, num_classes=2))
    return run


@pytest.mark.parametrize("module,args,message", [
    ("tl_keras.finetune", ["--freeze_encoder"], "the frozen random-encoder control is "
                                                "--init_from random"),
    ("tl_keras.finetune", ["--freeze_epochs=2"], "applies only with --freeze_encoder"),
    ("tl_keras.finetune", ["--init_from=random", "--freeze_encoder", "--freeze_epochs=3",
                           "--epochs=3"], "--freeze_epochs 0 freezes the whole run"),
    ("tl_keras.finetune", ["--encoder_lr_multiplier=0"], "must be > 0"),
    ("tl_keras.finetune", ["--init_from=random", "--freeze_encoder",
                           "--encoder_lr_multiplier=0.1"], "has no effect"),
    ("tl_keras.finetune", ["--init_from=random", "--freeze_encoder",
                           "--mixed_precision=float16"], "use bfloat16"),
    ("tl_keras.finetune", ["--init_from=random", "--init_decoder"], "has no decoder"),
    ("tl_keras.finetune", ["--init_from=GREY"], "pass --input_channels 1"),
    ("tl_keras.sweep", ["--out_dir=OUT", "--sources=scratch+frozen", "--set_sizes=2",
                        "--repeats=1"], "--init_from random"),
])
def test_bad_mode_flags_are_one_line_and_write_nothing(tiny_data_dir, tmp_path, grey_export,
                                                       capsys, module, args, message):
    import importlib
    args = [a.replace("GREY", grey_export).replace("OUT", str(tmp_path / "run"))
            for a in args]
    cli = importlib.import_module(module)  # in-process: main(argv) returns the exit code
    code = cli.main([module, f"--data_dir={tiny_data_dir}", f"--model_dir={tmp_path / 'run'}",
                     *args])
    err = capsys.readouterr().err
    assert code == 1, err[-2000:]
    lines = [l for l in err.splitlines() if l.startswith(f"{module}: error:")]
    assert len(lines) == 1 and message in lines[0], err[-2000:]
    assert "Traceback" not in err
    assert not os.path.exists(tmp_path / "run")


def test_sweep_with_frozen_sources_reports_each_as_its_own(tiny_data_dir, tmp_path):
    """scratch, random+frozen and an encoder+frozen in one sweep: the evaluation tables and
    the sweep CSV carry each run's label, so the report has three sources, each frozen run
    paired with scratch."""
    import pandas as pd
    from tl_keras.evaluation.study_report import load_results, source_table
    from tl_keras.models.small import tiny_encoder
    from tl_keras.studies import sweeps
    from tl_keras.weights import save_encoder
    enc = str(tmp_path / "restoration" / "encoder_best")
    save_encoder(tiny_encoder(32, 3), enc, source_task="restoration", domain="t1")
    ft = FinetuneConfig(data_dir=tiny_data_dir, batch_size=2, max_steps=1, validate=False,
                        class_weights="none", mixed_precision="none")
    config = sweeps.SweepConfig(
        out_dir=str(tmp_path / "sweep"), set_sizes=(2,), repeats=1, finetune=ft,
        sources=sweeps.parse_sources(["scratch", "random+frozen", f"rest={enc}+frozen"]))
    out = sweeps.run_sweep(config, build_tiny_models)
    assert not out["failed"] and len(out["ran"]) == 3
    table = pd.read_csv(out["csv"]).set_index("source")
    assert table.loc["random_frozen", "source_label"] == "random encoder (frozen)"
    assert bool(table.loc["rest", "freeze_encoder"]) and not bool(
        table.loc["scratch", "freeze_encoder"])
    runs = load_results([config.out_dir]).runs  # the evaluations' summary.csv files
    labels = {"scratch", "random encoder (frozen)", "t1 restoration (frozen)"}
    assert set(runs["source"]) == labels
    pairs = source_table(runs).set_index("source")["n_pairs"]
    assert pairs["random encoder (frozen)"] == pairs["t1 restoration (frozen)"] == 1
