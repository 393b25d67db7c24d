"""The steady-tone detector: a sine's phase advances by the same angle every hop; a voice's
harmonics and noise do not. Synthetic signals for the measure, real clips (tests/data) and the
shipped state for the detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from guard.analysis import Analysis, analyse_batch
from guard.audio import SAMPLE_RATE_HZ, fit_window, read_audio
from guard.classifier import CommandClassifier
from guard.detectors import registry
from guard.detectors.base import NotFittedError
from guard.detectors.steady_tone import (
    BAND_EDGES_HZ,
    FLOOR_DB,
    RUNS,
    WINDOW_SAMPLES,
    SteadyToneDetector,
    steadiness_db,
)
from guard.devdata import part_of
from guard.errors import ModelError
from guard.features import CLIP_SAMPLES
from guard.manifest import write_manifest

from .conftest import DATA, MODELS
from .test_detector_spectral import split_clips, tone

T_S = np.arange(SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
BANDS = len(BAND_EDGES_HZ) - 1


def _band_of(freq_hz: float) -> int:
    """The band holding the bin nearest ``freq_hz`` (a band starts at the bin at or below its
    edge: 440 Hz, bin 28 at 437.5 Hz, is the 450-700 Hz band's first)."""
    bin_hz = SAMPLE_RATE_HZ / WINDOW_SAMPLES
    starts = [int(f / bin_hz) for f in BAND_EDGES_HZ]
    return int(np.searchsorted(starts, round(freq_hz / bin_hz), side="right")) - 1


def _clean_paths() -> list[Path]:
    """Every clean fixture clip (tests/data/wav and the FLAC commands)."""
    paths = sorted((DATA / "wav").glob("*.wav")) + sorted((DATA / "commands").rglob("*.flac"))
    return [p for p in paths if "_background_noise_" not in str(p)]


def _noise(scale: float, seed: int = 0) -> npt.NDArray[np.float64]:
    return scale * np.random.default_rng(seed).standard_normal(SAMPLE_RATE_HZ)


def test_a_sine_reads_steady_in_its_band_and_noise_nowhere() -> None:
    sine = steadiness_db((0.1 * np.sin(2 * np.pi * 440.0 * T_S) + _noise(1e-3)).astype(np.float32))
    assert sine.shape == (len(RUNS) * BANDS,)
    for run in range(len(RUNS)):
        assert sine[run * BANDS + _band_of(440.0)] > 50.0  # 60 dB is a perfect sine
    # noise is steady somewhere by chance (~0.03 rad), never as a sine is
    noise = steadiness_db(_noise(0.1).astype(np.float32))
    assert np.all((noise >= FLOOR_DB) & (noise < 32.0)), noise.round(1)
    # a DC offset (its own bin perfectly steady, and the loudest) neither reads as a tone nor
    # hides one: each frame's mean is taken out first
    offset = steadiness_db((0.3 + _noise(0.01, 1)).astype(np.float32))
    assert np.all(offset < 32.0), offset.round(1)
    hidden = 0.3 + 0.003 * np.sin(2 * np.pi * 440.0 * T_S) + _noise(1e-4, 2)
    assert steadiness_db(hidden.astype(np.float32))[_band_of(440.0)] > 50.0


def test_a_gliding_tone_like_a_voices_intonation_reads_far_less_steady() -> None:
    # 440 -> 490 Hz over the second: a harmonic of a voice whose pitch rises by 11 %
    glide = np.sin(2 * np.pi * (440.0 * T_S + 25.0 * T_S**2))
    steady = steadiness_db(
        (0.1 * np.sin(2 * np.pi * 460.0 * T_S) + _noise(1e-3)).astype(np.float32)
    )
    gliding = steadiness_db((0.1 * glide + _noise(1e-3)).astype(np.float32))
    band = _band_of(460.0)
    assert steady[band] - gliding[band] > 20.0, (steady[band], gliding[band])


def test_digital_silence_with_a_faint_sine_in_it_is_not_a_tone() -> None:
    assert np.all(steadiness_db(np.zeros(SAMPLE_RATE_HZ, np.float32)) == FLOOR_DB)
    faint = 1e-6 * np.sin(2 * np.pi * 440.0 * T_S)  # -120 dBFS: no usable phase
    assert np.all(steadiness_db(faint.astype(np.float32)) == FLOOR_DB)


def test_bad_lengths_and_grids_are_errors_naming_them() -> None:
    with pytest.raises(ValueError, match="needs at least 2688 samples, got 2000"):
        steadiness_db(np.zeros(2000, np.float32))
    with pytest.raises(ValueError, match=r"band edges \(100, 105, 200\) Hz do not fall"):
        steadiness_db(np.zeros(SAMPLE_RATE_HZ, np.float32), band_edges_hz=(100, 105, 200))


@pytest.fixture(scope="module")
def shipped() -> SteadyToneDetector:
    (detector,) = registry.load(MODELS / "detectors", ["steady_tone"])
    assert isinstance(detector, SteadyToneDetector)
    assert detector.budget_weight == 0  # its threshold is its highest calibrate-clip score
    return detector


def test_the_shipped_state_is_quiet_on_the_evaluate_speakers_fixtures(
    shipped: SteadyToneDetector, classifier: CommandClassifier
) -> None:
    # only fixtures of "evaluate" speakers: the threshold is the highest score on the
    # calibrate speakers' clips, so on theirs this would hold by construction
    paths = [
        p
        for p in _clean_paths()
        if part_of(p.stem.split("_nohash_")[0].split("__")[-1]) == "evaluate"
    ]
    assert len(paths) >= 10
    clips = np.stack([fit_window(read_audio(p), CLIP_SAMPLES) for p in paths])
    scores = shipped.anomaly_score(analyse_batch(clips, classifier))
    assert np.all(scores <= shipped.threshold()), scores.round(2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_shipped_state_fires_on_a_tone_among_a_voices_harmonics(
    shipped: SteadyToneDetector, classifier: CommandClassifier, seed: int
) -> None:
    # the backdoored fixture's trigger: 440 Hz, 0.25 s, amplitude 0.1, anywhere in the clip
    held_out = split_clips()[2]
    attacked = tone(440.0, 0.25, 0.1)(held_out, np.random.default_rng(seed))
    scores = shipped.anomaly_score(analyse_batch(attacked, classifier))
    assert int((scores > shipped.threshold()).sum()) >= 7, scores.round(2)


@pytest.fixture(scope="module")
def fitted(classifier: CommandClassifier) -> tuple[SteadyToneDetector, list[Analysis]]:
    fit, calibrate, _ = split_clips()
    detector = SteadyToneDetector(min_spread_db=4.0).fit(analyse_batch(fit, classifier))
    calibration = analyse_batch(calibrate, classifier)
    return detector.calibrate(calibration, 0.0), calibration


def test_it_persists_as_arrays(
    fitted: tuple[SteadyToneDetector, list[Analysis]], tmp_path: Path
) -> None:
    detector, analyses = fitted
    assert detector.threshold() == detector.anomaly_score(analyses).max()
    detector.save(tmp_path / "steady_tone.npz")
    write_manifest(tmp_path, ["steady_tone.npz"])
    loaded = SteadyToneDetector.load(tmp_path / "steady_tone.npz")
    np.testing.assert_array_equal(loaded.anomaly_score(analyses), detector.anomaly_score(analyses))
    assert loaded.threshold() == detector.threshold()
    assert loaded.get_params() == detector.get_params() == {"min_spread_db": 4.0}


def test_scoring_before_fit_is_an_error(classifier: CommandClassifier) -> None:
    with pytest.raises(NotFittedError, match="steady_tone: call fit"):
        SteadyToneDetector().anomaly_score(analyse_batch(split_clips()[2][:1], classifier))


def test_a_state_with_other_bands_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "steady_tone.npz"
    np.savez(
        path,
        location=np.zeros(3),
        spread=np.ones(3),
        __params__=np.array("{}"),
        __threshold__=np.array(1.0),
    )
    write_manifest(tmp_path, ["steady_tone.npz"])
    with pytest.raises(ModelError, match=r"steady_tone.npz: not a saved steady_tone detector"):
        SteadyToneDetector.load(path)
