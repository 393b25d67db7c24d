"""The speech handler: transcribes an allowed utterance for the handlers after it in the chain.

It turns the utterance (float32, 16 kHz) into 16-bit PCM and runs SpeechRecognition's
recogniser: PocketSphinx by default, fully offline. ``google`` sends the audio to Google and is
used only when configured. The transcript goes on as ``Command.context["transcript"]`` (the door
lock checks the speaker's name in it); nothing recognised stops the chain.

``speech_recognition`` is imported when the handler is built, so importing this module needs
neither it nor pocketsphinx.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import numpy as np

from guard.audio import SAMPLE_RATE_HZ, FloatArray
from guard.errors import GuardError
from guard.handlers.base import Command, Outcome
from guard.handlers.settings import SpeechSettings

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install SpeechRecognition pocketsphinx"


class SpeechHandler:
    """Returns ``Outcome(True, 'transcript "..."', {"transcript": text})`` or a failure.

    Raises ``GuardError`` at construction when SpeechRecognition (or, for the ``sphinx`` engine,
    pocketsphinx) is not installed.
    """

    def __init__(self, settings: SpeechSettings, name: str = "speech") -> None:
        self.name = name
        self.settings = settings
        try:
            import speech_recognition as sr
        except ImportError:
            raise GuardError(
                f"the speech handler needs SpeechRecognition: {INSTALL_HINT}"
            ) from None
        if settings.engine == "sphinx" and importlib.util.find_spec("pocketsphinx") is None:
            raise GuardError(f"the sphinx engine needs pocketsphinx: {INSTALL_HINT}")
        self._sr: Any = sr
        self._recognizer: Any = sr.Recognizer()
        self._recognizer.operation_timeout = settings.timeout_s

    def transcribe(self, samples: FloatArray) -> str:
        """The recognised text ("" when nothing was recognised). Raises ``sr.RequestError``."""
        pcm = (np.clip(np.nan_to_num(samples), -1.0, 1.0) * 32767).round().astype("<i2")
        audio = self._sr.AudioData(pcm.tobytes(), SAMPLE_RATE_HZ, 2)
        try:
            if self.settings.engine == "google":
                text = self._recognizer.recognize_google(audio, language=self.settings.language)
            else:
                text = self._recognizer.recognize_sphinx(audio, language=self.settings.language)
        except self._sr.UnknownValueError:
            return ""
        return " ".join(str(text).split())

    def handle(self, command: Command) -> Outcome:
        samples = command.verdict.utterance.samples
        if rms_dbfs(samples) < self.settings.min_rms_dbfs:
            return Outcome(False, "no speech recognised")
        try:
            text = self.transcribe(samples)
        except self._sr.RequestError as exc:
            return Outcome(False, f"speech recognition failed ({self.settings.engine}): {exc}")
        except (OSError, RuntimeError, ValueError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            return Outcome(False, f"speech recognition failed ({self.settings.engine}): {reason}")
        if not text:
            return Outcome(False, "no speech recognised")
        log.debug("%s: transcript %r", self.name, text)
        return Outcome(True, f'transcript "{text}"', {"transcript": text})

    def close(self) -> None:
        """Nothing to release."""


def rms_dbfs(samples: FloatArray) -> float:
    """RMS level in dB full scale (-inf for empty or all-zero audio)."""
    if samples.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(np.nan_to_num(samples), dtype=np.float64))))
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")
