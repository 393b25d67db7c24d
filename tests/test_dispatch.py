"""The dispatcher: exactly one audit record per utterance whatever the handlers do."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from guard.analysis import Utterance
from guard.audit import AuditLog, read_records
from guard.dispatch import Dispatcher
from guard.endpoint import Endpointer
from guard.handlers.base import Command, Outcome
from guard.policy import Decision
from guard.verdict import Verdict


class SleepyLock:
    """A handler that takes ``delay_s`` per command and counts what it was asked to do."""

    def __init__(self, name: str, delay_s: float, ok: bool = True) -> None:
        self.name = name
        self.delay_s = delay_s
        self.ok = ok
        self.calls: list[float] = []
        self.contexts: list[dict[str, str]] = []

    def handle(self, command: Command) -> Outcome:
        self.calls.append(command.verdict.utterance.start_s)
        self.contexts.append(command.context)
        time.sleep(self.delay_s)
        return Outcome(self.ok, "done", {"transcript": f"heard {self.name}"})

    def close(self) -> None:
        pass


def _verdict(start_s: float, decision: str = "allow") -> Verdict:
    utt = Utterance(np.zeros(1600, np.float32), start_s, "test")
    return Verdict(decision, "go", 0.99, (), {}, {}, 1.0, utt)  # type: ignore[arg-type]


def test_full_queue_drops_and_shutdown_records_the_rest_exactly_once(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    slow = SleepyLock("door_lock", delay_s=0.5)
    d = Dispatcher(audit, {"door_unlock": [slow]}, queue_size=2, handler_timeout_s=2.0)
    for i in range(6):
        d.submit(_verdict(float(i)), Decision("door_unlock", "ok"))
    d.submit(_verdict(10.0, "block"), Decision(None, "blocked"))
    assert d.close(timeout_s=0.2)  # not enough for all: the rest is recorded as not run
    audit.close()
    rows = read_records(tmp_path / "audit.jsonl")
    assert sorted(r["start_s"] for r in rows) == [0, 1, 2, 3, 4, 5, 10]
    outcomes = [next(iter(r["handlers"].values()), "") for r in rows]
    assert outcomes.count("dropped: handler queue full") >= 3
    assert any(o.startswith("not run: shutting down") for o in outcomes)
    ran = [r["start_s"] for r in rows if r["handlers"].get("door_lock") == "ok: done"]
    assert ran == slow.calls[: len(ran)]  # what the record says ran, ran
    blocked = next(r for r in rows if r["start_s"] == 10)
    assert blocked["handlers"] == {} and blocked["action"] is None


def test_chain_passes_context_on_and_stops_at_the_first_failure(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    deaf = SleepyLock("speech", 0.0, ok=False)
    speech = SleepyLock("speech", 0.0)
    lock = SleepyLock("door_lock", 0.0)
    d = Dispatcher(audit, {"door_unlock": [deaf, lock]})
    d.submit(_verdict(1.0), Decision("door_unlock", "ok"))
    assert d.close()
    d2 = Dispatcher(audit, {"door_unlock": [speech, lock]})
    d2.submit(_verdict(2.0), Decision("door_unlock", "ok"))
    assert d2.close()
    audit.close()
    first, second = read_records(tmp_path / "audit.jsonl")
    assert first["handlers"] == {"speech": "failed: done"}  # the lock never ran
    assert second["handlers"] == {"speech": "ok: done", "door_lock": "ok: done"}
    assert lock.calls == [2.0] and lock.contexts == [{"transcript": "heard speech"}]


def test_a_hung_handler_is_abandoned_after_its_timeout(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    hung = SleepyLock("door_lock", delay_s=3.0)
    d = Dispatcher(audit, {"door_unlock": [hung]}, handler_timeout_s=0.3)
    d.submit(_verdict(1.0), Decision("door_unlock", "ok"))
    assert d.close(timeout_s=2.0)
    audit.close()
    (row,) = read_records(tmp_path / "audit.jsonl")
    assert row["handlers"] == {"door_lock": "failed: no answer within 0.3 s"}


def test_audio_from_before_a_gap_never_leaks_into_the_next_utterance() -> None:
    ep = Endpointer()
    rng = np.random.default_rng(0)
    loud = (0.3 * rng.standard_normal(8000)).astype(np.float32)
    quiet = (0.001 * rng.standard_normal(16000)).astype(np.float32)
    assert ep.feed(quiet) == []
    ep.feed(loud[:4000])  # speech starts ...
    closed = ep.skip(3 * 16000)  # ... and 3 s of audio are lost
    after = ep.samples_seen
    found = ep.feed(np.concatenate([loud, quiet])) + ep.flush()
    assert len(closed) == 1 and len(found) == 1
    assert round(found[0].start_s * 16000) >= after  # no pre-roll from before the gap
