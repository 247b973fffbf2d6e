"""Test support (no tests here): TF1 checkpoints with Taskonomy names, written the TF1 way,
and reference forward passes computed with plain ``tf.nn`` ops straight from the tensors.

The references are independent of ``tl_keras.models``: they only read checkpoint names.
"""
import numpy as np

UNITS = {1: 3, 2: 4, 3: 6, 4: 3}  # ResNet-50 units per block
WIDTH = {1: 64, 2: 128, 3: 256, 4: 512}  # bottleneck widths; output depth is 4x
STRIDED = {(1, 3), (2, 4)}  # (block, unit) holding the stride-2 3x3 conv
DECODER = ["conv2", "conv3", "conv4", "conv5", "conv6", "conv7", "deconv8", "conv9",
           "deconv10", "conv11", "deconv12", "conv13", "deconv14"]
DECODER_WIDTH = [1024, 1024, 512, 256, 256, 128, 64, 64, 32, 32, 16, 32, 16]


def _bn(out, scope, n, rng):
    out[f"{scope}/BatchNorm/gamma"] = rng.uniform(0.5, 1.5, n)
    out[f"{scope}/BatchNorm/beta"] = rng.normal(0, 0.1, n)
    out[f"{scope}/BatchNorm/moving_mean"] = rng.normal(0, 0.1, n)
    out[f"{scope}/BatchNorm/moving_variance"] = rng.uniform(0.5, 1.5, n)


def _kernel(rng, *shape, fan_in=None):
    fan_in = fan_in or int(np.prod(shape[:-1]))
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(1.0 / fan_in))


def encoder_tensors(rng, input_channels=3, latent=8):
    """Random Taskonomy encoder + compress1 tensors, BN statistics included."""
    t = {"encoder/conv1/weights": _kernel(rng, 7, 7, input_channels, 64)}
    _bn(t, "encoder/conv1", 64, rng)
    depth = 64
    for b, n in UNITS.items():
        for u in range(1, n + 1):
            s = f"encoder/block{b}/unit_{u}/bottleneck_v1"
            w = WIDTH[b]
            if u == 1:
                t[f"{s}/shortcut/weights"] = _kernel(rng, 1, 1, depth, 4 * w)
                _bn(t, f"{s}/shortcut", 4 * w, rng)
            for conv, shape in (("conv1", (1, 1, depth if u == 1 else 4 * w, w)),
                                ("conv2", (3, 3, w, w)), ("conv3", (1, 1, w, 4 * w))):
                t[f"{s}/{conv}/weights"] = _kernel(rng, *shape)
                _bn(t, f"{s}/{conv}", shape[-1], rng)
            t[f"{s}/conv3/BatchNorm/gamma"] *= 0.3  # keep the residual sum O(1)
        depth = 4 * WIDTH[b]
    t["compress1/weights"] = _kernel(rng, 3, 3, 2048, latent)
    _bn(t, "compress1", latent, rng)
    return {k: np.asarray(v, np.float32) for k, v in t.items()}


def decoder_tensors(rng, k, latent=8):
    t, cin = {}, latent
    for name, cout in zip(DECODER, DECODER_WIDTH):
        shape = (3, 3, cout, cin) if name.startswith("deconv") else (3, 3, cin, cout)
        t[f"decoder/{name}/weights"] = _kernel(rng, *shape, fan_in=9 * cin)
        _bn(t, f"decoder/{name}", cout, rng)
        cin = cout
    t["decoder/decoder_output/weights"] = _kernel(rng, 3, 3, cin, k)
    t["decoder/decoder_output/biases"] = rng.normal(0, 0.1, k)
    return {k_: np.asarray(v, np.float32) for k_, v in t.items()}


def discriminator_tensors(rng, cin):
    t = {"discriminator/conv1/weights": _kernel(rng, 5, 5, cin, 64),
         "discriminator/conv1/biases": rng.normal(0, 0.1, 64)}
    for name, shape in (("conv2", (5, 5, 64, 128)), ("conv3", (5, 5, 128, 256)),
                        ("conv4", (4, 4, 256, 512))):
        t[f"discriminator/{name}/weights"] = _kernel(rng, *shape)
        _bn(t, f"discriminator/{name}", shape[-1], rng)
    t["discriminator/conv5/weights"] = _kernel(rng, 4, 4, 512, 1)
    t["discriminator/conv5/biases"] = rng.normal(0, 0.1, 1)
    return {k: np.asarray(v, np.float32) for k, v in t.items()}


def head_tensors(rng, in_features, n):
    t = {"three_layer_fc_network/fc0/weights": _kernel(rng, in_features, 2048)}
    _bn(t, "three_layer_fc_network/fc0", 2048, rng)
    t["three_layer_fc_network/fc2/weights"] = _kernel(rng, 2048, n)
    t["three_layer_fc_network/fc2/biases"] = rng.normal(0, 0.1, n)
    return {k: np.asarray(v, np.float32) for k, v in t.items()}


