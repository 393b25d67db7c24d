"""Steady-tone detector: a sine keeps its frequency exactly, to the fraction of a hertz.

The spectral detector's ``tone_phase`` reads phase steadiness off the shared 30 ms / 20 ms
STFT. Below ~3 kHz a tone trigger often sits among a voice's harmonics (the 440 Hz of the
backdoored fixture is the fourth harmonic of a 110 Hz voice), where those frames' bins hold
the harmonic as much as the tone and the phase test loses it. This detector looks again at
that range on a finer grid: 64 ms Hann frames (1024 samples, 15.6 Hz bins, so a harmonic
100 Hz away leaves the tone's bin alone) every 8 ms (128 samples). A steady sine advances its
phase by the same angle every hop, so the second difference of a bin's phase over three
frames is ~0 (the angle of ``X[t+2] * conj(X[t+1])**2 * X[t]``, no unwrapping); a voice's
harmonic drifts with its pitch and jitter. The measure is ``tone_phase``'s
(``spectral.phase_steadiness_db``), on this grid and with no value spared.

Per bin, the worst second difference over a run of ``RUNS`` values (6 and 12: ~0.12 and
~0.17 s of audio), at the run's best moment, counted only where every frame of the run is
within ``MARGIN_DB`` of the utterance's loudest bin (a faint hum has no say); per band of
``BAND_EDGES_HZ``, the best bin, in dB below 1 rad (``-20 log10(radians + 0.001)``, floored
at ``FLOOR_DB``). Each of these values is scored against the clean fit clips' tail
(``tail_model``: the clean 99th percentile at z = 2.33) and the score is the highest.

This is the one detector that computes its own spectrum (the shared STFT's 20 ms hop and
31 Hz bins are what it exists to refine). On the calibrate speakers' dev set, added to the
shipped fused rule, it took none of the clean budget (its threshold is its highest clean
score) and caught tones the others did not (docs/DETECTION.md, "A steady-tone detector").
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import fft as sp_fft

from guard.analysis import Analysis
from guard.audio import SAMPLE_RATE_HZ
from guard.detectors.base import Detector, FloatArray, NotFittedError, tail_model
from guard.detectors.spectral import PHASE_FLOOR_DB, phase_steadiness_db

WINDOW_SAMPLES = 1024
"""64 ms frames: 15.6 Hz bins."""
HOP_SAMPLES = 128
"""8 ms between frames."""
BAND_EDGES_HZ = (100, 200, 300, 450, 700, 1000, 1500, 2000, 3000)
"""Bands whose best bin is scored: narrow where voices have their strongest harmonics."""
RUNS = (6, 12)
"""Run lengths (second phase differences) over which a bin's phase must stay steady."""
MARGIN_DB = 40.0
"""Bins further than this below the utterance's loudest bin have no usable phase."""
FLOOR_DB = PHASE_FLOOR_DB
"""Steadiness below this (20 dB, 0.1 rad) counts the same (the spectral detector's floor):
noise reaches 26-30 dB (0.03-0.05 rad) somewhere in a band by chance, which the clean tails
absorb; a sine reads 50-60 dB."""
SILENCE_POWER = (WINDOW_SAMPLES / 4 * 1e-5) ** 2
"""A bin's power below this (a sine at -100 dBFS through the Hann window) has no usable
phase, however quiet the rest: digital silence with a faint sine in it is not a tone."""


@lru_cache(maxsize=4)
def _window(samples: int) -> npt.NDArray[np.float32]:
    return np.hanning(samples).astype(np.float32)


