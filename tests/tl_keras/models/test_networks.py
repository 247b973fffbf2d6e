"""Every network through the shared harness (tests/model_harness.py): exact size, output
shapes, serialisation round trips, bfloat16 forward pass. Layer names, TF-slim conventions
and task composition are tested in test_models.py and test_unet.py."""
import pytest

from tests.model_harness import preset_task_models, run_model_test

UNET_FEATURES_64 = [(32, 32, 64), (8, 8, 256), (4, 4, 512), (4, 4, 1024), (4, 4, 8)]


def _encoder():
    from tl_keras.models import build_encoder
    return build_encoder(64, 3)


def _decoder(variant, latent_shape=(2, 2, 8), out_channels=3):
    from tl_keras.models import build_decoder
    return lambda: build_decoder(latent_shape, out_channels, variant=variant)


def _discriminator(size, channels, variant):
    from tl_keras.models import build_discriminator
    return lambda: build_discriminator(size, channels, variant=variant)


def _head(latent_shape, outputs):
    from tl_keras.models import build_classification_head
    return lambda: build_classification_head(latent_shape, outputs)


def _unet_decoder():
    from tl_keras.models.unet import build_unet_decoder
    return build_unet_decoder(UNET_FEATURES_64, 64, 2)


def _preset(width, task, num_classes, **kw):
    return lambda: preset_task_models(task, 32, 1, num_classes, width=width, **kw).model


def _preset_discriminator(width):
    return lambda: preset_task_models("autoencoding", 32, 1, width=width).discriminator


# name: (build, input shape, output shape, parameters, variables or None, keyword arguments)
NETWORKS = {
    # ResNet-50 v1 + compress1 (23.56 M + 0.147 M, BN moving statistics included; the
    # same at every image size, test_models.py splits it at 256 px).
    "taskonomy_encoder": (_encoder, (64, 64, 3), (4, 4, 8), 23_708_640, 270, {}),
    "taskonomy_decoder": (_decoder("taskonomy"), (2, 2, 8), (32, 32, 3), 16_460_211, 67, {}),
    "paper_decoder": (_decoder("paper", out_channels=2), (2, 2, 8), (32, 32, 2), 1_806_946,
                      47, {}),
    # Skip decoder fed by the 64 px Taskonomy encoder's stages (count derived in
    # test_unet.py); its output conv computes in float32.
    "unet_decoder": (_unet_decoder, UNET_FEATURES_64, (64, 64, 2), 4_461_474, None,
                     {"float32_output": True}),
    # Flatten(16x16x8 = 2048) -> dense 2048 (no bias) + BN (4 x 2048) -> dense 1000.
    "classification_head": (_head((16, 16, 8), 1000), (16, 16, 8), (1000,),
                            2048 * 2048 + 4 * 2048 + 2048 * 1000 + 1000, 7, {}),
    "taskonomy_discriminator": (_discriminator(256, 6, "taskonomy"), (256, 256, 6), (4, 4, 1),
                                3_142_593, 19, {}),
    "paper_discriminator": (_discriminator(32, 4, "paper"), (32, 32, 4), (2, 2, 1), 3_139_393,
                            19, {}),
    # The presets: compact (width 4, the quickstart's) with either decoder, tiny (width 1)
    # for every task; one builder, so the other combinations add nothing.
    "compact_target": (_preset(4, "target", 2), (32, 32, 1), (32, 32, 2), 163_562, 28,
                       {"float32_output": True}),
    "compact_target_unet": (_preset(4, "target", 2, decoder_variant="unet"), (32, 32, 1),
                            (32, 32, 2), 402_250, 69, {"float32_output": True, "export": True}),
    "tiny_target": (_preset(1, "target", 2), (32, 32, 1), (32, 32, 2), 11_522, 28,
                    {"float32_output": True}),
    "tiny_classification": (_preset(1, "classification", 3), (32, 32, 1), (3,), 6_291, 24,
                            {"float32_output": True}),
    "tiny_autoencoding": (_preset(1, "autoencoding", None), (32, 32, 1), (32, 32, 1), 11_449,
                          28, {"float32_output": True}),
    # One 3x3/2 conv (2 -> 8, no bias) + BN, a 3x3 logits conv (8 -> 1) with bias.
    "tiny_discriminator": (_preset_discriminator(1), (32, 32, 2), (16, 16, 1),
                           9 * 2 * 8 + 4 * 8 + 9 * 8 + 1, 7, {"float32_output": True}),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_network(name, tmp_path):
    build, input_shape, output_shape, params, variables, kw = NETWORKS[name]
    run_model_test(build, input_shape=input_shape, output_shape=output_shape,
                   num_params=params, num_variables=variables, tmp_dir=tmp_path, **kw)
