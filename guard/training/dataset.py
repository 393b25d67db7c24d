"""Reading a Speech Commands folder into the 12-class task with a speaker-disjoint split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from guard.audio import AUDIO_SUFFIXES, read_audio
from guard.errors import AudioError
from guard.features import CLIP_SAMPLES

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
LABELS = (*WORDS, UNKNOWN, SILENCE)
NOISE_DIR = "_background_noise_"


@dataclass(frozen=True)
class Clip:
    path: Path
    word: str
    speaker: str

    @property
    def label(self) -> str:
        return self.word if self.word in WORDS else UNKNOWN


def speaker_of(path: Path) -> str:
    """Speech Commands speaker id: the file-name part before ``_nohash_``."""
    return path.name.split("_nohash_")[0]


def is_validation_speaker(speaker: str, validation_percent: float) -> bool:
    """Stable hash split: a speaker lands on the same side whatever the dataset holds."""
    h = int(hashlib.sha1(speaker.encode()).hexdigest()[:8], 16) % 10_000
    return h < validation_percent * 100


def speaker_fold(speaker: str, folds: int) -> int:
    """Which of ``folds`` speaker-disjoint folds a speaker is in: a stable hash, salted so the
    folds cut across the validation split's hash instead of following it."""
    if folds < 1:
        raise ValueError(f"folds must be at least 1, got {folds}")
    return int(hashlib.sha1(f"fold:{speaker}".encode()).hexdigest()[:8], 16) % folds


def scan(data_dir: Path) -> list[Clip]:
    """All word clips under ``data_dir``; the same word/speaker/take from two sources counts once."""
    clips: list[Clip] = []
    seen: set[tuple[str, str]] = set()
    for word_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        if word_dir.name.startswith("_"):
            continue
        for path in sorted(word_dir.iterdir()):
            if path.suffix.lower() not in AUDIO_SUFFIXES:
                continue
            take = path.stem.split("__")[0]
            if (word_dir.name, take) in seen:
                continue
            seen.add((word_dir.name, take))
            clips.append(Clip(path, word_dir.name, speaker_of(path)))
    if not clips:
        raise AudioError(f"{data_dir}: no word folders with .wav/.flac clips")
    return clips


def load_clips(clips: list[Clip]) -> npt.NDArray[np.float32]:
    """Read clips as a (n, CLIP_SAMPLES) array, zero-padded or cut to 1 s."""
    out = np.zeros((len(clips), CLIP_SAMPLES), dtype=np.float32)
    for i, clip in enumerate(clips):
        samples = read_audio(clip.path)[:CLIP_SAMPLES]
        out[i, : samples.size] = samples
    return out


def load_noise(data_dir: Path) -> list[npt.NDArray[np.float32]]:
    """The background-noise recordings (empty list when the folder is absent)."""
    noise_dir = data_dir / NOISE_DIR
    if not noise_dir.is_dir():
        return []
    return [
        read_audio(p) for p in sorted(noise_dir.iterdir()) if p.suffix.lower() in AUDIO_SUFFIXES
    ]


def split_noise(
    noise: list[npt.NDArray[np.float32]], validation_fraction: float
) -> tuple[list[npt.NDArray[np.float32]], list[npt.NDArray[np.float32]]]:
    """Cut each noise recording in two so silence clips never share audio across the split."""
    train, val = [], []
    for n in noise:
        cut = int(n.size * (1.0 - validation_fraction))
        if cut >= CLIP_SAMPLES:
            train.append(n[:cut])
        if n.size - cut >= CLIP_SAMPLES:
            val.append(n[cut:])
    return train, val


def silence_clips(
    noise: list[npt.NDArray[np.float32]], count: int, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """``count`` 1 s cuts of background noise at random volume (0 to 1), some pure zeros."""
    out = np.zeros((count, CLIP_SAMPLES), dtype=np.float32)
    if not noise:
        return out
    for i in range(count):
        if rng.random() < 0.1:
            continue  # digital silence
        src = noise[int(rng.integers(len(noise)))]
        start = int(rng.integers(0, src.size - CLIP_SAMPLES + 1))
        out[i] = src[start : start + CLIP_SAMPLES] * rng.uniform(0.0, 1.0)
    return out
