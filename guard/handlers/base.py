"""What a command handler is: the last stage, reached only by allowed, policy-approved commands.

A handler gets a ``Command`` (the verdict, the action the policy chose, and a context that
earlier handlers of the same chain filled in, e.g. the speech handler's ``transcript``) and
returns an ``Outcome``. Handlers run on the dispatcher's worker thread, never on the audio or
analysis thread, and must bound their own time (timeouts on every network call).

A handler may also be a *verdict sink* (``on_verdict``): it sees the audit record of every
utterance, allowed or blocked (the MQTT handler publishes them for Home Assistant). A sink gets
the record, never the audio, so a blocked utterance still never reaches a command handler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from guard.verdict import Verdict


@dataclass(frozen=True)
class Command:
    action: str
    """The policy's action name, e.g. ``door_unlock``."""
    verdict: Verdict
    """The allowed verdict (its utterance holds the audio)."""
    context: dict[str, str] = field(default_factory=dict)
    """Values earlier handlers of the chain passed on (``transcript``, ...)."""


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str
    """One line for the audit log: ``"unlocked"``, ``"timeout after 2.0 s"``, ..."""
    data: dict[str, str] = field(default_factory=dict)
    """Passed on to the next handlers of the chain (merged into ``Command.context``)."""

    def __str__(self) -> str:
        return ("ok: " if self.ok else "failed: ") + self.detail


@runtime_checkable
class Handler(Protocol):
    name: str

    def handle(self, command: Command) -> Outcome:
        """Carry out the command; never raise for expected failures (return ok=False)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class VerdictSink(Protocol):
    name: str

    def on_verdict(self, record: dict[str, Any]) -> None:
        """See one utterance's audit record (allowed or blocked). Must not block for long."""
        ...
