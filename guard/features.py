"""Log-mel features over 16 kHz mono: one definition shared by training and runtime.

Frames are 30 ms Hann windows every 20 ms (480 / 320 samples), a 512-point FFT, and 40
mel bands between 20 Hz and 7.6 kHz, so a 1 s clip gives 49 x 40 features (the framing
of "Hello Edge", Zhang et al. 2017). Every function takes a leading batch axis, so the
trainer computes a whole epoch at once with exactly the code the daemon runs.

``Features`` holds one utterance's STFT, power spectrogram and log-mel, computed once and
shared by the classifier and every detector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import fft as sp_fft

from guard.audio import SAMPLE_RATE_HZ

FloatArray = npt.NDArray[np.float32]
ComplexArray = npt.NDArray[np.complex64]

CLIP_SAMPLES = SAMPLE_RATE_HZ
"""Samples in the classifier's fixed 1 s input."""
WINDOW_SAMPLES = 480
"""30 ms analysis window."""
HOP_SAMPLES = 320
"""20 ms hop between frames."""
N_FFT = 512
N_BINS = N_FFT // 2 + 1
N_MELS = 40
MEL_LOW_HZ = 20.0
MEL_HIGH_HZ = 7600.0
LOG_FLOOR = 1e-6
N_FRAMES = 1 + (CLIP_SAMPLES - WINDOW_SAMPLES) // HOP_SAMPLES
"""Frames in a 1 s clip (49)."""
BIN_HZ = SAMPLE_RATE_HZ / N_FFT
"""Width of one FFT bin in hertz (31.25)."""

FEATURE_SPEC = {
    "sample_rate_hz": SAMPLE_RATE_HZ,
    "clip_samples": CLIP_SAMPLES,
    "window_samples": WINDOW_SAMPLES,
    "hop_samples": HOP_SAMPLES,
    "n_fft": N_FFT,
    "n_mels": N_MELS,
    "mel_low_hz": MEL_LOW_HZ,
    "mel_high_hz": MEL_HIGH_HZ,
    "log_floor": LOG_FLOOR,
}
"""Written into each model's metadata; the runtime refuses a model trained on other features."""


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=1)
def mel_filterbank() -> FloatArray:
    """Triangular HTK-mel filters, shape (N_BINS, N_MELS)."""
    mel_points = np.linspace(
        _hz_to_mel(np.array(MEL_LOW_HZ)), _hz_to_mel(np.array(MEL_HIGH_HZ)), N_MELS + 2
    )
    hz_points = _mel_to_hz(mel_points)
    bin_hz = np.arange(N_BINS) * BIN_HZ
    lower, centre, upper = hz_points[:-2], hz_points[1:-1], hz_points[2:]
    rising = (bin_hz[:, None] - lower) / (centre - lower)
    falling = (upper - bin_hz[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


@lru_cache(maxsize=1)
def _window() -> FloatArray:
    return np.hanning(WINDOW_SAMPLES + 1)[:-1].astype(np.float32)


def frame(samples: FloatArray) -> FloatArray:
    """Split (..., n) samples into (..., frames, WINDOW_SAMPLES) views (no copy)."""
    n = samples.shape[-1]
    if n < WINDOW_SAMPLES:
        raise ValueError(f"need at least {WINDOW_SAMPLES} samples, got {n}")
    n_frames = 1 + (n - WINDOW_SAMPLES) // HOP_SAMPLES
    windows = np.lib.stride_tricks.sliding_window_view(samples, WINDOW_SAMPLES, axis=-1)
    return windows[..., : n_frames * HOP_SAMPLES : HOP_SAMPLES, :]


def stft(samples: FloatArray) -> ComplexArray:
    """Complex STFT of (..., n) float32 samples: shape (..., frames, N_BINS), complex64."""
    return np.asarray(sp_fft.rfft(frame(samples) * _window(), n=N_FFT, axis=-1), dtype=np.complex64)


def power_of(spectrum: ComplexArray) -> FloatArray:
    """|X|^2 of a complex spectrogram."""
    return np.asarray(spectrum.real**2 + spectrum.imag**2, dtype=np.float32)


def power_spectrogram(samples: FloatArray) -> FloatArray:
    """|STFT|^2 of (..., n) float32 samples: shape (..., frames, N_BINS)."""
    return power_of(stft(samples))


def log_mel(power: FloatArray) -> FloatArray:
    """Natural-log mel energies of a power spectrogram: (..., frames, N_MELS)."""
    mel = power @ mel_filterbank()
    return np.asarray(np.log(mel + LOG_FLOOR), dtype=np.float32)


def log_mel_from_samples(samples: FloatArray) -> FloatArray:
    """Shortcut used by the trainer on whole batches: samples -> log-mel."""
    return log_mel(power_spectrogram(samples))


@dataclass
class Features:
    """One utterance's spectra, computed once and shared by every consumer.

    ``samples`` is the 1 s float32 window at 16 kHz the classifier sees.
    """

    samples: FloatArray
    spectrum: ComplexArray = field(init=False, repr=False)
    """Complex STFT, shape (N_FRAMES, N_BINS); linear, so blends and filters reuse it."""
    power: FloatArray = field(init=False, repr=False)
    """Power spectrogram, shape (N_FRAMES, N_BINS)."""
    log_mel: FloatArray = field(init=False, repr=False)
    """Log-mel energies, shape (N_FRAMES, N_MELS)."""

    def __post_init__(self) -> None:
        if self.samples.shape != (CLIP_SAMPLES,):
            raise ValueError(f"Features needs {CLIP_SAMPLES} samples, got {self.samples.shape}")
        self.spectrum = stft(self.samples)
        self.power = power_of(self.spectrum)
        self.log_mel = log_mel(self.power)
