"""The one decision path: Guard.check -> Verdict, with the shipped model and detector state."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from guard.analysis import Analysis
from guard.audio import read_audio
from guard.config import load_settings
from guard.detectors.base import Detector
from guard.errors import ModelError
from guard.guard import Guard

from .conftest import MODELS, ROOT, WAV_FIXTURES


@pytest.fixture(scope="module")
def guard() -> Guard:
    return Guard.from_config(ROOT / "config.yaml")


def test_clean_fixtures_are_allowed(guard: Guard) -> None:
    verdicts = [guard.check(read_audio(p)) for p in WAV_FIXTURES]
    blocked = [
        (p.name, v.reasons) for p, v in zip(WAV_FIXTURES, verdicts, strict=True) if not v.allowed
    ]
    assert len(blocked) <= 1, blocked  # calibrated at 1% clean false-block
    v = verdicts[0]
    assert set(v.scores) == set(v.thresholds) == {d.name for d in guard.detectors}
    record = v.to_record()
    assert record["verdict"] in ("allow", "block") and record["latency_ms"] > 0


def test_loud_tone_is_blocked_by_spectral(guard: Guard) -> None:
    x = read_audio(WAV_FIXTURES[0])
    t = np.arange(len(x)) / 16_000
    x = np.clip(x + 0.2 * np.sin(2 * np.pi * 3000 * t).astype(np.float32), -1, 1)
    v = guard.check(x)
    assert v.decision == "block" and "spectral" in v.reasons


def test_other_rates_are_resampled(guard: Guard) -> None:
    from scipy.signal import resample_poly

    x = read_audio(WAV_FIXTURES[2])
    at_48k = resample_poly(x, 3, 1).astype(np.float32)
    a, b = guard.check(x), guard.check(at_48k, sample_rate_hz=48_000)
    assert a.label == b.label


class _Broken(Detector):
    """A detector whose scoring raises, as a corrupted or buggy detector would."""

    name = "broken"

    def get_params(self) -> dict[str, Any]:
        return {}

    def _fit(self, clean: Sequence[Analysis]) -> None:
        pass

    def anomaly_score(self, analyses: Sequence[Analysis]) -> npt.NDArray[np.float64]:
        raise FloatingPointError("scoring blew up")

    def _fitted_arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {}

    def _set_fitted_arrays(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        pass


def test_detector_error_fails_closed(guard: Guard, caplog: pytest.LogCaptureFixture) -> None:
    broken = _Broken()
    broken.threshold_ = 0.0
    g = Guard(guard.model, [*guard.detectors, broken])
    v = g.check(read_audio(WAV_FIXTURES[0]))
    assert v.decision == "block" and "error" in v.reasons
    assert "scoring blew up" in v.errors["broken"]
    assert "detector broken failed" in caplog.text


def test_non_finite_audio_fails_closed(guard: Guard) -> None:
    x = read_audio(WAV_FIXTURES[0])
    x[100:200] = np.nan
    v = guard.check(x)
    assert v.decision == "block" and "error" in v.reasons


def test_detectors_fitted_for_another_model_are_refused(tmp_path: Path) -> None:
    shutil.copytree(MODELS, tmp_path / "models", ignore=shutil.ignore_patterns("eval"))
    settings = load_settings(ROOT / "config.yaml")
    other = tmp_path / "models" / "commands_float.tflite"
    with pytest.raises(ModelError, match="fitted for another model"):
        Guard.from_settings(settings, model_path=other)


def test_no_detectors_is_refused(tmp_path: Path) -> None:
    from guard.errors import ConfigError

    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"model:\n  path: {MODELS / 'commands.tflite'}\ndetectors:\n  enabled: []\n")
    with pytest.raises(ConfigError, match=r"detectors\.enabled is empty"):
        Guard.from_config(cfg)


def test_a_strip_blend_count_the_state_was_not_fitted_with_is_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from dataclasses import replace

    from guard.detectors import registry
    from guard.detectors.strip import StripDetector

    shipped = load_settings(ROOT / "config.yaml")
    vendor = MODELS / "eval" / "backdoor_cough.tflite"
    state = MODELS / "eval" / "backdoor_cough.detectors"  # its STRIP runs, with 10 blends
    for blends, warned in ((10, False), (3, True)):
        caplog.clear()
        settings = replace(
            shipped,
            model=replace(shipped.model, path=vendor),
            detectors=replace(
                shipped.detectors,
                state_dir=state,
                strip_blends=blends,
                enabled=tuple(registry.held(state)),  # fitted before perturbation_net
            ),
        )
        with caplog.at_level("WARNING", logger="guard.guard"):
            guard = Guard.from_settings(settings)
        said = [r.getMessage() for r in caplog.records]
        assert bool(said) == warned, said
        if warned:
            assert said == [
                f"{state}: STRIP was fitted with 10 blends, detectors.strip_blends is 3: "
                "running with 10 until guard calibrate refits it"
            ]
        (strip,) = [d for d in guard.detectors if isinstance(d, StripDetector)]
        assert len(strip.bank_) == 10  # what the state holds, whatever the config says
