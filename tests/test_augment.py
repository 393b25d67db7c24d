"""Training augmentation: the random tones of the hardening retrain (docs/AUDIT.md) and the
random-sign noise of the noise-hardened model (docs/DETECTION.md)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from guard.audio import SAMPLE_RATE_HZ
from guard.features import CLIP_SAMPLES
from guard.training import augment


def test_tones_add_one_bounded_sine_per_chosen_clip() -> None:
    rng = np.random.default_rng(3)
    silent = np.zeros((40, CLIP_SAMPLES), dtype=np.float32)
    out = augment.tones(silent, rng, p=1.0)
    assert out.dtype == np.float32 and out.shape == silent.shape
    for clip in out:
        on = np.flatnonzero(np.abs(clip) > 0)
        assert on.size, "every clip was chosen at p=1"
        length_s = (on[-1] - on[0] + 1) / SAMPLE_RATE_HZ
        assert 0.045 <= length_s <= 0.5
        assert np.abs(clip).max() <= 0.3 + 1e-6
        segment = clip[on[0] : on[-1] + 1].astype(np.float64)
        spectrum = np.abs(np.fft.rfft(segment * np.hanning(segment.size), 8 * segment.size))
        peak_hz = np.argmax(spectrum) * SAMPLE_RATE_HZ / (8 * segment.size)
        assert 90 <= peak_hz <= 7950
        # narrowband: nearly all the energy within 60 Hz of the peak (Hann main lobe ±40 Hz at 50 ms)
        freqs = np.arange(spectrum.size) * SAMPLE_RATE_HZ / (8 * segment.size)
        near = np.abs(freqs - peak_hz) < 60
        assert (spectrum[near] ** 2).sum() > 0.95 * (spectrum**2).sum()


@pytest.mark.parametrize("add", [augment.tones, augment.sign_noise])
def test_additions_leave_clips_alone_at_p_zero_and_keep_the_range(
    add: Callable[..., npt.NDArray[np.float32]],
) -> None:
    rng = np.random.default_rng(4)
    speechlike = rng.uniform(-0.9, 0.9, (8, CLIP_SAMPLES)).astype(np.float32)
    np.testing.assert_array_equal(add(speechlike, rng, p=0.0), speechlike)
    loud = np.full((8, CLIP_SAMPLES), 0.95, dtype=np.float32)
    assert add(loud, rng, p=1.0).max() <= 1.0


def test_sign_noise_is_white_plus_minus_a_at_an_snr_in_range() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE_HZ
    clips = np.stack([a * np.sin(2 * np.pi * 300 * t) for a in np.linspace(0.05, 0.5, 30)])
    clips = clips.astype(np.float32)
    out = augment.sign_noise(clips, rng, p=1.0)
    assert out.dtype == np.float32 and out.shape == clips.shape
    for before, after in zip(clips, out, strict=True):
        added = (after - before).astype(np.float64)
        amplitude = np.abs(added)
        # one amplitude on every sample, both signs about equally often
        np.testing.assert_allclose(amplitude, amplitude.mean(), rtol=1e-3)
        assert 0.45 < np.mean(added > 0) < 0.55
        snr_db = 10 * np.log10(np.mean(before.astype(np.float64) ** 2) / np.mean(added**2))
        assert 20.0 - 1e-3 <= snr_db <= 40.0 + 1e-3
        # white: the noise's energy spreads over the band instead of sitting near 300 Hz
        spectrum = np.abs(np.fft.rfft(added)) ** 2
        assert spectrum[: spectrum.size // 2].sum() / spectrum.sum() < 0.6
