"""Development sets drawn from a Speech Commands folder, split by speaker the same way everywhere.

- ``train``: speakers the shipped model trained on (detectors are fitted on a sample of them);
- ``calibrate``: half of the validation speakers (thresholds are set on them);
- ``evaluate``: the other half (every reported figure comes from them).
Noise for "clean speech in background noise" comes from the held-back tail of each
``_background_noise_`` recording for ``calibrate``/``evaluate``, and the head for ``train``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from guard.training.dataset import (
    Clip,
    is_validation_speaker,
    load_clips,
    load_noise,
    scan,
    split_noise,
)

FloatArray = npt.NDArray[np.float32]
VALIDATION_PERCENT = 15.0
PARTS = ("train", "calibrate", "evaluate")


def part_of(speaker: str) -> str:
    if not is_validation_speaker(speaker, VALIDATION_PERCENT):
        return "train"
    h = int(hashlib.sha1(f"{speaker}/half".encode()).hexdigest()[:8], 16)
    return "calibrate" if h % 2 == 0 else "evaluate"


def clips(data_dir: Path, part: str, limit: int | None = None, seed: int = 0) -> list[Clip]:
    """Clips of one part, shuffled with ``seed`` and cut to ``limit``."""
    found = [c for c in scan(data_dir) if part_of(c.speaker) == part]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(found))
    return [found[i] for i in order[: limit or len(found)]]


def audio(chosen: list[Clip]) -> FloatArray:
    return load_clips(chosen)


def noise(data_dir: Path, part: str) -> list[FloatArray]:
    head, tail = split_noise(load_noise(data_dir), VALIDATION_PERCENT / 100)
    return head if part == "train" else tail


def add_noise(
    x: FloatArray, noise_recordings: list[FloatArray], rng: np.random.Generator, max_volume: float
) -> FloatArray:
    """Mix a random cut of background noise at volume U(0.02, max_volume) into each clip."""
    out = x.copy()
    for i in range(len(out)):
        src = noise_recordings[int(rng.integers(len(noise_recordings)))]
        start = int(rng.integers(0, src.size - out.shape[1] + 1))
        out[i] += src[start : start + out.shape[1]] * rng.uniform(0.02, max_volume)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def fit_and_calibration_audio(
    data_dir: Path, fit_clips: int = 1500, seed: int = 0, max_volume: float = 0.3
) -> tuple[FloatArray, FloatArray]:
    """The two sets tools/build_detectors.py fits and calibrates a state on, with its draws:
    ``fit_clips`` training-speaker clips, then every calibrate clip, half of each in noise (one
    generator, seeded ``seed``, for both: the calibrate set's draws come after the fit set's)."""
    if fit_clips < 1:
        raise ValueError(f"fit_clips {fit_clips}: must be at least 1")
    rng = np.random.default_rng(seed)

    def load(part: str, limit: int | None) -> FloatArray:
        x = audio(clips(data_dir, part, limit, seed))
        half = rng.random(len(x)) < 0.5
        x[half] = add_noise(x[half], noise(data_dir, part), rng, max_volume)
        return x

    fit_audio = load("train", fit_clips)
    return fit_audio, load("calibrate", None)
