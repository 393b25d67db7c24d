"""The spectral trigger detector on real speech: fires on triggers added to held-out clips.

Fit on the 24 FLAC command clips, calibrate on 10 of the 20 WAV clips (threshold = their
highest score), check the other 10 clean and with each trigger added. The trigger
generators are shared with ``test_detector_gmm``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from scipy import signal

from guard.analysis import Analysis, Utterance, analyse, analyse_batch
from guard.audio import SAMPLE_RATE_HZ, fit_window, read_audio
from guard.classifier import CommandClassifier
from guard.detectors.base import NotFittedError
from guard.detectors.spectral import (
    BURST_BAND_HZ,
    PHASE_FLOOR_DB,
    PHASE_RUNS,
    SUB_FEATURES,
    TONE_BAND_EDGES_HZ,
    SpectralTriggerDetector,
    tone_burst,
    tone_phase,
)
from guard.features import CLIP_SAMPLES, Features
from guard.manifest import write_manifest

from .conftest import DATA, WAV_FIXTURES

Clips = npt.NDArray[np.float32]
Attack = Callable[[Clips, np.random.Generator], Clips]
FLAC_SPEECH = sorted(
    p for p in (DATA / "commands").rglob("*.flac") if p.parent.name != "_background_noise_"
)
MAX_FALSE_BLOCKS = 1
"""Of the 10 held-out clean clips, at most this many may score above the calibrated threshold."""


def load(paths: list[Path]) -> Clips:
    return np.stack([fit_window(read_audio(p), CLIP_SAMPLES) for p in paths])


def split_clips() -> tuple[Clips, Clips, Clips]:
    """(fit: 24 FLAC clips, calibrate: 10 WAV clips, held out: the other 10 WAV clips)."""
    wav = load(WAV_FIXTURES)
    return load(FLAC_SPEECH), wav[0::2], wav[1::2]


def add_at_random(
    clips: Clips, trigger: npt.NDArray[np.float64], rng: np.random.Generator
) -> Clips:
    """Add ``trigger`` to each clip at a random position (it fits inside the clip)."""
    out = clips.astype(np.float64)
    for row in out:
        start = int(rng.integers(0, CLIP_SAMPLES - len(trigger) + 1))
        row[start : start + len(trigger)] += trigger
    return out.astype(np.float32)


def tone(freq_hz: float, duration_s: float, scale: float) -> Attack:
    """ART-style tone trigger: a sine of amplitude ``scale`` (full scale = 1), no ramps.
    A frequency above Nyquist is sampled as is, i.e. aliased (no anti-alias filter)."""

    def attack(clips: Clips, rng: np.random.Generator) -> Clips:
        n = np.arange(round(duration_s * SAMPLE_RATE_HZ))
        phase = rng.uniform(0.0, 2 * np.pi)
        sine = scale * np.sin(2 * np.pi * freq_hz * n / SAMPLE_RATE_HZ + phase)
        return add_at_random(clips, sine, rng)

    return attack


def click_train(scale: float, period_s: float = 0.1) -> Attack:
    """1 ms decaying clicks every ``period_s``, peak ``scale``, over the whole clip."""

    def attack(clips: Clips, rng: np.random.Generator) -> Clips:
        period = round(period_s * SAMPLE_RATE_HZ)
        train = np.zeros(CLIP_SAMPLES - period)
        k = np.arange(16)
        for start in range(0, len(train) - 16, period):
            train[start : start + 16] += scale * np.exp(-k / 3.0) * np.where(k % 2, -1.0, 1.0)
        return add_at_random(clips, train, rng)

    return attack


def clap(scale: float) -> Attack:
    """A clap-like burst: noise with a 0.5 ms attack and a 5 ms decay, peak ``scale``."""

    def attack(clips: Clips, rng: np.random.Generator) -> Clips:
        k = np.arange(480)
        burst = rng.standard_normal(480) * np.exp(-k / 80.0) * np.minimum(1.0, k / 8.0)
        return add_at_random(clips, scale * burst / np.abs(burst).max(), rng)

    return attack


def band_noise(
    scale: float, duration_s: float, low_hz: float | None, high_hz: float | None
) -> Attack:
    """Noise filtered below ``high_hz`` or above ``low_hz`` (4th-order Butterworth), peak ``scale``."""

    def attack(clips: Clips, rng: np.random.Generator) -> Clips:
        n = round(duration_s * SAMPLE_RATE_HZ)
        if low_hz is None:
            sos = signal.butter(4, high_hz, "lowpass", fs=SAMPLE_RATE_HZ, output="sos")
        else:
            sos = signal.butter(4, low_hz, "highpass", fs=SAMPLE_RATE_HZ, output="sos")
        noise = signal.sosfilt(sos, rng.standard_normal(n + 4000))[4000:]
        return add_at_random(clips, scale * noise / np.abs(noise).max(), rng)

    return attack


ATTACKS: dict[str, Attack] = {
    "tone_440hz": tone(440.0, 0.3, 0.1),
    "tone_1khz": tone(1000.0, 0.2, 0.1),
    "tone_3khz_50ms": tone(3000.0, 0.05, 0.1),
    "tone_4khz_50ms_scale_0.05": tone(4000.0, 0.05, 0.05),
    "tone_5500hz_scale_0.05": tone(5500.0, 0.3, 0.05),
    "tone_7800hz": tone(7800.0, 0.2, 0.1),
    "aliased_21khz": tone(21_000.0, 0.2, 0.1),
    "click_train": click_train(0.3),
    "clap": clap(0.5),
    "rumble_below_60hz": band_noise(0.5, 1.0, None, 50.0),
    "hiss_above_7khz": band_noise(0.3, 0.5, 7200.0, None),
}
MIN_HITS = dict.fromkeys(ATTACKS, 10) | {"tone_440hz": 8, "tone_1khz": 8, "clap": 5}
"""Of the 10 held-out clips with the trigger added, how many must be blocked. A tone at
440 Hz or 1 kHz can sit under a loud vowel's own harmonics; a single clap on a syllable looks
like a plosive's burst."""


