"""The verdict on one utterance: allow or block, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from guard.analysis import Utterance

Decision = Literal["allow", "block"]
ERROR_REASON = "error"


@dataclass(frozen=True)
class Verdict:
    """What guard decided about one utterance. Blocked utterances never reach a handler."""

    decision: Decision
    label: str
    """The classifier's label ("" when the model itself failed)."""
    confidence: float
    reasons: tuple[str, ...]
    """Names of the detectors that fired, or ``"error"`` when a stage failed (fail closed)."""
    scores: dict[str, float]
    thresholds: dict[str, float]
    latency_ms: float
    """Wall time from utterance to verdict, in milliseconds."""
    utterance: Utterance = field(repr=False)
    probabilities: dict[str, float] = field(default_factory=dict, repr=False)
    errors: dict[str, str] = field(default_factory=dict)
    """Stage name -> one-line error, for the stages that failed."""

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready fields shared by ``guard scan`` and the audit log."""
        return {
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "verdict": self.decision,
            "reasons": list(self.reasons),
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "thresholds": {k: round(v, 4) for k, v in self.thresholds.items()},
            "latency_ms": round(self.latency_ms, 2),
            "start_s": round(self.utterance.start_s, 3),
            "end_s": round(self.utterance.end_s, 3),
            **({"errors": self.errors} if self.errors else {}),
        }
