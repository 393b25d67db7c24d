"""Spectral trigger detector: what clean speech does not contain, read off the shared spectra.

Backdoor triggers added to speech are often things speech never produces: a steady sine (ART's
``CacheToneTrigger``, or an ultrasonic tone folded down by a capture without an anti-alias
filter: 21 kHz sampled at 16 kHz lands on 5 kHz), energy in bands speech leaves empty (rumble
below 60 Hz, hiss above 7 kHz), a sound that never stops, or a click. Each sub-feature is
computed from the ``Features`` computed once per utterance (no STFT here):

- ``tone``: per frame, each bin's level above its spectral ring (the mean log power 3-8 bins
  away on both sides, so a Hann main lobe is excluded); a tone stays at the same bin (±1)
  while speech harmonics move. The prominence a bin keeps over every frame of a run of 2 and
  of 5 frames, maxed over time, per frequency band: low bands are compared with the steady
  fundamentals of clean voices, high bands with clean high bands. A peak more than 30 dB
  below the utterance's loudest bin counts for less (clean recordings have faint whines).
- ``tone_phase``: a steady sine keeps its frequency exactly, so its phase advances by the same
  angle every hop and the second difference of a bin's phase over three frames is ~0 (the
  angle of ``X[t+2] * conj(X[t+1])**2 * X[t]``, no unwrapping). A voice's harmonics drift with
  its pitch: 0.8 Hz of drift between hops already turns 0.1 rad. Per bin, the worst second
  difference over a run of 3 and of 6 values (5 and 8 frames, ~0.11 and ~0.17 s; the longer
  run may spare one value), at its best moment, counted only where all frames are within
  ``PHASE_MARGIN_DB`` of the loudest bin; per tone band, the best bin, in dB below 1 rad
  (``-20 log10(radians + 0.001)``, floored at 20 dB, 0.1 rad: noise reaches that somewhere
  by chance; 60 dB is a perfect sine). This is what catches a tone
  sitting among a voice's low harmonics (440 Hz), where the prominence above does not.
- ``low_band``: the level the band below ~60 Hz holds for half the frames (after removing a
  DC offset, which is harmless and common), relative to the loudest frame's 60 Hz-7 kHz
  energy, in dB.
- ``high_band``: the utterance's energy above 7 kHz relative to its 60 Hz-7 kHz energy, in
  dB. Both band ratios are unbounded, so a rumble or hiss louder than the speech scores high.
- ``stationary``: per band, the level the band never drops below (10th percentile over
  frames, speech pauses included) relative to the loudest frame, in dB.
- ``click``: broadband (above 2 kHz) energy that jumps up and falls back within 1-2 frames.
- ``onset``: the sharpest rise of the high-passed sample envelope in 2 ms blocks, against
  the 4-12 ms before it.

Scores are z-like at two levels, both fitted on clean speech: each band of a sub-feature
is scored ``(value - clean median) / scale`` with the scale set so the clean 99th percentile
lands at 2.33 (where a normal distribution has it; clean tails here are far from normal and
differ between bands, and matching the tail rather than the MAD makes equal scores mean equal
false-block odds); then a sub-feature's max over its bands, whose clean tail grows with the
number of bands, is normalised again the same way. The anomaly score is the max over
sub-features; ``component_scores`` gives each one, the reasons for a block.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from guard.analysis import Analysis
from guard.detectors.base import Detector, NotFittedError, tail_model
from guard.features import BIN_HZ, CLIP_SAMPLES, Features, stft

FloatArray = npt.NDArray[np.float64]

SUB_FEATURES = (
    "tone",
    "tone_phase",
    "tone_burst",
    "low_band",
    "high_band",
    "stationary",
    "click",
    "onset",
)
TONE_RUNS_FRAMES = (2, 5)
"""Run lengths (frames, 20 ms hop) a narrowband peak must last: ~50 ms and ~110 ms."""
PHASE_RUNS = (3, 6)
"""Run lengths (second phase differences) a steady phase must hold: 5 and 8 frames."""
PHASE_SPARED = (0, 1)
"""Per run length, how many of its values may break the run (a plosive or a loud harmonic
crossing the tone's bin for one frame)."""
PHASE_FLOOR_DB = 20.0
"""Steadiness below this (0.1 rad) is what noise shows by chance somewhere in a band of
usable bins: all such values count the same, so a band that clean speech rarely makes usable
(5-6 kHz) does not score chance as a tone."""
PHASE_MARGIN_DB = 40.0
"""Bins further than this below the utterance's loudest bin have no usable phase."""
TONE_BAND_EDGES_HZ = (100, 200, 300, 450, 700, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 7000, 7950)
"""Bands over which the tone prominence is normalised: narrow where voices have fundamentals."""
STATIONARY_BANDS = 16
"""Equal-width bands (500 Hz) for the stationary floor."""
RING_NEAR_BINS, RING_FAR_BINS = 3, 8
"""The spectral ring a bin is compared with (Hann main lobe is ±2.1 bins at N_FFT=512)."""
LOW_CUTOFF_HZ = 60.0
HIGH_CUTOFF_HZ = 7000.0
CLICK_LOW_HZ = 2000.0
TONE_MARGIN_DB = 30.0
"""A narrowband peak further than this below the utterance's loudest bin loses the excess."""
BURST_MARGIN_DB = 10.0
"""``tone_burst``: a one-frame peak further than this below the loudest bin loses the excess."""
BURST_BAND_HZ = (700, 7000)
"""``tone_burst`` reads the tone bands between these edges. Below, a voice's loudest
harmonics make one-frame peaks of their own (on held-out clips tones were caught as often from
450 or 700 Hz up as from 100 Hz up, aliased tones slightly more often from 700 Hz); above,
``high_band`` owns the energy, and a hiss there shows one-frame chance peaks."""
FLOOR_DB = 60.0
"""Levels more than this below the loudest frame are clamped (no prominence from dither)."""
MIN_LEVEL_DB = -FLOOR_DB - 20.0
"""Lowest value of the level features (digital silence would give -inf)."""
ONSET_BLOCK_SAMPLES = 32
"""2 ms blocks for the onset envelope."""


def _db(x: npt.NDArray[Any]) -> FloatArray:
    return np.asarray(10.0 * np.log10(np.maximum(x, 1e-30)), dtype=np.float64)


def _bin(freq_hz: float) -> int:
    return round(freq_hz / BIN_HZ)


@lru_cache(maxsize=1)
def _window_dft() -> npt.NDArray[np.complex128]:
    """How a DC offset of 1 shows in every bin of a frame (the window's DFT)."""
    return np.asarray(stft(np.ones(CLIP_SAMPLES, dtype=np.float32))[0], np.complex128)


def _dc_offset(spectrum: npt.NDArray[np.complex128]) -> tuple[float, npt.NDArray[np.bool_]]:
    """The clip's DC offset read off bin 0 (median over frames), and which frames carry it."""
    active = np.abs(spectrum[:, 0]) > 0  # zero-padded frames carry no offset
    w0 = _window_dft()[0]
    dc = float(np.median((spectrum[active, 0] / w0).real)) if active.any() else 0.0
    return dc, active


def _ring_mean(level_db: FloatArray) -> FloatArray:
    """Mean of ``level_db`` over bins at offsets ±RING_NEAR..±RING_FAR (edge-padded)."""
    far, near = RING_FAR_BINS, RING_NEAR_BINS
    padded = np.pad(level_db, ((0, 0), (far, far)), mode="edge")
    c = np.concatenate([np.zeros((len(level_db), 1)), np.cumsum(padded, axis=1)], axis=1)
    k = np.arange(level_db.shape[1]) + far
    left = c[:, k - near + 1] - c[:, k - far]
    right = c[:, k + far + 1] - c[:, k + near]
    return np.asarray((left + right) / (2 * (far - near + 1)), dtype=np.float64)


def _level_and_prominence(power: npt.NDArray[np.float32]) -> tuple[FloatArray, FloatArray]:
    """Per frame and bin: the level (dB, floored) and its excess over the spectral ring (dB)."""
    p = power.astype(np.float64)
    floor = p.mean(axis=1).max() * 10 ** (-FLOOR_DB / 10) + 1e-20
    level_db = _db(p + floor)
    return level_db, level_db - _ring_mean(level_db)


def _tone_bands(prominence: FloatArray) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """The tone bands' bins, each the max of itself and its two neighbours (a tone between
    bins, or drifting by one), and where each band starts."""
    edges = [_bin(f) for f in TONE_BAND_EDGES_HZ]
    band = prominence[:, edges[0] - 1 : edges[-1] + 2]
    pooled = np.maximum(np.maximum(band[:, :-2], band[:, 1:-1]), band[:, 2:])
    return pooled, np.asarray(edges[:-1]) - edges[0]


def tone_prominence(
    power: npt.NDArray[np.float32],
    level_and_prominence: tuple[FloatArray, FloatArray] | None = None,
) -> FloatArray:
    """Per run length and tone band: the highest prominence (dB) a bin (±1) keeps over a run.

    Returns a vector of ``len(TONE_RUNS_FRAMES) * (len(TONE_BAND_EDGES_HZ) - 1)`` values.
    """
    level_db, prominence = level_and_prominence or _level_and_prominence(power)
    # Above the ring, and not more than TONE_MARGIN_DB below the loudest bin: faint steady
    # whines of clean recordings sit 35-50 dB down; a trigger that steers a model does not.
    pooled, starts = _tone_bands(
        prominence + np.minimum(0.0, level_db - level_db.max() + TONE_MARGIN_DB)
    )
    out = []
    for run in TONE_RUNS_FRAMES:
        windows = np.lib.stride_tricks.sliding_window_view(pooled, run, axis=0)
        per_bin = windows.min(axis=-1).max(axis=0)
        out.append(np.maximum.reduceat(per_bin, starts))
    return np.concatenate(out)


def tone_burst(
    power: npt.NDArray[np.float32],
    level_and_prominence: tuple[FloatArray, FloatArray] | None = None,
) -> FloatArray:
    """Per tone band: the highest one-frame prominence (dB) of a loud narrowband burst.

    A bin's prominence above the spectral ring loses the excess when the bin is more than
    ``BURST_MARGIN_DB`` below the loudest bin, and counts only as far as the bin also rises
    above its own median level over the clip. Returns one value per tone band within
    ``BURST_BAND_HZ``.
    """
    level_db, prominence = level_and_prominence or _level_and_prominence(power)
    loud = prominence + np.minimum(0.0, level_db - level_db.max() + BURST_MARGIN_DB)
    burst = np.minimum(loud, level_db - np.median(level_db, axis=0, keepdims=True))
    pooled, starts = _tone_bands(burst)
    per_band = np.maximum.reduceat(pooled.max(axis=0), starts)
    lo, hi = (TONE_BAND_EDGES_HZ.index(f) for f in BURST_BAND_HZ)
    return np.asarray(per_band[lo:hi], np.float64)


def _sliding_worst(values: FloatArray, run: int, spared: int) -> FloatArray:
    """Over each window of ``run`` rows: the largest value, or the second largest when
    ``spared`` is 1 (one value may break the run)."""
    if spared not in (0, 1):
        raise ValueError(f"spared must be 0 or 1, got {spared}")
    n = len(values) - run + 1
    top = np.full((n, values.shape[1]), -np.inf)
    second = top.copy()
    for j in range(run):
        v = values[j : j + n]
        second = np.maximum(second, np.minimum(top, v))
        top = np.maximum(top, v)
    return top if spared == 0 else second


def tone_phase(spectrum: npt.NDArray[np.complex64], power: npt.NDArray[np.float32]) -> FloatArray:
    """Per run length and tone band: how steady a bin's phase advance stays, in dB below 1 rad.

    Returns a vector of ``len(PHASE_RUNS) * (len(TONE_BAND_EDGES_HZ) - 1)`` values.
    """
    s = spectrum.astype(np.complex128)
    dc, active = _dc_offset(s)  # a DC offset's leakage has a perfectly steady phase too
    s = s - dc * active[:, None] * _window_dft()[None, :]
    p = s.real**2 + s.imag**2
    floor = max(float(p.max()) * 10 ** (-PHASE_MARGIN_DB / 10), float(power.max()) * 1e-9)
    edges = [_bin(f) for f in TONE_BAND_EDGES_HZ]
    lo, hi = edges[0], edges[-1] + 1
    s, p = s[:, lo:hi], p[:, lo:hi]
    starts = np.asarray(edges[:-1]) - lo
    return phase_steadiness_db(s, p, p >= floor, starts, PHASE_RUNS, PHASE_SPARED)


def phase_steadiness_db(
    spectrum: npt.NDArray[np.complex128],
    power: FloatArray,
    usable: npt.NDArray[np.bool_],
    starts: npt.NDArray[np.intp],
    runs: Sequence[int],
    spared: Sequence[int],
) -> FloatArray:
    """Per run length and band: how steady the steadiest bin's phase advance stays, in dB
    below 1 rad, floored at ``PHASE_FLOOR_DB``.

    ``spectrum`` and ``power`` are (frames, bins); a bin counts only where it is ``usable`` in
    all three frames of a second difference; bands start at the bins ``starts``. Per bin, the
    worst second difference over each window of ``runs[i]`` values (``spared[i]`` of them may
    break it), at the window's best moment; per band, the best bin. Shared by ``tone_phase``
    and the steady-tone detector (guard.detectors.steady_tone), on their own grids.
    """
    s, p = spectrum, power
    middle = np.conj(s[1:-1])
    z = s[2:] * middle * middle * s[:-2]
    # -cos of the second difference rises with |angle| over [0, pi]: no arctan per bin.
    magnitude = np.sqrt(p[2:] * p[:-2]) * p[1:-1]
    unsteady = -z.real / np.maximum(magnitude, 1e-300)
    unsteady[~(usable[2:] & usable[1:-1] & usable[:-2])] = 1.0
    out = []
    for run, spare in zip(runs, spared, strict=True):
        best = np.minimum.reduceat(_sliding_worst(unsteady, run, spare).min(axis=0), starts)
        radians = np.arccos(np.clip(-best, -1.0, 1.0))
        out.append(-20.0 * np.log10(radians + 1e-3))
    return np.asarray(np.maximum(np.concatenate(out), PHASE_FLOOR_DB), dtype=np.float64)


def _low_band_db(features: Features, loudest_speech_frame: float) -> FloatArray:
    """Median over frames of the energy in bins 0-1 (< ~60 Hz), DC offset removed, in dB
    relative to the loudest frame's 60 Hz-7 kHz energy: steady rumble lifts it (without
    bound: rumble louder than the speech scores above 0 dB), a plosive's pop does not."""
    spectrum = features.spectrum[:, :2].astype(np.complex128)
    dc, active = _dc_offset(spectrum)
    residual = spectrum - dc * active[:, None] * _window_dft()[None, :2]
    low = (np.abs(residual) ** 2).sum(axis=1)
    return np.maximum(_db(np.array([np.median(low) / loudest_speech_frame])), MIN_LEVEL_DB)


def _stationary_db(power: FloatArray, loudest_frame: float) -> FloatArray:
    """Per 500 Hz band: the band's 10th-percentile frame energy relative to the loudest frame."""
    bands = power[:, 1:].reshape(power.shape[0], STATIONARY_BANDS, -1).sum(axis=2)
    floor = np.partition(bands, power.shape[0] // 10, axis=0)[power.shape[0] // 10]
    return np.maximum(_db(floor / loudest_frame), MIN_LEVEL_DB)


def _click_db(power: FloatArray, loudest_frame: float) -> FloatArray:
    """Largest rise-then-fall (dB) of the > 2 kHz frame energy over one or two frames."""
    high_db = _db(power[:, _bin(CLICK_LOW_HZ) :].sum(axis=1) + loudest_frame * 1e-6)
    step = np.diff(high_db)
    one = np.minimum(step[:-1], -step[1:])  # up into frame t, down out of it
    two = np.minimum(step[:-2], -step[2:])  # up into t, down out of t + 1
    return np.array([max(one.max(), two.max())])


def _onset_db(samples: npt.NDArray[np.float32]) -> FloatArray:
    """Sharpest rise (dB) of the first-difference energy in 2 ms blocks vs the 4-12 ms before."""
    x = samples.astype(np.float64)
    d = np.diff(x, prepend=x[0])
    energy = (d * d).reshape(-1, ONSET_BLOCK_SAMPLES).sum(axis=1)
    floor = np.percentile(energy, 95) * 1e-3 + 1e-12
    padded = np.pad(energy, (6, 0), mode="edge")
    before = np.lib.stride_tricks.sliding_window_view(padded, 5)[: len(energy)].max(axis=1)
    return _db(np.array([(energy / np.maximum(before, floor)).max()]))


def raw_features(features: Features) -> dict[str, FloatArray]:
    """Every sub-feature's raw values (dB) for one utterance, one vector per sub-feature."""
    power = features.power.astype(np.float64)
    high = _bin(HIGH_CUTOFF_HZ)
    speech_band = power[:, _bin(LOW_CUTOFF_HZ) + 1 : high].sum(axis=1) + 1e-20
    loudest_frame = float(power.sum(axis=1).max()) + 1e-20
    level_and_prominence = _level_and_prominence(features.power)
    return {
        "tone": tone_prominence(features.power, level_and_prominence),
        "tone_burst": tone_burst(features.power, level_and_prominence),
        "tone_phase": tone_phase(features.spectrum, features.power),
        "low_band": _low_band_db(features, float(speech_band.max())),
        "high_band": _db(np.array([power[:, high:].sum() / speech_band.sum()])),
        "stationary": _stationary_db(power, loudest_frame),
        "click": _click_db(power, loudest_frame),
        "onset": _onset_db(features.samples),
    }


class SpectralTriggerDetector(Detector):
    """Score = max over sub-features (and their bands) of the clean-normalised z-like score.

    ``min_spread_db`` floors each band's clean spread so a band that is constant on clean
    speech (a digital floor) cannot turn a fraction of a dB into a huge score.
    """

    name = "spectral"

    def __init__(self, min_spread_db: float = 2.0) -> None:
        self.min_spread_db = min_spread_db

    def get_params(self) -> dict[str, Any]:
        return {"min_spread_db": self.min_spread_db}

    def _fit(self, clean: Sequence[Analysis]) -> None:
        table = self._raw_table(clean)
        self.location_: dict[str, FloatArray] = {}
        self.spread_: dict[str, FloatArray] = {}
        for name, values in table.items():
            self.location_[name], self.spread_[name] = tail_model(values, self.min_spread_db)
        # Second level: a sub-feature's max over its bands has a longer clean tail the more
        # bands it has; normalising that max again puts every sub-feature's tail on one scale.
        first = self._band_max(table)
        for name in SUB_FEATURES:
            loc, spread = tail_model(first[name][:, None], 0.05)
            self.location_[f"{name}_max"], self.spread_[f"{name}_max"] = loc, spread

    def _band_max(self, table: dict[str, FloatArray]) -> dict[str, FloatArray]:
        return {
            name: np.asarray(
                ((table[name] - self.location_[name]) / self.spread_[name]).max(axis=1),
                dtype=np.float64,
            )
            for name in SUB_FEATURES
        }

    @staticmethod
    def _raw_table(analyses: Sequence[Analysis]) -> dict[str, FloatArray]:
        rows = [raw_features(a.features) for a in analyses]
        return {name: np.stack([r[name] for r in rows]) for name in SUB_FEATURES}

    def _check_fitted(self) -> None:
        if not hasattr(self, "location_"):
            raise NotFittedError(f"{self.name}: call fit(clean analyses) before scoring")

    def component_scores(self, analyses: Sequence[Analysis]) -> dict[str, FloatArray]:
        """Per sub-feature z-like score, one value per utterance (the reasons for a block)."""
        self._check_fitted()
        first = self._band_max(self._raw_table(analyses))
        return {
            name: (first[name] - self.location_[f"{name}_max"][0]) / self.spread_[f"{name}_max"][0]
            for name in SUB_FEATURES
        }

    def anomaly_score(self, analyses: Sequence[Analysis]) -> FloatArray:
        scores = self.component_scores(analyses)
        return np.asarray(np.max(np.stack(list(scores.values())), axis=0), dtype=np.float64)

    def _fitted_arrays(self) -> dict[str, npt.NDArray[Any]]:
        self._check_fitted()
        arrays: dict[str, npt.NDArray[Any]] = {}
        for name in self.location_:
            arrays[f"location_{name}"] = self.location_[name]
            arrays[f"spread_{name}"] = self.spread_[name]
        return arrays

    def _set_fitted_arrays(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        names = [*SUB_FEATURES, *(f"{n}_max" for n in SUB_FEATURES)]
        self.location_ = {n: np.asarray(arrays[f"location_{n}"], np.float64) for n in names}
        self.spread_ = {n: np.asarray(arrays[f"spread_{n}"], np.float64) for n in names}
