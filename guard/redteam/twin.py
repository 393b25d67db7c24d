"""The float twin of a guard model, end to end from waveform to probabilities, in Keras.

Gradient attacks need the feature pipeline inside the graph: this rebuilds guard's log-mel
(same framing, periodic Hann window, 512-point FFT, mel matrix and log floor as
guard/features.py) with ``tf.signal`` in front of the classifier, and loads the trained weights
from ``<name>_float.weights.npz`` (plain arrays) and the architecture from the model's JSON
(``architecture.kind``: ``ds-cnn``, the default when absent, or ``vgg``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from guard.features import HOP_SAMPLES, LOG_FLOOR, N_FFT, WINDOW_SAMPLES, mel_filterbank
from guard.manifest import verified_bytes


def log_mel_layer() -> Any:
    import keras
    import tensorflow as tf

    fb = tf.constant(mel_filterbank())

    class LogMel(keras.layers.Layer):  # type: ignore[misc]
        def call(self, x: Any) -> Any:
            frames = tf.signal.frame(x, WINDOW_SAMPLES, HOP_SAMPLES)
            window = tf.signal.hann_window(WINDOW_SAMPLES, periodic=True)
            spectrum = tf.signal.rfft(frames * window, fft_length=[N_FFT])
            power = tf.math.real(spectrum) ** 2 + tf.math.imag(spectrum) ** 2
            return tf.math.log(tf.matmul(power, fb) + LOG_FLOOR)

    return LogMel()


def _exported(model_path: Path) -> Any:
    """The trained Keras model (log-mel in; probabilities, embedding, early out)."""
    import io

    from guard.training.model import build

    stem = model_path.name.removesuffix(".tflite").removesuffix("_float")
    meta = json.loads(verified_bytes(model_path.with_name(f"{stem}.json")))
    arch = meta["architecture"]
    with np.load(
        io.BytesIO(verified_bytes(model_path.with_name(f"{stem}_float.weights.npz"))),
        allow_pickle=False,
    ) as data:
        weights = [data[k] for k in sorted(data.files)]
    _, export = build(
        len(meta["labels"]), arch["channels"], arch["blocks"], kind=arch.get("kind", "ds-cnn")
    )
    export.set_weights(weights)
    return export


def _logits_of(export: Any, outputs: Any) -> Any:
    """The logits behind ``outputs`` (``export`` called once on the features)."""
    import keras

    # both architectures have a single Dense layer, the logits before the softmax
    dense = next(layer for layer in export.layers if isinstance(layer, keras.layers.Dense))
    return dense(outputs["embedding"])


def load_twin(model_path: Path, logits: bool = False, output: str = "probabilities") -> Any:
    """Keras model: (batch, 16000) float32 waveform -> (batch, 12) probabilities (or logits,
    or with ``output="embedding"``/``"early"`` that output of the model instead).

    ``model_path`` is the float (or int8) TFLite file; its ``<name>_float.weights.npz`` and
    ``.json`` beside it are checked against the manifest.
    """
    import keras

    export = _exported(model_path)
    inp = keras.Input((16_000,), name="waveform")
    outputs = export(log_mel_layer()(inp))
    if output != "probabilities":  # "embedding" or "early": what ART's poison defences read
        return keras.Model(inp, outputs[output], name=f"guard_twin_{output}")
    if not logits:
        return keras.Model(inp, outputs["probabilities"], name="guard_twin")
    return keras.Model(inp, _logits_of(export, outputs), name="guard_twin_logits")


def load_feature_logits(model_path: Path) -> Any:
    """Keras model: (batch, frames, mels) log-mel -> (batch, 12) logits (for attacks that
    transform the features, such as the consistency detector's floor)."""
    import keras

    from guard.features import N_FRAMES, N_MELS

    export = _exported(model_path)
    inp = keras.Input((N_FRAMES, N_MELS), name="log_mel")
    return keras.Model(inp, _logits_of(export, export(inp)), name="guard_twin_feature_logits")