@pytest.fixture(scope="module")
def clips() -> tuple[Clips, Clips, Clips]:
    return split_clips()


@pytest.fixture(scope="module")
def detector(
    clips: tuple[Clips, Clips, Clips], classifier: CommandClassifier
) -> SpectralTriggerDetector:
    fit, calibrate, _ = clips
    det = SpectralTriggerDetector().fit(analyse_batch(fit, classifier))
    return det.calibrate(analyse_batch(calibrate, classifier), target_false_block=0.0)


def held_out(clips: tuple[Clips, Clips, Clips], classifier: CommandClassifier) -> list[Analysis]:
    return analyse_batch(clips[2], classifier)


def test_quiet_on_held_out_clean(
    detector: SpectralTriggerDetector,
    clips: tuple[Clips, Clips, Clips],
    classifier: CommandClassifier,
) -> None:
    blocked = int((detector.predict(held_out(clips, classifier)) == -1).sum())
    assert blocked <= MAX_FALSE_BLOCKS


@pytest.mark.parametrize("attack_name", sorted(ATTACKS))
def test_fires_on_trigger(
    attack_name: str,
    detector: SpectralTriggerDetector,
    clips: tuple[Clips, Clips, Clips],
    classifier: CommandClassifier,
) -> None:
    rng = np.random.default_rng(sorted(ATTACKS).index(attack_name))
    attacked = analyse_batch(ATTACKS[attack_name](clips[2], rng), classifier)
    scores = detector.anomaly_score(attacked)
    hits = int((scores > detector.threshold()).sum())
    assert hits >= MIN_HITS[attack_name], (scores.round(2), detector.threshold())


def test_reasons_name_the_trigger(
    detector: SpectralTriggerDetector,
    clips: tuple[Clips, Clips, Clips],
    classifier: CommandClassifier,
) -> None:
    """The sub-feature that fires is the one made for that trigger."""
    expected = {
        "tone_1khz": {"tone", "tone_phase", "tone_burst"},
        "aliased_21khz": {"tone", "tone_phase", "tone_burst"},
        "rumble_below_60hz": {"low_band"},
        "hiss_above_7khz": {"high_band"},
    }
    rng = np.random.default_rng(7)
    for attack_name, sub_feature in expected.items():
        attacked = analyse_batch(ATTACKS[attack_name](clips[2][:3], rng), classifier)
        scores = detector.component_scores(attacked)
        assert set(scores) == set(SUB_FEATURES)
        top = [max(scores, key=lambda k: scores[k][i]) for i in range(3)]
        assert set(top) <= sub_feature, (attack_name, top)


def degenerate_clips() -> Clips:
    """Digital silence, a DC offset, one full-scale impulse, full-band noise."""
    rng = np.random.default_rng(0)
    impulse = np.zeros(CLIP_SAMPLES)
    impulse[-1] = 1.0
    noise = np.clip(rng.standard_normal(CLIP_SAMPLES), -1.0, 1.0)
    return np.stack([np.zeros(CLIP_SAMPLES), np.full(CLIP_SAMPLES, 0.5), impulse, noise]).astype(
        np.float32
    )