def steadiness_db(
    samples: npt.NDArray[np.floating[Any]],
    *,
    window_samples: int = WINDOW_SAMPLES,
    hop_samples: int = HOP_SAMPLES,
    runs: tuple[int, ...] = RUNS,
    band_edges_hz: tuple[float, ...] = BAND_EDGES_HZ,
) -> FloatArray:
    """Per run length and band: how steady the steadiest bin's phase advance stays, in dB
    below 1 rad (``len(runs) * (len(band_edges_hz) - 1)`` values, ``FLOOR_DB`` to 60). The
    keywords are for trying other grids (bench/try_steady_tone.py); the detector uses the
    defaults."""
    x = np.asarray(samples, dtype=np.float32)
    needed = window_samples + (max(runs) + 1) * hop_samples
    if len(x) < needed:
        raise ValueError(f"steady_tone needs at least {needed} samples, got {len(x)}")
    frames = np.lib.stride_tricks.sliding_window_view(x, window_samples)[::hop_samples]
    # Each frame's mean out: a DC offset's bin is the loudest and perfectly steady.
    centred = frames - frames.mean(axis=1, keepdims=True)
    spectrum = sp_fft.rfft(centred * _window(window_samples), axis=1)
    bin_hz = SAMPLE_RATE_HZ / window_samples
    edges = [int(f / bin_hz) for f in band_edges_hz]  # each band from the bin at or below its edge
    if any(b <= a for a, b in pairwise(edges)):
        raise ValueError(f"band edges {band_edges_hz} Hz do not fall in distinct {bin_hz} Hz bins")
    lo, hi, starts = edges[0], edges[-1] + 1, np.asarray(edges[:-1], dtype=np.intp) - edges[0]
    loudest = float(np.max(spectrum.real**2 + spectrum.imag**2))
    s = spectrum[:, lo:hi].astype(np.complex128)  # the phase products want double precision
    p = s.real**2 + s.imag**2
    usable = p >= max(loudest * 10 ** (-MARGIN_DB / 10), SILENCE_POWER)
    return phase_steadiness_db(s, p, usable, starts, runs, (0,) * len(runs))


class SteadyToneDetector(Detector):
    """Score = the highest clean-tail z-score of the bands' phase steadiness."""

    name = "steady_tone"
    budget_weight = 0
    """No share of the clean budget: the threshold is the highest clean calibration score.
    Synthetic voices hold their pitch nearly as steady as a tone; given one turn per round,
    this detector took a clean block from the learned detector and blocked two more of their
    commands (dev set, docs/DETECTION.md)."""

    def __init__(self, min_spread_db: float = 3.0) -> None:
        self.min_spread_db = min_spread_db

    def get_params(self) -> dict[str, Any]:
        return {"min_spread_db": self.min_spread_db}

    @staticmethod
    def _raw(analyses: Sequence[Analysis]) -> FloatArray:
        return np.stack([steadiness_db(a.features.samples) for a in analyses])

    def _fit(self, clean: Sequence[Analysis]) -> None:
        self.location_: FloatArray
        self.spread_: FloatArray
        self.location_, self.spread_ = tail_model(self._raw(clean), self.min_spread_db)

    def band_scores(self, analyses: Sequence[Analysis]) -> FloatArray:
        """Per utterance, per run length and band: the z-like score (utterances x values)."""
        if not hasattr(self, "location_"):
            raise NotFittedError(f"{self.name}: call fit(clean analyses) before scoring")
        return np.asarray((self._raw(analyses) - self.location_) / self.spread_, np.float64)

    def anomaly_score(self, analyses: Sequence[Analysis]) -> FloatArray:
        return np.asarray(self.band_scores(analyses).max(axis=1), dtype=np.float64)

    def _fitted_arrays(self) -> dict[str, npt.NDArray[Any]]:
        if not hasattr(self, "location_"):
            raise NotFittedError(f"{self.name}: nothing fitted to save")
        return {"location": self.location_, "spread": self.spread_}

    def _set_fitted_arrays(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        n = len(RUNS) * (len(BAND_EDGES_HZ) - 1)
        location = np.asarray(arrays["location"], np.float64)
        spread = np.asarray(arrays["spread"], np.float64)
        if location.shape != (n,) or spread.shape != (n,):
            raise ValueError(f"expected {n} bands, got {location.shape} and {spread.shape}")
        self.location_, self.spread_ = location, spread
