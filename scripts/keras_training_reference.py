#!/usr/bin/env python3
"""Keras reference for the Rust trainer's parity tests.

Builds the Keras model that a model file (models/README.md) describes, with the
layout of oarriaga/face_classification's mini_XCEPTION (channels last), runs a
few Adam steps on random images in TensorFlow 2.15 (CPU, one thread,
deterministic ops) and writes everything a trainer needs to compare against to
one safetensors file: the inputs, the initial parameters, the step-1 gradients
and probabilities, the losses, and every parameter (moving statistics included)
after each step.

Install the pinned requirements in a virtual environment (TensorFlow 2.15 needs
Python 3.9 to 3.11):

    python3 -m venv /tmp/kerasref-venv
    /tmp/kerasref-venv/bin/pip install -r scripts/requirements-keras-training.txt

The committed files were made with:

    /tmp/kerasref-venv/bin/python3 scripts/keras_training_reference.py \
        tests/models/tiny_train.yaml tests/training/keras_tiny_train.safetensors \
        --batch 8 --steps 3 --seed 7
    /tmp/kerasref-venv/bin/python3 scripts/keras_training_reference.py \
        models/mini_xception.yaml tests/training/keras_mini_xception.safetensors \
        --batch 32 --steps 3 --seed 11

Usage: keras_training_reference.py MODEL.yaml OUT.safetensors --batch B
       --steps N --seed S

The network (L2 = 0.01, added to the loss as 0.01 * sum(w^2)):

    base[i]    Conv2D(filters, kernel, stride, padding, use_bias, l2 on kernel)
               -> BatchNormalization (if batch_norm) -> ReLU (if relu)
    modules[i] residual: Conv2D(rfilters, 1, rstride, same, no bias, no l2) -> BN
               main: SeparableConv2D(filters, kernel, same, no bias, l2 on the
               pointwise kernel only) -> BN -> ReLU -> SeparableConv2D(same)
               -> BN -> MaxPooling2D(size, stride, same) (unless `pool: none`)
               output: main + residual
    head       Conv2D(labels, kernel, padding, use_bias, no l2)
               -> GlobalAveragePooling2D -> softmax

Every BN has axis -1, momentum 0.99 and the file's batch_norm_epsilon.

Parameters start from Keras' default initializers under
tf.keras.utils.set_random_seed(seed); then, with numpy RandomState(seed), every
BN's gamma ~ U(0.5, 1.5), beta ~ U(-0.2, 0.2), moving_mean ~ U(-0.1, 0.1) and
moving_variance ~ U(0.5, 1.5), and every convolution bias ~ U(-0.1, 0.1), are
drawn in the order of the `initial.*` tensors listed below (layers in model-file
order, within a layer in the order bias, gamma, beta, moving_mean,
moving_variance).

Inputs come from numpy RandomState(seed + 1): first the uint8 pixels
[steps, batch, H, W, C] (randint(0, 256)), then for each step the labels
(randint(0, classes, batch), drawn again until the batch holds every class when
batch >= classes). Images are normalised in float32 as
(p / 255 - 0.5) * 2.

Each step, eagerly: probs = model(x, training=True) (which also updates the
BN moving statistics); data_loss = CategoricalCrossentropy()(one_hot, probs)
(mean over the batch); loss = data_loss + sum(model.losses); gradients of loss;
Adam(1e-3, 0.9, 0.999, 1e-7).apply_gradients.

Tensors (layer paths are the model file's: base[0], modules[1].separable[0],
modules[1].residual, head; weight names are Keras': kernel, bias,
depthwise_kernel, pointwise_kernel, gamma, beta, moving_mean, moving_variance,
the BN's under the layer it follows):

    pixels              u8  [steps, batch, H, W, C]
    labels              i64 [steps, batch]
    loss                f32 [steps]   data loss + L2, before that step's update
    data_loss           f32 [steps]
    probabilities       f32 [batch, classes]  step 1, training mode
    logits              f32 [batch, classes]  step 1, the pooled head output
    initial.<layer>.<weight>   every parameter before step 1
    grad.<layer>.<weight>      step-1 gradient of `loss`, trainable parameters
    step<k>.<layer>.<weight>   every parameter after step k (1-based)

TensorFlow runs on the CPU with oneDNN off (TF_ENABLE_ONEDNN_OPTS=0), so the
plain Eigen kernels compute everything; with one intra-op and one inter-op
thread and op determinism on, a rerun writes identical tensors (only the order
of the metadata keys in the header may change, as safetensors stores them in a
hash map).

What TF 2.15 does here, checked empirically (a trainer must match it):
- Batch norm uses the fused kernel (FusedBatchNormV3). Training normalises with
  the biased batch variance (divide by N), but the moving variance is updated
  with the unbiased one: moving_variance = 0.99 * old + 0.01 * var_N-1.
  moving_mean = 0.99 * old + 0.01 * batch_mean.
- The cross-entropy takes the logits path (softmax_cross_entropy_with_logits on
  the softmax's input), not clipped probabilities.
- Adam: m += (g - m) * (1 - b1); v += (g^2 - v) * (1 - b2);
  w -= m * lr * sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v) + eps).
- Max-pool gradients go to the first maximum of each window in row-major
  order; padded cells never win.
"""
import os