def test_degenerate_input_scores_are_finite(
    detector: SpectralTriggerDetector, classifier: CommandClassifier
) -> None:
    with np.errstate(divide="raise", invalid="raise"):
        scores = detector.anomaly_score(analyse_batch(degenerate_clips(), classifier))
    assert np.isfinite(scores).all()
    assert scores[3] > detector.threshold()  # noise with no speech is not a command


def test_save_load_round_trip(
    detector: SpectralTriggerDetector,
    clips: tuple[Clips, Clips, Clips],
    classifier: CommandClassifier,
    tmp_path: Path,
) -> None:
    path = tmp_path / "spectral.npz"
    detector.save(path)
    write_manifest(tmp_path, [path.name])
    loaded = SpectralTriggerDetector.load(path)
    analyses = held_out(clips, classifier)[:4]
    np.testing.assert_array_equal(loaded.anomaly_score(analyses), detector.anomaly_score(analyses))
    assert loaded.threshold() == detector.threshold()


def test_fit_returns_self_and_unfitted_raises(
    clips: tuple[Clips, Clips, Clips], classifier: CommandClassifier
) -> None:
    analyses = [analyse(Utterance(x), classifier) for x in clips[0][:3]]
    det = SpectralTriggerDetector()
    with pytest.raises(NotFittedError, match="fit"):
        det.anomaly_score(analyses)
    with pytest.raises(NotFittedError):
        det.threshold()
    assert det.fit(analyses) is det
    assert det.anomaly_score(analyses).shape == (3,)


def _phase_steadiness(samples: npt.NDArray[np.float64], band_hz: tuple[int, int]) -> float:
    """``tone_phase``'s value (dB below 1 rad) for the longer run in the band starting at
    ``band_hz[0]``."""
    f = Features(samples.astype(np.float32))
    values = tone_phase(f.spectrum, f.power).reshape(len(PHASE_RUNS), -1)
    return float(values[-1, list(TONE_BAND_EDGES_HZ).index(band_hz[0])])


def test_tone_phase_tells_a_steady_sine_from_a_drifting_one() -> None:
    """A fixed 440 Hz sine keeps its phase advance; one drifting like a voice (10 % over the
    clip: a voice's pitch moves more within one word) or with a 5 Hz vibrato of 0.5 % does not;
    noise has no steady phase."""
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE_HZ
    steady = 0.1 * np.sin(2 * np.pi * 440.0 * t)
    glide = 0.1 * np.sin(2 * np.pi * 440.0 * (t + 0.05 * t**2))  # 440 -> 484 Hz
    vibrato = 0.1 * np.sin(2 * np.pi * 440.0 * t + 0.005 * 440 / 5 * np.sin(2 * np.pi * 5 * t))
    noise = np.random.default_rng(0).standard_normal(CLIP_SAMPLES) * 0.05
    band = (300, 450)
    assert _phase_steadiness(steady, band) > 40.0  # < 0.01 rad over 8 frames
    for other in (glide, vibrato, noise):
        assert _phase_steadiness(other, band) < 26.0  # > 0.05 rad twice in every run


def test_tone_phase_ignores_dc_offset_and_silence() -> None:
    """A DC offset's leakage and digital silence have steady (or no) phase: neither is a tone."""
    for clip in (np.zeros(CLIP_SAMPLES), np.full(CLIP_SAMPLES, 0.3)):
        f = Features(clip.astype(np.float32))
        assert np.all(tone_phase(f.spectrum, f.power) == PHASE_FLOOR_DB)


def _burst_db(samples: npt.NDArray[np.float64], band_hz: tuple[int, int]) -> float:
    """``tone_burst``'s value (dB) in the band starting at ``band_hz[0]``."""
    f = Features(samples.astype(np.float32))
    bands = list(TONE_BAND_EDGES_HZ[TONE_BAND_EDGES_HZ.index(BURST_BAND_HZ[0]) :])
    return float(tone_burst(f.power)[bands.index(band_hz[0])])


def test_tone_burst_sees_a_short_tone_and_not_a_steady_whine() -> None:
    """A 60 ms sine (3 frames: too short for the runs of ``tone``) on a spoken command stands
    out as a burst in its band; the same sine lasting the whole clip does not (it never
    arrives: it stays near its median level, a few dB up where the voice adds to it), and
    neither does the command alone."""
    speech = fit_window(read_audio(WAV_FIXTURES[0]), CLIP_SAMPLES).astype(np.float64)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE_HZ
    sine = 0.2 * np.sin(2 * np.pi * 2900.0 * t)
    short = speech.copy()
    short[8000:8960] += sine[8000:8960]
    band = (2000, 3000)
    assert _burst_db(short, band) > 30.0
    assert _burst_db(speech, band) < 20.0
    assert _burst_db(speech + sine, band) < 10.0
