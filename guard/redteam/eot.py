"""An adaptive attacker against the consistency detector: expectation over its transforms.

The consistency detector (guard/detectors/consistency.py) blocks an input whose prediction
moves under harmless transforms. An attacker who knows that optimises through the same
transforms (Athalye et al., "Synthesizing robust adversarial examples", 2018): the model it
attacks is the average of the twin's probabilities over the untransformed input and each
transform — band-limit to 4 kHz, 8-bit quantisation (straight-through gradient), a half-hop
(10 ms) shift and noise 20 dB below the signal (fresh each step). PGD on that average yields
perturbations meant to survive every transform, i.e. to keep the consistency score low.
"""

from __future__ import annotations

from typing import Any

from guard.features import HOP_SAMPLES

CUTOFF_HZ = 4000.0
NOISE_SNR_DB = 20.0


def eot_logits(twin_logits: Any, sample_rate_hz: int = 16_000) -> Any:
    """Keras model: waveform -> log of the mean probability over identity + the 4 transforms."""
    import keras
    import tensorflow as tf

    n = int(twin_logits.input_shape[-1])
    freqs = tf.constant([k * sample_rate_hz / n for k in range(n // 2 + 1)], tf.float32)
    band = tf.cast(freqs <= CUTOFF_HZ, tf.complex64)
    shift = HOP_SAMPLES // 2

    class Transforms(keras.layers.Layer):  # type: ignore[misc]
        def call(self, x: Any) -> Any:
            band_limited = tf.signal.irfft(tf.signal.rfft(x) * band, fft_length=[n])
            quantised = x + tf.stop_gradient(tf.round(x * 127.0) / 127.0 - x)
            shifted = tf.pad(x, [[0, 0], [shift, 0]])[:, :n]
            rms = tf.sqrt(tf.reduce_mean(x * x, axis=1, keepdims=True)) + 1e-9
            noisy = x + tf.random.normal(tf.shape(x)) * rms * 10 ** (-NOISE_SNR_DB / 20)
            return tf.stack([x, band_limited, quantised, shifted, noisy], axis=1)

    inp = keras.Input((n,), name="waveform")
    views = Transforms()(inp)  # (batch, 5, n)
    flat = keras.layers.Reshape((n,))(keras.layers.Lambda(lambda v: tf.reshape(v, (-1, n)))(views))
    probs = keras.layers.Softmax()(twin_logits(flat))
    n_classes = int(twin_logits.output_shape[-1])
    mean = keras.layers.Lambda(lambda p: tf.reduce_mean(tf.reshape(p, (-1, 5, n_classes)), axis=1))(
        probs
    )
    log_mean = keras.layers.Lambda(lambda p: tf.math.log(p + 1e-12))(mean)
    return keras.Model(inp, log_mean, name="guard_twin_eot")
