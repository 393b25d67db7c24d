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
    """Replaces a ``share`` of clips by their FGSM examples against ``train_model`` (log-mel
    in, probabilities out; its weights are read at each call). Silence clips are chosen like
    the others: their eps, from their own loudness, is tiny."""

    def __init__(
        self,
        train_model: Any,
        share: float,
        snr_db: tuple[float, float] = (25.0, 35.0),
        batch_size: int = 256,
    ) -> None:
        import keras
        import tensorflow as tf

        from guard.redteam.twin import log_mel_layer

        if not 0.0 <= share <= 1.0:
            raise ValueError(f"FGSM share {share}: must be in [0, 1]")
        if not 0.0 < snr_db[0] <= snr_db[1]:
            raise ValueError(f"FGSM SNR range {snr_db}: must be 0 < low <= high (dB)")
        if batch_size < 1:
            raise ValueError(f"FGSM batch size {batch_size}: must be at least 1")
        self.share = share
        self.snr_db = snr_db
        self.batch_size = batch_size
        wave = keras.Input((CLIP_SAMPLES,), name="waveform")
        self._wave_model = keras.Model(wave, train_model(log_mel_layer()(wave)))
        loss_fn = keras.losses.SparseCategoricalCrossentropy()

        @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]
        def gradient_sign(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(x)
                # each clip's loss depends on its own samples only, so the gradient of the
                # batch mean is each clip's own gradient over the batch size: same signs
                loss = loss_fn(y, self._wave_model(x, training=False))
            return tf.sign(tape.gradient(loss, x))

        self._gradient_sign = gradient_sign

    def __call__(
        self, clips: FloatArray, labels: npt.NDArray[np.int64], rng: np.random.Generator
    ) -> FloatArray:
        """``clips`` with a ``share`` replaced by FGSM examples (same labels), a new array; one
        batch at a time, so an epoch's clips are held once more at most."""
        chosen = np.flatnonzero(rng.random(len(clips)) < self.share)
        out = clips.copy()
        snr = rng.uniform(*self.snr_db, size=len(chosen))
        for i in range(0, len(chosen), self.batch_size):
            rows = chosen[i : i + self.batch_size]
            x = out[rows]
            rms = np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=1))
            eps = (rms * 10 ** (-snr[i : i + self.batch_size] / 20)).astype(np.float32)
            signs = self._gradient_sign(x, labels[rows]).numpy()
            out[rows] = np.clip(x + eps[:, None] * signs, -1.0, 1.0)
        return out