# Must be set before TensorFlow is imported.
os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

L2 = 0.01
LEARNING_RATE = 1e-3
BETA_1 = 0.9
BETA_2 = 0.999
ADAM_EPSILON = 1e-7
BN_MOMENTUM = 0.99


# ---------------------------------------------------------------- model file


def _check_keys(where, mapping, allowed):
    if not isinstance(mapping, dict):
        sys.exit(f"{where}: expected a map, found {mapping!r}")
    unknown = set(mapping) - set(allowed)
    if unknown:
        sys.exit(f"{where}: unknown keys {sorted(unknown)}")


def load_spec(path):
    """Reads a model file and fills in every default of models/README.md."""
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    _check_keys(
        path,
        doc,
        ["name", "input", "labels", "batch_norm_epsilon", "base", "modules", "head"],
    )
    _check_keys(f"{path}: input", doc["input"], ["height", "width", "channels"])
    labels = list(doc["labels"])
    spec = {
        "name": doc["name"],
        "input": (
            int(doc["input"]["height"]),
            int(doc["input"]["width"]),
            int(doc["input"]["channels"]),
        ),
        "labels": labels,
        "epsilon": float(doc.get("batch_norm_epsilon", 0.001)),
        "base": [],
        "modules": [],
    }
    for i, b in enumerate(doc["base"] or []):
        _check_keys(
            f"{path}: base[{i}]",
            b,
            ["filters", "kernel", "stride", "padding", "bias", "batch_norm", "activation"],
        )
        spec["base"].append(
            {
                "filters": int(b["filters"]),
                "kernel": int(b.get("kernel", 3)),
                "stride": int(b.get("stride", 1)),
                "padding": str(b.get("padding", "valid")),
                "bias": bool(b.get("bias", False)),
                "batch_norm": bool(b.get("batch_norm", True)),
                "activation": str(b.get("activation", "relu")),
            }
        )
    for i, m in enumerate(doc["modules"] or []):
        where = f"{path}: modules[{i}]"
        _check_keys(where, m, ["filters", "kernel", "residual", "pool"])
        filters = int(m["filters"])
        residual = m.get("residual", {}) or {}
        _check_keys(f"{where}.residual", residual, ["filters", "stride"])
        pool = m.get("pool", {})
        if pool is None or (isinstance(pool, str) and pool.lower() == "none"):
            pool = None
        else:
            _check_keys(f"{where}.pool", pool, ["size", "stride"])
            pool = {"size": int(pool.get("size", 3)), "stride": int(pool.get("stride", 2))}
        spec["modules"].append(
            {
                "filters": filters,
                "kernel": int(m.get("kernel", 3)),
                "residual": {
                    "filters": int(residual.get("filters", filters)),
                    "stride": int(residual.get("stride", 2)),
                },
                "pool": pool,
            }
        )
    head = doc.get("head", {}) or {}
    _check_keys(f"{path}: head", head, ["filters", "kernel", "padding", "bias"])
    spec["head"] = {
        "filters": int(head.get("filters", len(labels))),
        "kernel": int(head.get("kernel", 3)),
        "padding": str(head.get("padding", "same")),
        "bias": bool(head.get("bias", True)),
    }
    if spec["head"]["filters"] != len(labels):
        sys.exit(f"{path}: head: filters must equal the number of labels")
    return spec


