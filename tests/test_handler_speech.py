"""The speech handler with the real offline recogniser (PocketSphinx) on the WAV fixtures."""

from __future__ import annotations

import numpy as np
import pytest

from guard.analysis import FloatArray, Utterance
from guard.audio import read_audio
from guard.errors import ConfigError
from guard.handlers.base import Command, Handler
from guard.handlers.settings import SpeechSettings
from guard.handlers.speech import SpeechHandler, rms_dbfs
from guard.verdict import Verdict
from tests.conftest import DATA

pytest.importorskip("speech_recognition")
pytest.importorskip("pocketsphinx")

YES = DATA / "wav" / "yes__aa753bb9_nohash_0__jqsilva.wav"


def make_command(samples: FloatArray) -> Command:
    utterance = Utterance(samples, start_s=0.0, source="test")
    verdict = Verdict("allow", "yes", 0.9, (), {}, {}, 5.0, utterance)
    return Command("answer_yes", verdict)


@pytest.fixture(scope="module")
def handler() -> SpeechHandler:
    return SpeechHandler(SpeechSettings())


def test_transcribes_a_spoken_word(handler: SpeechHandler) -> None:
    assert isinstance(handler, Handler)
    outcome = handler.handle(make_command(read_audio(YES)))
    assert outcome.ok, outcome.detail
    transcript = outcome.data["transcript"]
    assert isinstance(transcript, str) and transcript
    assert outcome.detail == f'transcript "{transcript}"'
    assert "yes" in transcript.split()  # PocketSphinx recognises this clip (deterministic)


def test_digital_silence_is_no_speech(handler: SpeechHandler) -> None:
    outcome = handler.handle(make_command(np.zeros(16000, dtype=np.float32)))
    assert not outcome.ok
    assert outcome.detail == "no speech recognised"
    assert outcome.data == {}


def test_faint_noise_is_no_speech(handler: SpeechHandler) -> None:
    """Above the level gate, so the recogniser itself finds nothing."""
    noise = (np.random.default_rng(0).standard_normal(16000) * 0.01).astype(np.float32)
    assert rms_dbfs(noise) > handler.settings.min_rms_dbfs
    outcome = handler.handle(make_command(noise))
    assert not outcome.ok
    assert outcome.detail == "no speech recognised"


def test_empty_audio_is_no_speech(handler: SpeechHandler) -> None:
    outcome = handler.handle(make_command(np.zeros(0, dtype=np.float32)))
    assert str(outcome) == "failed: no speech recognised"


def test_unknown_engine_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="engine: unknown speech engine 'whisper-xl'"):
        SpeechSettings(engine="whisper-xl")


def test_rms_dbfs() -> None:
    assert rms_dbfs(np.zeros(10, dtype=np.float32)) == float("-inf")
    assert rms_dbfs(np.ones(10, dtype=np.float32)) == pytest.approx(0.0)
    assert rms_dbfs(np.full(10, 0.1, dtype=np.float32)) == pytest.approx(-20.0, abs=1e-4)
