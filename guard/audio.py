"""Reading audio files into 16 kHz mono float32, the one format every other module takes."""

from __future__ import annotations

import warnings
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import signal
from scipy.io import wavfile

from guard.errors import AudioError

SAMPLE_RATE_HZ = 16_000
"""The rate guard works at, in hertz."""

AUDIO_SUFFIXES = (".wav", ".flac")

FloatArray = npt.NDArray[np.float32]


def to_float32(data: npt.NDArray[Any]) -> FloatArray:
    """Convert integer PCM or float samples to float32 in [-1, 1]."""
    if data.dtype == np.uint8:
        return ((data.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if np.issubdtype(data.dtype, np.integer):
        full_scale = float(np.iinfo(data.dtype).max) + 1.0
        return (data.astype(np.float32) / full_scale).astype(np.float32)
    return data.astype(np.float32)


def resample(
    samples: FloatArray, from_rate_hz: int, to_rate_hz: int = SAMPLE_RATE_HZ
) -> FloatArray:
    """Polyphase resampling (with its anti-alias filter) between integer rates."""
    if from_rate_hz == to_rate_hz:
        return samples
    g = int(np.gcd(from_rate_hz, to_rate_hz))
    out = signal.resample_poly(samples, to_rate_hz // g, from_rate_hz // g)
    return np.asarray(out, dtype=np.float32)


def _mono(data: npt.NDArray[Any]) -> FloatArray:
    samples = to_float32(data)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    return samples


def read_audio(path: str | Path, sample_rate_hz: int = SAMPLE_RATE_HZ) -> FloatArray:
    """Read a WAV (any PCM width or float) or FLAC file as mono float32 at ``sample_rate_hz``.

    Raises AudioError with a one-line message naming the file when it cannot be read.
    """
    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        if path.suffix.lower() == ".flac":
            try:
                import soundfile
            except ImportError as exc:
                raise AudioError(
                    f"{path}: reading FLAC needs soundfile (pip install soundfile)"
                ) from exc
            data, rate_hz = soundfile.read(str(path), dtype="float32", always_2d=False)
            samples = _mono(np.asarray(data))
        else:
            _check_wav_header(path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", wavfile.WavFileWarning)  # e.g. a 'fact' chunk
                rate_hz, data = wavfile.read(str(path))
            samples = _mono(np.asarray(data))
    except AudioError:
        raise
    except (OSError, ValueError, RuntimeError, EOFError, wave.Error) as exc:
        raise AudioError(f"{path}: cannot read audio: {_one_line(exc)}") from exc
    except Exception as exc:  # soundfile raises its own types
        raise AudioError(f"{path}: cannot read audio: {_one_line(exc)}") from exc
    if samples.size == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return resample(samples, int(rate_hz), sample_rate_hz)


def _check_wav_header(path: Path) -> None:
    """Catch what scipy reads silently: a declared data chunk longer than the file."""
    size = path.stat().st_size
    if size == 0:
        raise AudioError(f"{path}: empty file")
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            raise AudioError(f"{path}: not a WAV file (no RIFF/WAVE header)")
        while True:
            chunk = fh.read(8)
            if len(chunk) < 8:
                raise AudioError(f"{path}: truncated WAV (no data chunk)")
            chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if chunk_id == b"data":
                if fh.tell() + chunk_size > size:
                    missing = fh.tell() + chunk_size - size
                    raise AudioError(f"{path}: truncated WAV ({missing} bytes of audio missing)")
                return
            fh.seek(chunk_size + (chunk_size & 1), 1)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def iter_audio_paths(inputs: Sequence[str | Path]) -> Iterator[tuple[Path, AudioError | None]]:
    """Expand files and directories (recursively) into audio paths, in sorted order.

    Yields ``(path, None)`` for each file to process, or ``(path, error)`` for an input that
    is missing or a directory holding no audio, so callers can report it and go on.
    """
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
            )
            if not found:
                yield path, AudioError(f"{path}: directory holds no .wav or .flac files")
            for p in found:
                yield p, None
        elif path.exists():
            yield path, None
        else:
            yield path, AudioError(f"{path}: no such file or directory")


def fit_window(samples: FloatArray, n_samples: int) -> FloatArray:
    """Cut or zero-pad ``samples`` to exactly ``n_samples``.

    A longer signal keeps its loudest window (energy via a cumulative sum, so O(n)); a
    shorter one is centred in zeros. Used for the classifier's fixed 1 s input.
    """
    n = samples.shape[-1]
    if n == n_samples:
        return samples
    if n < n_samples:
        out = np.zeros(n_samples, dtype=np.float32)
        start = (n_samples - n) // 2
        out[start : start + n] = samples
        return out
    energy = np.concatenate(([0.0], np.cumsum(samples.astype(np.float64) ** 2)))
    window_energy = energy[n_samples:] - energy[:-n_samples]
    start = int(np.argmax(window_energy))
    return samples[start : start + n_samples].astype(np.float32, copy=False)