# ---------------------------------------------------------------- network


def build_model(spec):
    """Returns (model, groups): model maps images to [logits, probabilities];
    groups is a list of (model-file layer path, [Keras layers holding its
    weights]) in model-file order."""
    layers = tf.keras.layers
    eps = spec["epsilon"]

    def bn(name):
        return layers.BatchNormalization(
            axis=-1, momentum=BN_MOMENTUM, epsilon=eps, name=name
        )

    inputs = tf.keras.Input(shape=spec["input"], name="image")
    x = inputs
    groups = []
    for i, b in enumerate(spec["base"]):
        conv = layers.Conv2D(
            b["filters"],
            b["kernel"],
            strides=b["stride"],
            padding=b["padding"],
            use_bias=b["bias"],
            kernel_regularizer=tf.keras.regularizers.l2(L2),
            name=f"base{i}_conv",
        )
        x = conv(x)
        held = [conv]
        if b["batch_norm"]:
            norm = bn(f"base{i}_bn")
            x = norm(x)
            held.append(norm)
        if b["activation"] == "relu":
            x = layers.Activation("relu", name=f"base{i}_relu")(x)
        groups.append((f"base[{i}]", held))

    for i, m in enumerate(spec["modules"]):
        # The residual branch first, as in face_classification's mini_XCEPTION.
        rconv = layers.Conv2D(
            m["residual"]["filters"],
            1,
            strides=m["residual"]["stride"],
            padding="same",
            use_bias=False,
            name=f"module{i}_residual_conv",
        )
        rbn = bn(f"module{i}_residual_bn")
        residual = rbn(rconv(x))

        held_main = []
        for j in range(2):
            sep = layers.SeparableConv2D(
                m["filters"],
                m["kernel"],
                padding="same",
                use_bias=False,
                pointwise_regularizer=tf.keras.regularizers.l2(L2),
                name=f"module{i}_sep{j}",
            )
            norm = bn(f"module{i}_sep{j}_bn")
            x = norm(sep(x))
            if j == 0:
                x = layers.Activation("relu", name=f"module{i}_relu")(x)
            held_main.append([sep, norm])
        if m["pool"] is not None:
            x = layers.MaxPooling2D(
                m["pool"]["size"],
                strides=m["pool"]["stride"],
                padding="same",
                name=f"module{i}_pool",
            )(x)
        x = layers.Add(name=f"module{i}_add")([x, residual])
        groups.append((f"modules[{i}].separable[0]", held_main[0]))
        groups.append((f"modules[{i}].separable[1]", held_main[1]))
        groups.append((f"modules[{i}].residual", [rconv, rbn]))

    h = spec["head"]
    head = layers.Conv2D(
        h["filters"],
        h["kernel"],
        padding=h["padding"],
        use_bias=h["bias"],
        name="head_conv",
    )
    x = head(x)
    groups.append(("head", [head]))
    logits = layers.GlobalAveragePooling2D(name="pool")(x)
    probabilities = layers.Activation("softmax", name="softmax")(logits)
    model = tf.keras.Model(inputs, [logits, probabilities], name=spec["name"])
    return model, groups


def parameter_table(groups):
    """Ordered {"<layer path>.<weight>": tf.Variable} over every weight."""
    table = {}
    for path, held in groups:
        for layer in held:
            for v in layer.weights:
                weight = v.name.split("/")[-1].split(":")[0]
                key = f"{path}.{weight}"
                if key in table:
                    raise RuntimeError(f"duplicate parameter {key}")
                table[key] = v
    return table


RANDOMISED = {
    "bias": (-0.1, 0.1),
    "gamma": (0.5, 1.5),
    "beta": (-0.2, 0.2),
    "moving_mean": (-0.1, 0.1),
    "moving_variance": (0.5, 1.5),
}


def randomise_parameters(table, seed):
    rs = np.random.RandomState(seed)
    for key, v in table.items():
        weight = key.rsplit(".", 1)[1]
        if weight in RANDOMISED:
            lo, hi = RANDOMISED[weight]
            v.assign(rs.uniform(lo, hi, size=v.shape).astype(np.float32))


def snapshot(table, prefix):
    return {f"{prefix}.{k}": np.array(v.numpy(), dtype=np.float32) for k, v in table.items()}


