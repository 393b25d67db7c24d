"""Running command handlers off the analysis thread, and writing each utterance's one record.

The analysis thread calls ``submit`` once per utterance and never waits:

- an utterance with no action (blocked, unmapped, below the confidence floor, refractory) is
  recorded at once;
- an action goes into a bounded queue; the worker runs its handler chain in order (each call
  bounded by ``handler_timeout_s``; a handler that overruns is abandoned and the chain stops:
  a later step such as unlock never runs after an earlier one failed), then records the
  utterance with every handler's outcome;
- if the queue is full, the utterance is recorded as dropped and nothing runs (fail closed).

Verdict sinks (MQTT) see every record afterwards, on the same worker, best effort.
Exactly one audit record per utterance, whatever happens: ``close`` records what is still
queued as not run.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guard.audit import AuditLog
from guard.handlers.base import Command, Handler, Outcome, VerdictSink
from guard.policy import Decision
from guard.verdict import Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Job:
    verdict: Verdict
    decision: Decision
    extra: dict[str, Any]


class Dispatcher:
    def __init__(
        self,
        audit: AuditLog,
        chains: Mapping[str, Sequence[Handler]],
        sinks: Sequence[VerdictSink] = (),
        queue_size: int = 8,
        handler_timeout_s: float = 10.0,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        sink_queue_size: int = 64,
    ) -> None:
        self.audit = audit
        self.on_record = on_record
        self.chains = {k: list(v) for k, v in chains.items()}
        self.sinks = list(sinks)
        self.handler_timeout_s = handler_timeout_s
        self._jobs: queue.Queue[_Job] = queue.Queue(maxsize=queue_size)
        self._rows: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=sink_queue_size)
        self._stopping = threading.Event()  # finish what is queued, then exit
        self._abandon = threading.Event()  # record what is still queued as not run
        self._count_lock = threading.Lock()
        self.dropped = 0
        self.records = 0
        self._worker = threading.Thread(
            target=self._serve, args=(self._jobs, self._do_job), name="handlers", daemon=True
        )
        self._worker.start()
        self._sink_worker = threading.Thread(
            target=self._serve, args=(self._rows, self._publish), name="sinks", daemon=True
        )
        if self.sinks:
            self._sink_worker.start()

    def submit(self, verdict: Verdict, decision: Decision, **extra: Any) -> None:
        """Never blocks. Records the utterance now, or after its handler chain ran."""
        extra = {"action": decision.action, "policy": decision.why, **extra}
        if decision.action is None:
            self._to_sinks(self._record(verdict, {}, extra))
            return
        if not self.chains.get(decision.action):
            extra["policy"] = f"no handlers configured for {decision.action}"
            self._to_sinks(self._record(verdict, {}, extra))
            return
        try:
            self._jobs.put_nowait(_Job(verdict, decision, extra))
        except queue.Full:
            self.dropped += 1
            log.warning("handler queue full: %s not run", decision.action)
            row = self._record(verdict, {"dispatch": "dropped: handler queue full"}, extra)
            self._to_sinks(row)

    def _to_sinks(self, row: dict[str, Any]) -> None:
        """Verdicts for sinks have their own queue: a burst of them never crowds out actions."""
        if not self.sinks:
            return
        try:
            self._rows.put_nowait(row)
        except queue.Full:
            log.warning("sink queue full: a verdict was not published")

    def _record(
        self, verdict: Verdict, handlers: dict[str, str], extra: dict[str, Any]
    ) -> dict[str, Any]:
        row = self.audit.record(verdict, handlers, **extra)
        with self._count_lock:
            self.records += 1
            if self.on_record is not None:
                try:
                    self.on_record(row)
                except Exception:
                    log.exception("record callback failed")
        return row

    def _serve(self, items: queue.Queue[Any], handle: Callable[[Any], None]) -> None:
        """A worker loop: handle items until ``close`` and the queue is empty."""
        while True:
            try:
                item = items.get(timeout=0.1)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            handle(item)

    def _do_job(self, job: _Job) -> None:
        try:
            if self._abandon.is_set():
                outcomes = {"dispatch": "not run: shutting down"}
            else:
                outcomes = self._run_chain(job)
            self._to_sinks(self._record(job.verdict, outcomes, job.extra))
        except Exception:  # the audit write itself failed: keep serving the others
            log.exception("handler worker: recording %s failed", job.extra.get("action"))

    def _publish(self, row: dict[str, Any]) -> None:
        for sink in self.sinks:
            try:
                sink.on_verdict(row)
            except Exception:
                log.exception("verdict sink %s failed", sink.name)

    def _run_chain(self, job: _Job) -> dict[str, str]:
        outcomes: dict[str, str] = {}
        context: dict[str, str] = {}
        for handler in self.chains[job.extra["action"]]:
            if self._abandon.is_set():
                outcomes[handler.name] = "not run: shutting down"
                break
            command = Command(job.decision.action or "", job.verdict, dict(context))
            outcome = self._call(handler, command)
            outcomes[handler.name] = str(outcome)
            if not outcome.ok:
                break  # the chain stops: no unlock after a failed verification
            context.update(outcome.data)
        return outcomes

    def _call(self, handler: Handler, command: Command) -> Outcome:
        result: list[Outcome] = []
        late = threading.Event()

        def target() -> None:
            try:
                outcome = handler.handle(command)
            except Exception as exc:
                log.exception("handler %s failed", handler.name)
                outcome = Outcome(False, f"{type(exc).__name__}: {exc}".splitlines()[0])
            result.append(outcome)
            if late.is_set():
                log.warning("handler %s answered after its timeout: %s", handler.name, outcome)

        thread = threading.Thread(target=target, name=f"handler-{handler.name}", daemon=True)
        thread.start()
        thread.join(self.handler_timeout_s)
        if not result:
            late.set()
            log.warning("handler %s timed out", handler.name)
            return Outcome(False, f"no answer within {self.handler_timeout_s:g} s")
        return result[0]

    def close(self, timeout_s: float = 5.0) -> bool:
        """Run what is queued for up to ``timeout_s``, then record the rest as not run.

        Returns False if the worker is still inside a handler call afterwards (the caller
        must then leave the audit log open for it).
        """
        self._stopping.set()
        self._worker.join(timeout_s)
        if self._worker.is_alive():
            self._abandon.set()
            self._worker.join(self.handler_timeout_s + 1.0)
        if self._sink_worker.is_alive():
            self._sink_worker.join(2.0)
        return not self._worker.is_alive()
