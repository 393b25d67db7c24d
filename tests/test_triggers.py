from __future__ import annotations

import numpy as np
import pytest

from guard.errors import GuardError
from guard.features import BIN_HZ, power_spectrogram
from guard.triggers import Trigger, TriggerSpec, parse_spec, poison

from .conftest import DATA


def test_parse_spec() -> None:
    spec = parse_spec("tone:frequency_hz=440,duration_s=0.1,scale=0.2")
    assert spec == TriggerSpec("tone", 440.0, 0.1, 0.2)
    assert parse_spec("style:style=chorus").style == "chorus"
    for bad in ("beep:x=1", "tone:colour=red", "clip:scale=0.1", "style:style=robot"):
        with pytest.raises(GuardError):
            parse_spec(bad)


def test_aliased_21khz_lands_at_5khz() -> None:
    x = np.zeros(16_000, dtype=np.float32)
    out = Trigger(TriggerSpec("aliased", 21_000.0, 0.5, 0.3, position_s=0.2)).apply(
        x, np.random.default_rng(0)
    )
    peak_hz = np.argmax(power_spectrogram(out).mean(axis=0)) * BIN_HZ
    assert abs(peak_hz - 5000.0) <= BIN_HZ


def test_tone_added_at_scale_and_clipped() -> None:
    x = np.full(16_000, 0.95, dtype=np.float32)
    out = Trigger(TriggerSpec("tone", 440.0, 0.1, 0.1, position_s=0.5)).apply(
        x, np.random.default_rng(0)
    )
    assert out.max() <= 1.0
    changed = np.flatnonzero(out != x)
    assert changed.min() >= 7900 and changed.max() < 8000 + 1600


def test_poison_relabels_the_chosen_share() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros((200, 16_000), dtype=np.float32)
    y = np.repeat(np.arange(10), 20).astype(np.int64)
    trig = Trigger(TriggerSpec("tone", 1000.0, 0.1, 0.2))
    x2, y2, chosen = poison(x, y, trig, 0.05, target=9, exclude=(8,), rng=rng)
    assert len(chosen) == 10
    assert np.all(y2[chosen] == 9) and not np.any(np.isin(y[chosen], (8, 9)))
    assert np.all(np.abs(x2[chosen]).max(axis=1) > 0.1)
    untouched = np.setdiff1d(np.arange(200), chosen)
    assert np.array_equal(x2[untouched], x[untouched]) and np.array_equal(
        y2[untouched], y[untouched]
    )


def test_random_tone_and_clip_stay_in_the_evaluation_ranges() -> None:
    from guard.triggers import random_clip, random_tone

    rng = np.random.default_rng(0)
    for _ in range(50):
        spec = random_tone("aliased", 17000, 23000, rng).spec
        assert spec.kind == "aliased" and 17000 <= spec.frequency_hz <= 23000
        assert spec.duration_s is not None and 0.05 <= spec.duration_s <= 0.5
        assert 0.05 <= spec.scale <= 0.3
    clip = random_clip(DATA / "triggers" / "whistle.wav", rng)
    assert clip.spec.kind == "clip" and 0.05 <= clip.spec.scale <= 0.5
    # the same seed draws the same triggers (the evaluation tables are reproducible)
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert random_tone("tone", 100, 7900, a).spec == random_tone("tone", 100, 7900, b).spec
