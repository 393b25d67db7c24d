"""Which allowed command triggers which action: a confidence floor and a refractory time.

Blocked utterances never reach this point; an allowed one becomes an action only when its
label is mapped in the config, its confidence is at least the floor, and the same action did
not fire within the refractory time (a repeated "unlock" from one utterance echoing, or from an
attacker replaying, does not unlock twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from guard.verdict import Verdict


@dataclass(frozen=True)
class PolicySettings:
    actions: dict[str, str] = field(
        default_factory=lambda: {"go": "door_unlock", "on": "lights_on", "off": "lights_off"}
    )
    """Command label -> action name."""
    confidence_floor: float = 0.8
    """Minimum classifier confidence for an action, 0-1."""
    refractory_s: float = 5.0
    """Seconds after an action during which the same action is not repeated."""


@dataclass(frozen=True)
class Decision:
    action: str | None
    """The action to run, or None."""
    why: str
    """Why not (or "ok"), for the audit log."""


class Policy:
    def __init__(self, settings: PolicySettings) -> None:
        self.settings = settings
        self._last_fired_s: dict[str, float] = {}

    def inherit(self, other: Policy) -> None:
        """Keep ``other``'s refractory times (a config reload must not re-arm an action)."""
        self._last_fired_s.update(other._last_fired_s)

    def decide(self, verdict: Verdict, now_s: float) -> Decision:
        """``now_s`` is a monotonic clock (or stream time) in seconds."""
        if not verdict.allowed:
            return Decision(None, "blocked")
        action = self.settings.actions.get(verdict.label)
        if action is None:
            return Decision(None, "no action for this command")
        if verdict.confidence < self.settings.confidence_floor:
            return Decision(
                None,
                f"confidence {verdict.confidence:.2f} below {self.settings.confidence_floor:.2f}",
            )
        last = self._last_fired_s.get(action)
        if last is not None and now_s - last < self.settings.refractory_s:
            return Decision(None, f"refractory ({now_s - last:.1f} s since the last {action})")
        self._last_fired_s[action] = now_s
        return Decision(action, "ok")
