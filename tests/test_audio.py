from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile
from scipy.io import wavfile

from guard.audio import fit_window, iter_audio_paths, read_audio
from guard.errors import AudioError

from .conftest import WAV_FIXTURES


def _tone(rate_hz: int, freq_hz: float = 1000.0, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, rate_hz: int = 16_000) -> float:
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.argmax(spectrum) * rate_hz / len(x))


@pytest.mark.parametrize("rate_hz", [8000, 16000, 22050, 44100, 48000])
def test_any_rate_resampled_to_16k(tmp_path: Path, rate_hz: int) -> None:
    path = tmp_path / "t.wav"
    wavfile.write(path, rate_hz, (_tone(rate_hz) * 32767).astype(np.int16))
    x = read_audio(path)
    assert abs(len(x) - 8000) <= 1
    assert abs(_peak_hz(x) - 1000.0) < 5.0


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_sample_formats(tmp_path: Path, subtype: str) -> None:
    path = tmp_path / "t.wav"
    soundfile.write(path, _tone(16000), 16000, subtype=subtype)
    x = read_audio(path)
    assert x.dtype == np.float32
    assert 0.45 < np.abs(x).max() < 0.55


def test_stereo_mixed_down(tmp_path: Path) -> None:
    left = _tone(16000, 1000.0)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    path = tmp_path / "s.wav"
    wavfile.write(path, 16000, stereo)
    x = read_audio(path)
    assert x.ndim == 1
    np.testing.assert_allclose(x, left / 2, atol=1e-6)


def test_fixture_reads() -> None:
    x = read_audio(WAV_FIXTURES[0])
    assert x.ndim == 1 and 8000 <= len(x) <= 16000


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_bad_inputs_give_one_line_naming_the_file(tmp_path: Path) -> None:
    good = WAV_FIXTURES[0].read_bytes()
    cases = {
        "text.wav": b"this is not audio at all",
        "empty.wav": b"",
        "truncated.wav": good[: len(good) // 2],
        "header_only.wav": good[:44],
    }
    for name, data in cases.items():
        path = _write_bytes(tmp_path / name, data)
        with pytest.raises(AudioError) as info:
            read_audio(path)
        message = str(info.value)
        assert str(path) in message, message
        assert "\n" not in message


def test_no_samples(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    with pytest.raises(AudioError, match="no audio samples"):
        read_audio(path)


def test_directory_without_audio_is_reported(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    items = list(iter_audio_paths([tmp_path, tmp_path / "missing.wav"]))
    assert [p for p, _ in items] == [tmp_path, tmp_path / "missing.wav"]
    assert all(isinstance(e, AudioError) for _, e in items)


def test_fit_window_keeps_loudest_second() -> None:
    x = np.zeros(48_000, dtype=np.float32)
    x[30_000:31_000] = 1.0
    out = fit_window(x, 16_000)
    assert len(out) == 16_000 and out.sum() == 1000.0


def test_fit_window_centres_short_clip() -> None:
    out = fit_window(np.ones(8000, dtype=np.float32), 16_000)
    assert out[:4000].sum() == 0 and out[4000:12000].sum() == 8000 and out[12000:].sum() == 0
