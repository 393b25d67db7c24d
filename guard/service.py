"""``guard run``: the streaming pipeline, one way, one value type per stage.

    source --blocks--> [segmenter thread] --utterances--> [analysis: Guard.check_utterance]
        --verdict--> policy --> dispatcher --> [handler worker] --> audit log, sinks

- **capture**: the PortAudio callback (microphone) or a reader thread (file, stdin) copies
  blocks into the source's preallocated ``BlockRing`` and never blocks.
- **segmenter** thread: pulls blocks, runs the endpointer, pings the systemd watchdog while
  blocks keep arriving, and puts each utterance into a bounded queue. When analysis falls
  behind and that queue is full, the utterance is recorded as blocked with reason
  ``overload`` (never forwarded unverified).
- **analysis** (the caller's thread): ``Guard.check_utterance`` (fails closed), the policy, and
  ``Dispatcher.submit``, which records the utterance and hands actions to the handler worker.

SIGTERM/SIGINT: stop the source, drain what was captured, flush the endpointer, finish queued
handlers, exit 0. SIGHUP: reload the config; a bad config is refused in one line and the old
one keeps running.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from guard.analysis import Utterance
from guard.dispatch import Dispatcher
from guard.endpoint import Endpointer
from guard.guard import Guard
from guard.policy import Policy
from guard.sdnotify import Notifier
from guard.sources import Source
from guard.verdict import Verdict

log = logging.getLogger(__name__)
OVERLOAD_REASON = "overload"


@dataclass
class Counters:
    blocks: int = 0
    utterances: int = 0
    allowed: int = 0
    blocked: int = 0
    actions: int = 0
    overload: int = 0
    started_monotonic: float = 0.0
    """When the source started (``time.monotonic``): stream time 0 of a paced source."""
    by_label: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        labels = ", ".join(f"{k} {v}" for k, v in sorted(self.by_label.items())) or "-"
        return (
            f"{self.utterances} utterances: {self.allowed} allowed, {self.blocked} blocked "
            f"({self.overload} for overload), {self.actions} actions; labels: {labels}"
        )


@dataclass
class Pipeline:
    """The parts a reload may replace, swapped as one."""

    guard: Guard
    policy: Policy
    dispatcher: Dispatcher

    def close(self) -> None:
        self.dispatcher.close()


@dataclass(frozen=True)
class _Pending:
    utterance: Utterance
    queued_at: float


class Service:
    """Runs one source through guard until it ends or a stop signal arrives."""

    def __init__(
        self,
        source: Source,
        endpointer: Endpointer,
        pipeline: Pipeline,
        reload: Callable[[], Pipeline] | None = None,
        utterance_queue: int = 4,
        notifier: Notifier | None = None,
    ) -> None:
        self.source = source
        self.endpointer = endpointer
        self.pipeline = pipeline
        self.reload_fn = reload
        self._lock = threading.Lock()  # the segmenter records overloads too
        self.counters = Counters()
        self.notifier = notifier or Notifier()
        self._utterances: queue.Queue[_Pending | None] = queue.Queue(maxsize=utterance_queue)
        self._stop = threading.Event()
        self._reload = threading.Event()

    # -- control ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop capture; what was captured is still analysed (drain)."""
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def install_signal_handlers(self) -> None:
        def on_stop(signum: int, frame: FrameType | None) -> None:
            self.stop()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    # -- threads ----------------------------------------------------------------------------

    def _segment(self) -> None:
        ring = self.source.ring
        try:
            while True:
                if self._stop.is_set():
                    self.source.stop()
                got = ring.get(0.25)
                if got is None:
                    if self.source.ended or self._stop.is_set():
                        break
                    continue  # no audio: no watchdog ping (a dead microphone gets restarted)
                block, gap = got
                self.notifier.audio_alive()
                self.counters.blocks += 1
                found = self.endpointer.skip(gap) if gap else []
                found += self.endpointer.feed(block)
                for utterance in found:
                    self._enqueue(utterance)
            for utterance in self.endpointer.flush():
                self._enqueue(utterance)
        except Exception:
            log.exception("segmenter failed")
        finally:
            self._utterances.put(None)

    def _enqueue(self, utterance: Utterance) -> None:
        middle_s = (utterance.start_s + utterance.end_s) / 2
        utterance = Utterance(utterance.samples, utterance.start_s, self.source.describe(middle_s))
        if self.source.lossless:  # a file replayed with --fast: wait, lose nothing
            self._utterances.put(_Pending(utterance, time.perf_counter()))
            return
        try:
            self._utterances.put_nowait(_Pending(utterance, time.perf_counter()))
        except queue.Full:
            # Analysis is behind: this utterance is blocked unverified, and recorded.
            self.counters.overload += 1
            verdict = Verdict("block", "", 0.0, (OVERLOAD_REASON,), {}, {}, 0.0, utterance)
            self._finish(verdict, None, queue_ms=0.0)

    def run(self) -> Counters:
        """Blocks until the source ends or ``stop`` is called; returns the counters."""
        self.source.start()
        self.counters.started_monotonic = time.monotonic()
        segmenter = threading.Thread(target=self._segment, name="segmenter", daemon=True)
        segmenter.start()
        self.notifier.ready(f"listening on {self.source.name}")
        log.info("listening on %s", self.source.name)
        try:
            while True:
                try:
                    item = self._utterances.get(timeout=0.25)
                except queue.Empty:
                    self._maybe_reload()
                    continue
                if item is None:
                    break
                self._maybe_reload()
                self._analyse(item)
        finally:
            self.notifier.stopping()
            self.source.stop()
            segmenter.join(timeout=5.0)
        return self.counters

    def _analyse(self, item: _Pending) -> None:
        queue_ms = (time.perf_counter() - item.queued_at) * 1000.0
        verdict = self.pipeline.guard.check_utterance(item.utterance)
        self._finish(verdict, self.pipeline, queue_ms)

    def _finish(self, verdict: Verdict, pipeline: Pipeline | None, queue_ms: float) -> None:
        with self._lock:
            p = pipeline or self.pipeline
            decision = p.policy.decide(verdict, verdict.utterance.end_s)
            c = self.counters
            c.utterances += 1
            c.allowed += verdict.allowed
            c.blocked += not verdict.allowed
            c.actions += decision.action is not None
            c.by_label[verdict.label or "-"] = c.by_label.get(verdict.label or "-", 0) + 1
            p.dispatcher.submit(verdict, decision, queue_ms=round(queue_ms, 2))

    def _maybe_reload(self) -> None:
        if not self._reload.is_set():
            return
        self._reload.clear()
        if self.reload_fn is None:
            return
        try:
            new = self.reload_fn()
        except Exception as exc:
            log.error("reload refused, the old config keeps running: %s", exc)
            return
        with self._lock:
            old = self.pipeline
            self.pipeline = new
        old.close()
        log.info("config reloaded")
