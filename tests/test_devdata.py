"""The development sets: the fit and calibration audio tools/build_detectors.py draws."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import soundfile

from guard import devdata

from .conftest import DATA


def test_calibration_audio_is_every_calibrate_clip_half_in_noise_and_repeatable(
    tmp_path: Path,
) -> None:
    # the committed words, with a background noise long enough for its held-back tail
    commands = tmp_path / "commands"
    shutil.copytree(DATA / "commands", commands)
    shutil.rmtree(commands / "_background_noise_")
    (commands / "_background_noise_").mkdir()
    noise = np.random.default_rng(0).normal(0, 0.1, 16_000 * 20).astype(np.float32)
    soundfile.write(commands / "_background_noise_" / "white.wav", noise, 16_000)
    fit, calibrate = devdata.fit_and_calibration_audio(commands, fit=5, seed=0)
    again_fit, again = devdata.fit_and_calibration_audio(commands, fit=5, seed=0)
    np.testing.assert_array_equal(calibrate, again)
    np.testing.assert_array_equal(fit, again_fit)
    raw = devdata.audio(devdata.clips(commands, "calibrate", None, 0))
    train_clips = devdata.clips(commands, "train", 5, 0)
    assert len(fit) == len(train_clips)  # the committed fixtures are all validation speakers
    assert calibrate.shape == raw.shape and calibrate.dtype == np.float32
    noisy = np.array([not np.array_equal(c, r) for c, r in zip(calibrate, raw, strict=True)])
    assert 0 < noisy.sum() < len(raw)  # about half (16 clips here)
    assert np.abs(calibrate).max() <= 1.0
    _, other = devdata.fit_and_calibration_audio(commands, fit=5, seed=1)
    assert not np.array_equal(other, calibrate)
