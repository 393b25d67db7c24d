"""Adversarial training: FGSM examples against the model as it trains, labels unchanged.

Goodfellow et al. (ICLR 2015): a share of each epoch's clips is replaced by its FGSM example,
x + eps * sign(grad_x loss(model(x), y)), made on the waveform through guard's log-mel (the
same ``tf.signal`` front end as the red team's float twin, guard/redteam/twin.py), with eps set
per clip from its loudness so the example keeps an SNR drawn from ``snr_db`` (the red team's
budget is 25 dB). The examples are made once per epoch with the weights the previous epoch
left, in batches (one gradient per clip), so they cost about one forward and backward pass per
example. Imports TensorFlow: only ``guard train`` (the ``train`` extra) calls it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from guard.features import CLIP_SAMPLES

FloatArray = npt.NDArray[np.float32]


class FgsmAugmenter:
    """Replaces a share ``p`` of clips by their FGSM examples against ``train_model``
    (log-mel in, probabilities out; its weights are read at each call)."""

    def __init__(
        self,
        train_model: Any,
        p: float,
        snr_db: tuple[float, float] = (25.0, 35.0),
        batch_size: int = 256,
    ) -> None:
        import keras
        import tensorflow as tf

        from guard.redteam.twin import log_mel_layer

        if not 0.0 <= p <= 1.0:
            raise ValueError(f"FGSM share {p}: must be in [0, 1]")
        if not 0.0 < snr_db[0] <= snr_db[1]:
            raise ValueError(f"FGSM SNR range {snr_db}: must be 0 < low <= high (dB)")
        self.p = p
        self.snr_db = snr_db
        self.batch_size = batch_size
        wave = keras.Input((CLIP_SAMPLES,), name="waveform")
        self._wave_model = keras.Model(wave, train_model(log_mel_layer()(wave)))
        loss_fn = keras.losses.SparseCategoricalCrossentropy()

        @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]
        def gradient_sign(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(x)
                # summed, not averaged: each clip's gradient is its own, whatever the batch
                loss = loss_fn(y, self._wave_model(x, training=False)) * tf.cast(
                    tf.shape(x)[0], tf.float32
                )
            return tf.sign(tape.gradient(loss, x))

        self._gradient_sign = gradient_sign

    def signs(self, clips: FloatArray, labels: npt.NDArray[np.int64]) -> FloatArray:
        """sign(d loss / d clip) per sample, for every clip (the model's current weights)."""
        out = np.empty_like(clips)
        for i in range(0, len(clips), self.batch_size):
            out[i : i + self.batch_size] = self._gradient_sign(
                clips[i : i + self.batch_size], labels[i : i + self.batch_size]
            ).numpy()
        return out

    def __call__(
        self, clips: FloatArray, labels: npt.NDArray[np.int64], rng: np.random.Generator
    ) -> FloatArray:
        """``clips`` with a share ``p`` replaced by FGSM examples (same labels)."""
        chosen = np.flatnonzero(rng.random(len(clips)) < self.p)
        out = clips.copy()
        if not len(chosen):
            return out
        x = clips[chosen]
        rms = np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=1, keepdims=True))
        snr = rng.uniform(*self.snr_db, size=(len(chosen), 1))
        eps = (rms * 10 ** (-snr / 20)).astype(np.float32)
        out[chosen] = np.clip(x + eps * self.signs(x, labels[chosen]), -1.0, 1.0)
        return out
