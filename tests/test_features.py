from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.features import (
    BIN_HZ,
    CLIP_SAMPLES,
    N_BINS,
    N_FRAMES,
    N_MELS,
    Features,
    log_mel_from_samples,
    mel_filterbank,
    power_spectrogram,
)


def tone(freq_hz: float, n: int = CLIP_SAMPLES, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(n) / 16_000
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def test_shapes_of_one_second() -> None:
    f = Features(tone(1000.0))
    assert f.power.shape == (N_FRAMES, N_BINS) == (49, 257)
    assert f.log_mel.shape == (N_FRAMES, N_MELS) == (49, 40)
    assert f.log_mel.dtype == np.float32


@settings(max_examples=25, deadline=None)
@given(st.floats(min_value=100.0, max_value=7800.0))
def test_tone_peaks_at_its_bin(freq_hz: float) -> None:
    power = power_spectrogram(tone(freq_hz))
    peak_bin = int(np.argmax(power.mean(axis=0)))
    assert abs(peak_bin * BIN_HZ - freq_hz) <= BIN_HZ


def test_batch_matches_single() -> None:
    rng = np.random.default_rng(0)
    batch = rng.normal(0, 0.1, (4, CLIP_SAMPLES)).astype(np.float32)
    batched = log_mel_from_samples(batch)
    for i in range(4):
        np.testing.assert_allclose(batched[i], Features(batch[i]).log_mel, rtol=1e-5, atol=1e-5)


def test_mel_filters_cover_the_band_once() -> None:
    fb = mel_filterbank()
    assert fb.shape == (N_BINS, N_MELS)
    assert np.all(fb.max(axis=0) > 0.5)  # every band has a peak
    inner = (np.arange(N_BINS) * BIN_HZ > 200) & (np.arange(N_BINS) * BIN_HZ < 7000)
    assert np.all(fb[inner].sum(axis=1) > 0.5)  # no gaps inside the band


def test_silence_is_the_floor() -> None:
    f = Features(np.zeros(CLIP_SAMPLES, dtype=np.float32))
    np.testing.assert_allclose(f.log_mel, np.log(1e-6), rtol=1e-6)
