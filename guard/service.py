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

import collections
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import numpy as np
import numpy.typing as npt

from guard.analysis import Utterance
from guard.dispatch import Dispatcher
from guard.endpoint import Endpointer
from guard.guard import Guard
from guard.policy import Policy
from guard.sdnotify import Notifier
from guard.sources import Source
from guard.verdict import Verdict

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float32]
OVERLOAD_REASON = "overload"


@dataclass
class Counters:
    blocks: int = 0
    utterances: int = 0
    allowed: int = 0
    blocked: int = 0
    actions: int = 0
    overload: int = 0
    failure: str = ""
    """Why the stream ended abnormally ("" when it did not)."""
    stopped: bool = False
    """Stopped by a signal (SIGTERM/SIGINT) rather than the end of the source."""
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
        reload: Callable[[Pipeline], Pipeline] | None = None,
        utterance_queue: int = 4,
        notifier: Notifier | None = None,
    ) -> None:
        self.source = source
        self.endpointer = endpointer
        self.pipeline = pipeline
        self.reload_fn = reload
        self.counters = Counters()
        self.notifier = notifier or Notifier()
        self.failure: str | None = None
        """Why the stream ended abnormally (the CLI then exits non-zero), or None."""
        self._utterances: queue.Queue[_Pending | None] = queue.Queue(maxsize=utterance_queue)
        self._overloaded: collections.deque[Utterance] = collections.deque()
        # Plain flags: a signal handler must not take a lock the main thread may hold.
        self._stop_requested = False
        self._reload_requested = False
        self._previous_handlers: dict[int, Any] = {}

    # -- control ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop capture; what was captured is still analysed (drain)."""
        self._stop_requested = True

    def request_reload(self) -> None:
        self._reload_requested = True

    def install_signal_handlers(self) -> None:
        def on_stop(signum: int, frame: FrameType | None) -> None:
            self._stop_requested = True

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self._reload_requested = True

        for signum, handler in (
            (signal.SIGTERM, on_stop),
            (signal.SIGINT, on_stop),
            (signal.SIGHUP, on_hup),
        ):
            self._previous_handlers[signum] = signal.signal(signum, handler)

    def restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    # -- threads ----------------------------------------------------------------------------

    def _segment(self) -> None:
        ring = self.source.ring
        try:
            while True:
                if self._stop_requested:
                    self.source.stop()
                got = ring.get(0.25)
                if got is None:
                    if self.source.ended or self._stop_requested:
                        # The producer is done: take what it put in since the last look.
                        while (got := ring.get(0.0)) is not None:
                            self._feed(*got)
                        break
                    continue  # no audio: no watchdog ping (a dead microphone gets restarted)
                self._feed(*got)
            for utterance in self.endpointer.flush():
                self._enqueue(utterance)
            error = getattr(self.source, "error", None)
            if error:
                self.failure = f"source: {error}"
        except Exception as exc:
            log.exception("segmenter failed")
            self.failure = f"segmenter: {type(exc).__name__}: {exc}".splitlines()[0]
        finally:
            self._utterances.put(None)

    def _feed(self, block: FloatArray, gap: int) -> None:
        self.notifier.audio_alive()
        self.counters.blocks += 1
        found = self.endpointer.skip(gap) if gap else []
        found += self.endpointer.feed(block)
        for utterance in found:
            self._enqueue(utterance)

    def _enqueue(self, utterance: Utterance) -> None:
        middle_s = (utterance.start_s + utterance.end_s) / 2
        utterance = Utterance(utterance.samples, utterance.start_s, self.source.describe(middle_s))
        if self.source.lossless:  # a file replayed with --fast: wait, lose nothing
            self._utterances.put(_Pending(utterance, time.perf_counter()))
            return
        try:
            self._utterances.put_nowait(_Pending(utterance, time.perf_counter()))
        except queue.Full:
            # Analysis is behind: this utterance will be blocked unverified, and recorded by
            # the analysis thread (the segmenter never waits on disk).
            self._overloaded.append(utterance)

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
                self._record_overloads()
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
            self._record_overloads()
        self.counters.stopped = self._stop_requested
        return self.counters

    def _record_overloads(self) -> None:
        while self._overloaded:
            utterance = self._overloaded.popleft()
            self.counters.overload += 1
            verdict = Verdict("block", "", 0.0, (OVERLOAD_REASON,), {}, {}, 0.0, utterance)
            self._finish(verdict, 0.0)

    def _analyse(self, item: _Pending) -> None:
        queue_ms = (time.perf_counter() - item.queued_at) * 1000.0
        verdict = self.pipeline.guard.check_utterance(item.utterance)  # fails closed itself
        self._finish(verdict, queue_ms)

    def _finish(self, verdict: Verdict, queue_ms: float) -> None:
        p = self.pipeline
        try:
            decision = p.policy.decide(verdict, verdict.utterance.end_s)
            p.dispatcher.submit(verdict, decision, queue_ms=round(queue_ms, 2))
        except Exception:  # e.g. the audit disk is full: log, count, keep listening
            log.exception("recording the utterance at %.2f s failed", verdict.utterance.start_s)
            return
        c = self.counters
        c.utterances += 1
        c.allowed += verdict.allowed
        c.blocked += not verdict.allowed
        c.actions += decision.action is not None
        c.by_label[verdict.label or "-"] = c.by_label.get(verdict.label or "-", 0) + 1

    def _maybe_reload(self) -> None:
        if not self._reload_requested:
            return
        self._reload_requested = False
        if self.reload_fn is None:
            return
        try:
            self.pipeline = self.reload_fn(self.pipeline)  # it closes what it replaces
        except Exception as exc:
            lines = str(exc).strip().splitlines()
            why = lines[0] if lines else type(exc).__name__
            log.error("reload refused, the old config keeps running: %s", why)
            return
        log.info("config reloaded")
