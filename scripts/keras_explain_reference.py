#!/usr/bin/env python3
"""Keras reference for `mini-xception explain`'s parity test.

For the first face cases of the parity reference (`emotion_cases.json`), runs
the paper's emotion model in TensorFlow 2.15 (inference mode, batch 1, CPU)
and writes to one safetensors file, per case `<id>`:

    guided.<id>    guided back-propagation: the gradient of the label's logit
                   (the GlobalAveragePooling2D output, before the softmax)
                   with respect to the input, [H, W], with every ReLU's
                   gradient replaced by guided back-propagation's:
                   dy * (dy > 0) * (x > 0)
    gradient.<id>  the same gradient with the ordinary ReLU gradient
    grad_cam.<id>  Grad-CAM on the last Add layer's output A (the last
                   residual module): relu(sum_k mean_ij(dlogit/dA_ijk) * A_ijk),
                   [h, w], at the module's resolution
    logits.<id>    the logits

The metadata `cases` lists, as JSON, each case's id and the label explained:
the predicted one, except for the last case, which explains a label chosen
as the model's second most likely, so that a given label is covered too.

Install the pinned requirements in a virtual environment (TensorFlow 2.15
needs Python 3.9 to 3.11):

    python3 -m venv /tmp/kerasref-venv
    /tmp/kerasref-venv/bin/pip install -r scripts/requirements-keras-training.txt

The committed file was made with:

    /tmp/kerasref-venv/bin/python3 scripts/keras_explain_reference.py \\
        ../shared/models/fer2013_mini_XCEPTION.102-0.66.hdf5 \\
        ../shared/reference/emotion_cases.json \\
        tests/explain/keras_saliency.safetensors --cases 4

Usage: keras_explain_reference.py WEIGHTS.hdf5 CASES.json OUT.safetensors
       [--cases N]
"""

import argparse
import json

import numpy as np
import tensorflow as tf
from safetensors.numpy import save_file


@tf.custom_gradient
def guided_relu(x):
    def gradient(dy):
        return dy * tf.cast(dy > 0, dy.dtype) * tf.cast(x > 0, dy.dtype)

    return tf.nn.relu(x), gradient


def score_model(path, guided):
    """The model up to its logits and its last Add layer's output."""
    model = tf.keras.models.load_model(path, compile=False)
    if guided:
        for layer in model.layers:
            if isinstance(layer, tf.keras.layers.Activation) and (
                layer.get_config()["activation"] == "relu"
            ):
                layer.activation = guided_relu
    softmax = model.layers[-1]
    assert softmax.get_config()["activation"] == "softmax", softmax.name
    logits = model.layers[-2]
    assert isinstance(logits, tf.keras.layers.GlobalAveragePooling2D), logits.name
    last_add = [l for l in model.layers if isinstance(l, tf.keras.layers.Add)][-1]
    return tf.keras.Model(model.input, [last_add.output, logits.output])


def input_gradient(model, x, label):
    with tf.GradientTape() as tape:
        tape.watch(x)
        _, logits = model(x, training=False)
        score = logits[0, label]
    return tape.gradient(score, x)[0, :, :, 0].numpy(), logits[0].numpy()


def grad_cam(model, x, label):
    with tf.GradientTape() as tape:
        features, logits = model(x, training=False)
        score = logits[0, label]
    gradients = tape.gradient(score, features)[0]
    weights = tf.reduce_mean(gradients, axis=(0, 1))
    cam = tf.nn.relu(tf.reduce_sum(features[0] * weights, axis=-1))
    return cam.numpy()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("weights")
    parser.add_argument("cases")
    parser.add_argument("out")
    parser.add_argument("--cases", dest="count", type=int, default=4)
    args = parser.parse_args()

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    plain = score_model(args.weights, guided=False)
    guided = score_model(args.weights, guided=True)
    document = json.load(open(args.cases))
    faces = [c for c in document["cases"] if c["kind"] == "face"][: args.count]
    height, width = document["input"]["height"], document["input"]["width"]

    tensors, listed = {}, []
    for i, case in enumerate(faces):
        pixels = np.asarray(case["input_u8"], dtype=np.uint8).reshape(height, width)
        x = ((pixels.astype(np.float32) / 255.0 - 0.5) * 2.0)[None, :, :, None]
        x = tf.constant(x)
        _, logits = input_gradient(plain, x, 0)
        order = np.argsort(-logits)
        label = int(order[1] if i == len(faces) - 1 else order[0])
        guided_map, _ = input_gradient(guided, x, label)
        gradient_map, _ = input_gradient(plain, x, label)
        cam = grad_cam(plain, x, label)
        case_id = case["id"]
        tensors[f"guided.{case_id}"] = guided_map.astype(np.float32)
        tensors[f"gradient.{case_id}"] = gradient_map.astype(np.float32)
        tensors[f"grad_cam.{case_id}"] = cam.astype(np.float32)
        tensors[f"logits.{case_id}"] = logits.astype(np.float32)
        listed.append({"id": case_id, "label": label, "predicted": int(order[0])})
        print(case_id, "label", label, "cam", cam.shape, "max |guided|", np.abs(guided_map).max())

    metadata = {
        "cases": json.dumps(listed),
        "weights": args.weights.split("/")[-1],
        "produced_with": f"tensorflow {tf.__version__}, numpy {np.__version__}",
    }
    save_file(tensors, args.out, metadata=metadata)


if __name__ == "__main__":
    main()
