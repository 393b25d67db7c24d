"""``Guard``: the one decision path from audio to verdict, used by the CLI, the daemon and tests.

    guard = Guard.from_config("config.yaml")
    verdict = guard.check(samples, sample_rate_hz=16000)

Fails closed: if the model or any detector raises, or returns a non-finite score, the
utterance is blocked with reason ``"error"`` and the error is logged.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from guard.analysis import Analysis, Utterance, analyse
from guard.audio import SAMPLE_RATE_HZ, resample
from guard.classifier import CommandClassifier
from guard.config import Settings, load_settings
from guard.detectors import registry
from guard.detectors.base import Detector
from guard.detectors.strip import StripDetector
from guard.errors import ConfigError, ModelError
from guard.verdict import ERROR_REASON, Verdict

log = logging.getLogger(__name__)


class Guard:
    """A classifier plus calibrated detectors; ``check`` returns one ``Verdict`` per utterance."""

    def __init__(self, model: CommandClassifier, detectors: Sequence[Detector]) -> None:
        self.model = model
        self.detectors = list(detectors)

    @classmethod
    def from_settings(cls, settings: Settings, model_path: Path | None = None) -> Guard:
        model = CommandClassifier(
            model_path or settings.model.path, num_threads=settings.model.threads
        )
        state_dir = settings.detectors.state_dir
        if not settings.detectors.enabled:
            raise ConfigError(
                f"{settings.source or 'config'}: detectors.enabled is empty; guard would forward "
                "every command unchecked"
            )
        fitted_for = registry.read_report(state_dir).get("model_sha256")
        if fitted_for != model.sha256:
            raise ModelError(
                f"{state_dir}: detectors were fitted for another model ({str(fitted_for)[:12]}..., "
                f"not {model.model_path} {model.sha256[:12]}...); run guard calibrate with --model"
            )
        detectors = registry.load(state_dir, settings.detectors.enabled)
        blends = settings.detectors.strip_blends
        for d in detectors:  # the blend count is fitted into the state, not read at run time
            if isinstance(d, StripDetector) and d.active_ and len(d.bank_) != blends:
                log.warning(
                    "%s: STRIP was fitted with %d blends, detectors.strip_blends is %d: "
                    "running with %d until guard calibrate refits it",
                    state_dir,
                    len(d.bank_),
                    blends,
                    len(d.bank_),
                )
        return cls(model, detectors)

    @classmethod
    def from_config(cls, path: str | Path, model_path: Path | None = None) -> Guard:
        return cls.from_settings(load_settings(path), model_path)

    def warm_up(self) -> None:
        """One decision on quiet noise, so every interpreter (STRIP's and the consistency
        detector's batch sizes included) is allocated before the first real utterance."""
        rng = np.random.default_rng(0)
        self.check((0.001 * rng.standard_normal(SAMPLE_RATE_HZ)).astype(np.float32))

    def check(
        self,
        samples: npt.NDArray[np.float32],
        sample_rate_hz: int = SAMPLE_RATE_HZ,
        start_s: float = 0.0,
        source: str = "",
    ) -> Verdict:
        """Decide on one utterance of mono float32 samples at ``sample_rate_hz``."""
        started = time.perf_counter()
        samples = resample(np.asarray(samples, dtype=np.float32), sample_rate_hz)
        return self.check_utterance(Utterance(samples, start_s, source), started)

    def check_utterance(self, utterance: Utterance, started: float | None = None) -> Verdict:
        started = time.perf_counter() if started is None else started
        try:
            analysis = analyse(utterance, self.model)
        except Exception as exc:  # fail closed on any model failure
            log.exception("model failed on %s", utterance.source or "utterance")
            return Verdict(
                "block",
                "",
                0.0,
                (ERROR_REASON,),
                {},
                {},
                _ms(started),
                utterance,
                errors={"model": _one_line(exc)},
            )
        return self.decide(analysis, started)

    def decide(self, analysis: Analysis, started: float) -> Verdict:
        scores: dict[str, float] = {}
        thresholds: dict[str, float] = {}
        reasons: list[str] = []
        errors: dict[str, str] = {}
        for detector in self.detectors:
            try:
                score = float(detector.anomaly_score([analysis])[0])
                threshold = detector.threshold()
                if not math.isfinite(score):
                    raise ValueError(f"non-finite score {score}")
            except Exception as exc:  # fail closed on any detector failure
                log.exception("detector %s failed", detector.name)
                errors[detector.name] = _one_line(exc)
                continue
            scores[detector.name] = score
            thresholds[detector.name] = threshold
            if score > threshold:
                reasons.append(detector.name)
        if errors:
            reasons.append(ERROR_REASON)
        probabilities = {
            label: float(p)
            for label, p in zip(self.model.labels, analysis.probabilities, strict=True)
        }
        return Verdict(
            "block" if reasons else "allow",
            analysis.label,
            analysis.confidence,
            tuple(reasons),
            scores,
            thresholds,
            _ms(started),
            analysis.utterance,
            probabilities,
            errors,
        )


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