# ---------------------------------------------------------------- data


def make_data(spec, steps, batch, seed):
    h, w, c = spec["input"]
    classes = len(spec["labels"])
    rs = np.random.RandomState(seed + 1)
    pixels = rs.randint(0, 256, size=(steps, batch, h, w, c), dtype=np.uint8)
    labels = np.empty((steps, batch), dtype=np.int64)
    for s in range(steps):
        while True:
            drawn = rs.randint(0, classes, size=batch).astype(np.int64)
            if batch < classes or len(np.unique(drawn)) == classes:
                break
        labels[s] = drawn
    return pixels, labels


def normalise(p):
    return (p.astype(np.float32) / np.float32(255.0) - np.float32(0.5)) * np.float32(2.0)


# ---------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model file (YAML)")
    parser.add_argument("out", help="safetensors file to write")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    tf.keras.utils.set_random_seed(args.seed)
    tf.keras.backend.set_floatx("float32")

    spec = load_spec(args.model)
    classes = len(spec["labels"])
    model, groups = build_model(spec)
    table = parameter_table(groups)
    randomise_parameters(table, args.seed)

    name_of = {v.ref(): k for k, v in table.items()}
    trainable = model.trainable_variables
    missing = [v.name for v in model.weights if v.ref() not in name_of]
    if missing:
        raise RuntimeError(f"weights without a model-file path: {missing}")

    pixels, labels = make_data(spec, args.steps, args.batch, args.seed)

    tensors = {"pixels": pixels, "labels": labels}
    tensors.update(snapshot(table, "initial"))

    optimizer = tf.keras.optimizers.Adam(
        learning_rate=LEARNING_RATE, beta_1=BETA_1, beta_2=BETA_2, epsilon=ADAM_EPSILON
    )
    cross_entropy = tf.keras.losses.CategoricalCrossentropy()
    losses = np.zeros(args.steps, dtype=np.float32)
    data_losses = np.zeros(args.steps, dtype=np.float32)

    for step in range(args.steps):
        x = tf.constant(normalise(pixels[step]))
        y = tf.constant(np.eye(classes, dtype=np.float32)[labels[step]])
        with tf.GradientTape() as tape:
            logits, probabilities = model(x, training=True)
            data_loss = cross_entropy(y, probabilities)
            regularisation = model.losses
            total = data_loss + tf.add_n(regularisation) if regularisation else data_loss
        grads = tape.gradient(total, trainable)
        if step == 0:
            tensors["probabilities"] = np.array(probabilities.numpy(), dtype=np.float32)
            tensors["logits"] = np.array(logits.numpy(), dtype=np.float32)
            for v, g in zip(trainable, grads):
                tensors[f"grad.{name_of[v.ref()]}"] = np.array(g.numpy(), dtype=np.float32)
        optimizer.apply_gradients(zip(grads, trainable))
        losses[step] = total.numpy()
        data_losses[step] = data_loss.numpy()
        tensors.update(snapshot(table, f"step{step + 1}"))

    tensors["loss"] = losses
    tensors["data_loss"] = data_losses

    metadata = {
        "generator": "scripts/keras_training_reference.py",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "model_file": Path(args.model).as_posix(),
        "model": spec["name"],
        "batch": str(args.batch),
        "steps": str(args.steps),
        "seed": str(args.seed),
        "learning_rate": repr(LEARNING_RATE),
        "beta_1": repr(BETA_1),
        "beta_2": repr(BETA_2),
        "adam_epsilon": repr(ADAM_EPSILON),
        "l2": repr(L2),
        "bn_momentum": repr(BN_MOMENTUM),
        "bn_epsilon": repr(spec["epsilon"]),
        "labels": ",".join(spec["labels"]),
        "parameters": ",".join(table),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=metadata)

    count = sum(int(np.prod(v.shape)) for v in trainable)
    print(f"{args.model}: {spec['name']}, {count} trainable parameters, "
          f"{len(table)} parameter tensors")
    for step in range(args.steps):
        print(f"  step {step + 1}: loss {losses[step]:.9g} "
              f"(data {data_losses[step]:.9g}, l2 {losses[step] - data_losses[step]:.9g})")
    print(f"wrote {out}: {len(tensors)} tensors, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
