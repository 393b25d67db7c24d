"""The endpointer cuts real speech clips out of a noisy stream, whatever the block size."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.analysis import Utterance
from guard.audio import SAMPLE_RATE_HZ, read_audio
from guard.endpoint import Endpointer, EndpointSettings
from guard.errors import ConfigError
from guard.sources import BlockRing
from tests.conftest import WAV_FIXTURES

FloatArray = npt.NDArray[np.float32]


def _stream(n_clips: int = 8, seed: int = 0) -> tuple[FloatArray, list[tuple[float, float]]]:
    """Real clips separated by 0.8-1.5 s of quiet noise; returns the stream and where each
    clip's loud part lies (seconds)."""
    rng = np.random.default_rng(seed)
    parts: list[FloatArray] = []
    truth: list[tuple[float, float]] = []
    t = 0
    for path in WAV_FIXTURES[:n_clips]:
        clip = read_audio(path)
        gap = np.zeros(int(SAMPLE_RATE_HZ * rng.uniform(0.8, 1.5)), np.float32)
        parts += [gap, clip]
        t += len(gap)
        frames = clip[: len(clip) // 160 * 160].reshape(-1, 160)
        loud = np.flatnonzero(10 * np.log10(np.mean(frames**2, axis=1) + 1e-12) > -35)
        truth.append(((t + loud[0] * 160) / SAMPLE_RATE_HZ, (t + loud[-1] * 160 + 160) / 16000))
        t += len(clip)
    parts.append(np.zeros(SAMPLE_RATE_HZ, np.float32))
    x = np.concatenate(parts)
    x += rng.normal(0, 0.002, len(x)).astype(np.float32)
    return x, truth


STREAM, TRUTH = _stream()


def _run(x: FloatArray, sizes: list[int], ep: Endpointer | None = None) -> list[Utterance]:
    ep = ep or Endpointer()
    out: list[Utterance] = []
    i = k = 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        out += ep.feed(x[i : i + n])
        i += n
        k += 1
    return out + ep.flush()


def test_each_spoken_clip_becomes_one_utterance_covering_it() -> None:
    found = _run(STREAM, [1600])
    assert len(found) == len(TRUTH)
    for u, (loud_start, loud_end) in zip(found, TRUTH, strict=True):
        assert u.start_s <= loud_start + 0.03  # pre-roll and onset cover the first loud frame
        assert u.end_s >= loud_end - 0.05
        assert u.duration_s <= 2.0
        assert len(u.samples) == round(u.duration_s * SAMPLE_RATE_HZ)
        start = round(u.start_s * SAMPLE_RATE_HZ)
        np.testing.assert_array_equal(u.samples, STREAM[start : start + len(u.samples)])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=9000), min_size=1, max_size=12))
def test_utterances_do_not_depend_on_block_size(sizes: list[int]) -> None:
    reference = _run(STREAM, [1600])
    other = _run(STREAM, sizes)
    assert [(u.start_s, u.end_s) for u in other] == [(u.start_s, u.end_s) for u in reference]
    for a, b in zip(other, reference, strict=True):
        np.testing.assert_array_equal(a.samples, b.samples)


def test_silence_and_clicks_are_not_utterances() -> None:
    ep = Endpointer()
    x = np.random.default_rng(1).normal(0, 0.002, 5 * SAMPLE_RATE_HZ).astype(np.float32)
    x[SAMPLE_RATE_HZ : SAMPLE_RATE_HZ + 480] += 0.5  # a 30 ms click
    assert _run(x, [1600], ep) == []
    assert ep.dropped_short == 1


def test_long_speech_is_cut_at_max_length() -> None:
    rng = np.random.default_rng(2)
    x = np.concatenate(
        [
            np.zeros(SAMPLE_RATE_HZ, np.float32),
            (0.2 * rng.standard_normal(5 * SAMPLE_RATE_HZ)).astype(np.float32),
            np.zeros(SAMPLE_RATE_HZ, np.float32),
        ]
    )
    found = _run(x, [1000], Endpointer(EndpointSettings(max_utterance_s=2.0)))
    assert [round(u.duration_s, 2) for u in found[:2]] == [2.15, 2.0]  # pre-roll on the first
    assert sum(u.duration_s for u in found) == pytest.approx(5.25, abs=0.02)


def test_lost_audio_moves_the_clock_and_closes_the_open_utterance() -> None:
    ep = Endpointer()
    first = STREAM[: int(TRUTH[0][0] * SAMPLE_RATE_HZ) + 3200]  # into the first word
    assert ep.feed(first) == []
    closed = ep.skip(SAMPLE_RATE_HZ)
    assert len(closed) == 1
    assert ep.samples_seen == len(first) + SAMPLE_RATE_HZ


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"stop_db": 20.0}, "stop_db"),
        ({"ring_s": 1.0}, "ring_s"),
        ({"max_utterance_s": 0.1}, "max_utterance_s"),
    ],
)
def test_settings_that_cannot_work_are_refused_by_key(kwargs: dict[str, float], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        Endpointer(EndpointSettings(**kwargs))  # type: ignore[arg-type]


def test_block_ring_drops_and_counts_when_full_and_reports_the_gap() -> None:
    ring = BlockRing(slots=5, block_samples=4)
    blocks = [np.full(4, i, np.float32) for i in range(6)]
    accepted = [ring.put_nowait(b) for b in blocks]
    assert accepted == [True, True, True, False, False, False]
    assert (ring.overflows, ring.dropped_samples) == (3, 12)
    got = [ring.get(0.01) for _ in range(3)]
    assert [int(g[0][0]) for g in got if g is not None] == [0, 1, 2]
    assert ring.get(0.01) is None
    assert ring.put_nowait(np.full(2, 9, np.float32))
    item = ring.get(0.01)
    assert item is not None
    block, gap = item
    np.testing.assert_array_equal(block, [9, 9])
    assert gap == 12  # the 3 lost blocks came just before it
