"""An adaptive attacker against the consistency detector: expectation over its transforms.

The consistency detector (guard/detectors/consistency.py) blocks an input whose prediction
moves under harmless transforms. An attacker who knows that optimises through the same
transforms (Athalye et al., "Synthesizing robust adversarial examples", 2018): the model it
attacks is the average of the twin's probabilities over the untransformed input and each of
the detector's transforms — the five time shifts, noise 20 dB below the signal (fresh each
step) and the log-mel floor 40 dB below the loudest cell. PGD on that average yields
perturbations meant to survive every transform, i.e. to keep the consistency score low.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guard.detectors.consistency import SHIFTS_SAMPLES, TRANSFORMS, ConsistencyDetector
from guard.features import CLIP_SAMPLES, LOG_FLOOR

VIEWS = 1 + len(TRANSFORMS)
"""The untransformed input and each of the detector's transforms."""


def eot_logits(
    model_path: Path, noise_snr_db: float | None = None, floor_db: float | None = None
) -> Any:
    """Keras model: waveform -> log of the mean probability over identity + every transform.

    ``noise_snr_db`` and ``floor_db`` default to the consistency detector's own defaults.
    """
    import keras
    import tensorflow as tf

    from guard.redteam.twin import load_feature_logits, log_mel_layer

    params = ConsistencyDetector().get_params()
    snr_db = params["noise_snr_db"] if noise_snr_db is None else noise_snr_db
    floor_rel = 10 ** (-(params["floor_db"] if floor_db is None else floor_db) / 10)
    classify = load_feature_logits(model_path)
    to_log_mel = log_mel_layer()
    n = CLIP_SAMPLES

    class Transforms(keras.layers.Layer):  # type: ignore[misc]
        def call(self, x: Any) -> Any:
            waves = [x]
            for s in SHIFTS_SAMPLES:
                if s > 0:
                    waves.append(tf.pad(x, [[0, 0], [s, 0]])[:, :n])
                else:
                    waves.append(tf.pad(x[:, -s:], [[0, 0], [0, -s]]))
            rms = tf.sqrt(tf.reduce_mean(x * x, axis=1, keepdims=True)) + 1e-9
            waves.append(x + tf.random.normal(tf.shape(x)) * rms * 10 ** (-snr_db / 20))
            feats = [to_log_mel(w) for w in waves]
            mel = tf.exp(feats[0]) - LOG_FLOOR
            floor = tf.reduce_max(mel, axis=[1, 2], keepdims=True) * floor_rel
            feats.append(tf.math.log(mel + floor + LOG_FLOOR))
            if len(feats) != VIEWS:
                raise ValueError(f"EOT has {len(feats)} views, the detector {VIEWS}")
            return tf.stack(feats, axis=1)  # (batch, VIEWS, frames, mels)

    inp = keras.Input((n,), name="waveform")
    views = Transforms()(inp)
    shape = tuple(int(d) for d in classify.input_shape[1:])
    flat = keras.layers.Lambda(lambda v: tf.reshape(v, (-1, *shape)))(views)
    probs = keras.layers.Softmax()(classify(flat))
    n_classes = int(classify.output_shape[-1])
    mean = keras.layers.Lambda(
        lambda p: tf.reduce_mean(tf.reshape(p, (-1, VIEWS, n_classes)), axis=1)
    )(probs)
    log_mean = keras.layers.Lambda(lambda p: tf.math.log(p + 1e-12))(mean)
    return keras.Model(inp, log_mean, name="guard_twin_eot")