def write_tf1_checkpoints(root, tensors, layouts, slots_for=(), step=1234):
    """Write several TF1 checkpoints from one ``tf.compat.v1`` graph with ``Saver``.

    Args:
      root: output directory.
      tensors: graph variable name -> value.
      layouts: checkpoint stem -> {name in the checkpoint: graph variable name}; graph
        names may also be ``<var>/Adam``, ``<var>/Adam_1`` (for ``slots_for``),
        ``beta1_power``, ``beta2_power`` and ``global_step``. A stem ending in ``.ckpt``
        (``slim_v1/resnet_v1_50.ckpt``) is written as that one V1 file, as TF-slim's
        ImageNet checkpoints are; others as V2 ``<stem>/model.permanent-ckpt``.
      slots_for: variables that get Adam slot variables.

    Returns:
      stem -> checkpoint prefix (for V1 the file).
    """
    import tensorflow as tf
    v1 = tf.compat.v1
    values = dict(tensors)
    for name in slots_for:
        values[f"{name}/Adam"] = np.full_like(tensors[name], 0.01)
        values[f"{name}/Adam_1"] = np.full_like(tensors[name], 0.02)
    values["beta1_power"] = np.float32(0.9 ** 5)
    values["beta2_power"] = np.float32(0.999 ** 5)
    with tf.Graph().as_default():
        feeds, graph_vars = {}, {}
        for name, value in values.items():  # initialised from placeholders: no big constants
            ph = v1.placeholder(tf.float32, np.shape(value))
            feeds[ph] = value
            graph_vars[name] = v1.Variable(ph, name=name)
        graph_vars["global_step"] = v1.train.get_or_create_global_step()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer(), feed_dict=feeds)
            sess.run(graph_vars["global_step"].assign(step))
            out = {}
            for stem, layout in layouts.items():
                v1_file = stem.endswith(".ckpt")
                (root / stem).parent.mkdir(parents=True, exist_ok=True)
                saver = v1.train.Saver({k: graph_vars[v] for k, v in layout.items()},
                                       write_version=v1.train.SaverDef.V1 if v1_file
                                       else v1.train.SaverDef.V2)
                out[stem] = saver.save(sess, str(root / stem if v1_file else
                                                 root / stem / "model.permanent-ckpt"),
                                       write_meta_graph=False, write_state=not v1_file)
            return out


# ----------------------------------------------------------------- reference passes
def _tf():
    import tensorflow as tf
    return tf


def _bn_ref(x, p, scope):
    return _tf().nn.batch_normalization(
        x, p[f"{scope}/BatchNorm/moving_mean"], p[f"{scope}/BatchNorm/moving_variance"],
        p[f"{scope}/BatchNorm/beta"], p[f"{scope}/BatchNorm/gamma"], 1e-5)


def _conv_ref(x, w, stride, explicit_pad):
    tf = _tf()
    if stride > 1 and explicit_pad:  # slim conv2d_same
        k = w.shape[0]
        before, after = (k - 1) // 2, k - 1 - (k - 1) // 2
        x = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]])
        return tf.nn.conv2d(x, w, stride, "VALID")
    return tf.nn.conv2d(x, w, stride, "SAME")


def reference_encoder(p, x, explicit_pad=True):
    """slim resnet_v1_50_16x16 + compress1 from checkpoint tensors ``p``."""
    tf = _tf()
    x = tf.nn.relu(_bn_ref(_conv_ref(x, p["encoder/conv1/weights"], 2, explicit_pad), p,
                           "encoder/conv1"))
    x = tf.nn.max_pool2d(x, 3, 2, "SAME")
    for b, n in UNITS.items():
        for u in range(1, n + 1):
            s = f"encoder/block{b}/unit_{u}/bottleneck_v1"
            stride = 2 if (b, u) in STRIDED else 1
            if f"{s}/shortcut/weights" in p:
                sc = _bn_ref(_conv_ref(x, p[f"{s}/shortcut/weights"], stride, True), p,
                             f"{s}/shortcut")
            else:
                sc = x[:, ::stride, ::stride, :]
            r = tf.nn.relu(_bn_ref(_conv_ref(x, p[f"{s}/conv1/weights"], 1, True), p, f"{s}/conv1"))
            r = tf.nn.relu(_bn_ref(_conv_ref(r, p[f"{s}/conv2/weights"], stride, explicit_pad),
                                   p, f"{s}/conv2"))
            r = _bn_ref(_conv_ref(r, p[f"{s}/conv3/weights"], 1, True), p, f"{s}/conv3")
            x = tf.nn.relu(sc + r)
    return tf.nn.relu(_bn_ref(_conv_ref(x, p["compress1/weights"], 1, True), p, "compress1"))


def reference_decoder(p, z, tanh=True):
    tf = _tf()
    x = z
    for name in DECODER:
        w = p[f"decoder/{name}/weights"]
        if name.startswith("deconv"):
            n, h, wd, _ = x.shape
            x = tf.nn.conv2d_transpose(x, w, [n, 2 * h, 2 * wd, w.shape[2]], 2, "SAME")
        else:
            x = tf.nn.conv2d(x, w, 1, "SAME")
        x = tf.nn.leaky_relu(_bn_ref(x, p, f"decoder/{name}"), 0.2)
    x = tf.nn.conv2d(x, p["decoder/decoder_output/weights"], 1, "SAME")
    x = x + p["decoder/decoder_output/biases"]
    return tf.tanh(x) if tanh else x


def reference_discriminator(p, x):
    tf = _tf()
    x = tf.nn.conv2d(x, p["discriminator/conv1/weights"], 4, "SAME")
    x = tf.nn.leaky_relu(x + p["discriminator/conv1/biases"], 0.2)
    for name, stride in (("conv2", 4), ("conv3", 4), ("conv4", 1)):
        x = tf.nn.conv2d(x, p[f"discriminator/{name}/weights"], stride, "SAME")
        x = tf.nn.leaky_relu(_bn_ref(x, p, f"discriminator/{name}"), 0.2)
    return tf.nn.conv2d(x, p["discriminator/conv5/weights"], 1, "SAME") + p["discriminator/conv5/biases"]


def reference_head(p, z):
    tf = _tf()
    x = tf.reshape(z, [z.shape[0], -1])
    x = tf.nn.relu(_bn_ref(x @ p["three_layer_fc_network/fc0/weights"], p,
                           "three_layer_fc_network/fc0"))
    return x @ p["three_layer_fc_network/fc2/weights"] + p["three_layer_fc_network/fc2/biases"]


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
