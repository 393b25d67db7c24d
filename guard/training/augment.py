"""Waveform and spectrogram augmentation for training, vectorised over a batch with numpy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from guard.audio import SAMPLE_RATE_HZ
from guard.features import CLIP_SAMPLES

FloatArray = npt.NDArray[np.float32]


def speed(clips: FloatArray, rng: np.random.Generator, p: float, max_change: float) -> FloatArray:
    """Resample a share ``p`` of clips by a factor in 1 +- ``max_change`` (tempo and pitch)."""
    out = clips.copy()
    grid = np.arange(CLIP_SAMPLES, dtype=np.float64)
    for i in np.flatnonzero(rng.random(len(clips)) < p):
        factor = 1.0 + rng.uniform(-max_change, max_change)
        centre = CLIP_SAMPLES / 2
        out[i] = np.interp(centre + (grid - centre) * factor, grid, clips[i], left=0.0, right=0.0)
    return out


def shift(clips: FloatArray, rng: np.random.Generator, max_shift_ms: float) -> FloatArray:
    """Move each clip in time by up to +-``max_shift_ms``, filling with zeros."""
    max_shift = int(max_shift_ms * SAMPLE_RATE_HZ / 1000)
    out = np.zeros_like(clips)
    for i, s in enumerate(rng.integers(-max_shift, max_shift + 1, len(clips))):
        if s >= 0:
            out[i, s:] = clips[i, : CLIP_SAMPLES - s]
        else:
            out[i, :s] = clips[i, -s:]
    return out


def mix_noise(
    clips: FloatArray,
    noise: list[FloatArray],
    rng: np.random.Generator,
    p: float,
    max_volume: float,
) -> FloatArray:
    """Add a random 1 s cut of background noise at volume U(0, max_volume) to a share ``p``."""
    out = clips.copy()
    if not noise:
        return out
    for i in np.flatnonzero(rng.random(len(clips)) < p):
        src = noise[int(rng.integers(len(noise)))]
        start = int(rng.integers(0, src.size - CLIP_SAMPLES + 1))
        out[i] += src[start : start + CLIP_SAMPLES] * rng.uniform(0.0, max_volume)
    return out


def gain(clips: FloatArray, rng: np.random.Generator, max_db: float) -> FloatArray:
    """Scale each clip by U(-max_db, +max_db) dB and clip to [-1, 1]."""
    scale = 10.0 ** (rng.uniform(-max_db, max_db, (len(clips), 1)) / 20.0)
    return np.clip(clips * scale, -1.0, 1.0).astype(np.float32)


def spec_mask(
    log_mel: FloatArray, rng: np.random.Generator, p: float, max_frames: int, max_bands: int
) -> FloatArray:
    """SpecAugment-style masks: one time and one mel-band stripe set to the clip's mean."""
    out = log_mel.copy()
    n_frames, n_bands = log_mel.shape[1:]
    for i in np.flatnonzero(rng.random(len(log_mel)) < p):
        fill = out[i].mean()
        t = int(rng.integers(0, max_frames + 1))
        t0 = int(rng.integers(0, n_frames - t + 1))
        out[i, t0 : t0 + t, :] = fill
        b = int(rng.integers(0, max_bands + 1))
        b0 = int(rng.integers(0, n_bands - b + 1))
        out[i, :, b0 : b0 + b] = fill
    return out


def tones(
    clips: FloatArray,
    rng: np.random.Generator,
    p: float,
    frequency_hz: tuple[float, float] = (100.0, 7900.0),
    duration_s: tuple[float, float] = (0.05, 0.5),
    scale: tuple[float, float] = (0.02, 0.3),
) -> FloatArray:
    """Add a random sine (frequency, length, amplitude and position drawn per clip) to a share
    ``p`` of clips, labels unchanged: a model trained so learns that a steady tone over a word
    does not change the word (the hardening retrain of docs/AUDIT.md)."""
    out = clips.copy()
    for i in np.flatnonzero(rng.random(len(clips)) < p):
        n = int(rng.uniform(*duration_s) * SAMPLE_RATE_HZ)
        start = int(rng.integers(0, CLIP_SAMPLES - n + 1))
        t = np.arange(n) / SAMPLE_RATE_HZ
        phase = rng.uniform(0.0, 2 * np.pi)
        tone = rng.uniform(*scale) * np.sin(2 * np.pi * rng.uniform(*frequency_hz) * t + phase)
        out[i, start : start + n] += tone.astype(np.float32)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def sign_noise(
    clips: FloatArray,
    rng: np.random.Generator,
    p: float,
    snr_db: tuple[float, float] = (20.0, 40.0),
) -> FloatArray:
    """Add random-sign noise (+-a on every sample, white) at an SNR drawn from ``snr_db`` per
    clip to a share ``p`` of clips, labels unchanged. It is FGSM's perturbation with the
    gradient's signs replaced by coin flips. A model trained so is less fragile to noise of
    that size (4.0 -> 3.2 % of labels flipped at 25 dB) but FGSM fools it as often
    (docs/DETECTION.md, "A model hardened against noise"); no shipped model uses it."""
    out = clips.copy()
    for i in np.flatnonzero(rng.random(len(clips)) < p):
        rms = float(np.sqrt(np.mean(clips[i].astype(np.float64) ** 2)))
        amplitude = rms * 10 ** (-rng.uniform(*snr_db) / 20)
        signs = rng.integers(0, 2, CLIP_SAMPLES) * 2 - 1
        out[i] += (amplitude * signs).astype(np.float32)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def augment_waveforms(
    clips: FloatArray, noise: list[FloatArray], rng: np.random.Generator
) -> FloatArray:
    """The waveform chain used every epoch: speed, shift, gain, background noise."""
    out = speed(clips, rng, p=0.5, max_change=0.12)
    out = shift(out, rng, max_shift_ms=100.0)
    out = gain(out, rng, max_db=6.0)
    out = mix_noise(out, noise, rng, p=0.8, max_volume=0.1)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
