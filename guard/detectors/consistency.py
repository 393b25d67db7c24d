"""Adversarial-perturbation detector: does the prediction survive harmless input transforms?

In the spirit of WaveGuard (Hussain et al., USENIX Security 2021): speech keeps its meaning
under band-limiting, 8-bit quantisation, a half-hop time shift or noise 20 dB below it; an
adversarial perturbation tuned to the model's exact input usually does not. The model is run
once on all transformed versions (one batched interpreter call) and the score is the mean
Jensen-Shannon divergence between the original prediction and each transformed one.

Transforms that are linear in the signal are applied to the already-computed STFT (the
band-limit, the added noise); the others need one extra STFT each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from guard.analysis import Analysis
from guard.detectors.base import Detector
from guard.features import BIN_HZ, HOP_SAMPLES, log_mel, power_of, stft

FloatArray = npt.NDArray[np.float64]
TRANSFORMS = ("band_limit_4khz", "quantise_8bit", "shift_half_hop", "noise_20db")


def js_divergence(p: npt.NDArray[Any], q: npt.NDArray[Any]) -> FloatArray:
    """Jensen-Shannon divergence (nats) between probability rows, in [0, log 2]."""
    p = np.clip(p.astype(np.float64), 1e-12, 1.0)
    q = np.clip(q.astype(np.float64), 1e-12, 1.0)
    m = 0.5 * (p + q)
    kl_pm = (p * np.log(p / m)).sum(axis=-1)
    kl_qm = (q * np.log(q / m)).sum(axis=-1)
    return np.asarray(0.5 * kl_pm + 0.5 * kl_qm, dtype=np.float64)


class ConsistencyDetector(Detector):
    """Score = mean JS divergence between the prediction and the transformed predictions."""

    name = "consistency"

    def __init__(
        self, cutoff_hz: float = 4000.0, noise_snr_db: float = 20.0, seed: int = 0
    ) -> None:
        self.cutoff_hz = cutoff_hz
        self.noise_snr_db = noise_snr_db
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {"cutoff_hz": self.cutoff_hz, "noise_snr_db": self.noise_snr_db, "seed": self.seed}

    def _fit(self, clean: Sequence[Analysis]) -> None:
        n = clean[0].features.samples.size
        noise = np.random.default_rng(self.seed).standard_normal(n).astype(np.float32)
        self.noise_ = noise
        self._prepare()

    def _prepare(self) -> None:
        self.noise_spectrum_ = stft(self.noise_)
        self.band_mask_ = (
            np.arange(self.noise_spectrum_.shape[-1]) * BIN_HZ <= self.cutoff_hz
        ).astype(np.float32)

    def transformed_log_mel(self, a: Analysis) -> npt.NDArray[np.float32]:
        """(len(TRANSFORMS), frames, mels) features of the transformed utterance."""
        x = a.features.samples
        spectrum = a.features.spectrum
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) + 1e-9
        noise_gain = np.float32(rms * 10 ** (-self.noise_snr_db / 20))
        shift = HOP_SAMPLES // 2
        shifted = np.concatenate([np.zeros(shift, np.float32), x[:-shift]])
        quantised = (np.round(x * 127) / 127).astype(np.float32)
        spectra = np.stack(
            [
                spectrum * self.band_mask_,
                stft(quantised),
                stft(shifted),
                spectrum + self.noise_spectrum_ * noise_gain,
            ]
        )
        return log_mel(power_of(spectra))

    def transform_divergences(self, analyses: Sequence[Analysis]) -> FloatArray:
        """(n, len(TRANSFORMS)) JS divergence per transform."""
        out = np.empty((len(analyses), len(TRANSFORMS)))
        for i, a in enumerate(analyses):
            probs = a.model.predict(self.transformed_log_mel(a)).probabilities
            out[i] = js_divergence(a.probabilities[None], probs)
        return out

    def anomaly_score(self, analyses: Sequence[Analysis]) -> FloatArray:
        return np.asarray(self.transform_divergences(analyses).mean(axis=1), dtype=np.float64)

    def _fitted_arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"noise": self.noise_}

    def _set_fitted_arrays(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.noise_ = arrays["noise"].astype(np.float32)
        self._prepare()


__all__ = ["TRANSFORMS", "ConsistencyDetector", "js_divergence"]
