"""The development sets: the fit and calibration audio tools/build_detectors.py draws."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from guard import devdata

from .conftest import DATA


@pytest.fixture
def commands(tmp_path: Path) -> Path:
    """The committed words, a copy of some of them under training speakers' names (the
    committed clips are all validation speakers), and a background noise long enough for its
    held-back tail."""
    root = tmp_path / "commands"
    shutil.copytree(DATA / "commands", root)
    shutil.rmtree(root / "_background_noise_")
    (root / "_background_noise_").mkdir()
    noise = np.random.default_rng(0).normal(0, 0.1, 16_000 * 20).astype(np.float32)
    soundfile.write(root / "_background_noise_" / "white.wav", noise, 16_000)
    trainers = (f"{i:08x}" for i in range(10_000) if devdata.part_of(f"{i:08x}") == "train")
    for word in sorted(p for p in root.iterdir() if not p.name.startswith("_")):
        clip = sorted(word.iterdir())[0]
        shutil.copy(clip, word / f"{next(trainers)}_nohash_0{clip.suffix}")
    return root


def test_calibration_audio_is_every_calibrate_clip_half_in_noise_and_repeatable(
    commands: Path,
) -> None:
    fit, calibrate = devdata.fit_and_calibration_audio(commands, fit_clips=5, seed=0)
    again_fit, again = devdata.fit_and_calibration_audio(commands, fit_clips=5, seed=0)
    np.testing.assert_array_equal(calibrate, again)
    np.testing.assert_array_equal(fit, again_fit)
    assert len(fit) == 5
    raw = devdata.audio(devdata.clips(commands, "calibrate", None, 0))
    assert calibrate.shape == raw.shape and calibrate.dtype == np.float32
    noisy = np.array([not np.array_equal(c, r) for c, r in zip(calibrate, raw, strict=True)])
    assert 0 < noisy.sum() < len(raw)  # about half
    assert np.abs(calibrate).max() <= 1.0
    _, other = devdata.fit_and_calibration_audio(commands, fit_clips=5, seed=1)
    assert not np.array_equal(other, calibrate)
    with pytest.raises(ValueError, match="fit_clips 0"):
        devdata.fit_and_calibration_audio(commands, fit_clips=0)


def test_calibration_audio_draws_as_build_detectors_always_drew(commands: Path) -> None:
    """The shipped state's thresholds were set on these draws: the loader
    tools/build_detectors.py had inline before it moved here, verbatim."""
    seed, fit_clips = 3, 6
    rng = np.random.default_rng(seed)

    def load(part: str, limit: int | None) -> np.ndarray:
        x = devdata.audio(devdata.clips(commands, part, limit, seed))
        half = rng.random(len(x)) < 0.5
        x[half] = devdata.add_noise(x[half], devdata.noise(commands, part), rng, 0.3)
        return x

    fit_set, cal_set = load("train", fit_clips), load("calibrate", None)
    fit, calibrate = devdata.fit_and_calibration_audio(commands, fit_clips, seed)
    np.testing.assert_array_equal(fit, fit_set)
    np.testing.assert_array_equal(calibrate, cal_set)
