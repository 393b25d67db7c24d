"""``guard run``: the streaming pipeline, source -> endpointer -> Guard -> policy -> audit log.

Threads, joined by bounded queues and flowing one way:

- **capture**: pulls blocks from the source (a WAV file or folder, or raw PCM on stdin) into
  the block queue. A file source blocks when the queue is full (nothing is lost with
  ``--fast``); a live source would drop and count (the microphone callback lands with the
  daemon issue).
- **analysis** (the caller's thread): cuts utterances with the endpointer, decides each with
  ``Guard.check_utterance`` (fails closed), applies the policy, and writes exactly one audit
  record per utterance.

SIGTERM or SIGINT stops capture, drains what was captured, flushes the endpointer and exits 0.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import numpy as np
import numpy.typing as npt

from guard.analysis import Utterance
from guard.audit import AuditLog
from guard.guard import Guard
from guard.policy import Policy
from guard.sdnotify import Notifier

log = logging.getLogger(__name__)
Block = npt.NDArray[np.float32]
_END = None


@dataclass
class Counters:
    blocks: int = 0
    utterances: int = 0
    allowed: int = 0
    blocked: int = 0
    actions: int = 0
    by_label: dict[str, int] = field(default_factory=dict)


class Service:
    """Runs one stream through guard until the source ends or a stop signal arrives."""

    def __init__(
        self,
        guard: Guard,
        endpointer: Any,
        policy: Policy,
        audit: AuditLog,
        on_verdict: Callable[[dict[str, Any]], None] | None = None,
        queue_blocks: int = 256,
    ) -> None:
        self.guard = guard
        self.endpointer = endpointer
        self.policy = policy
        self.audit = audit
        self.on_verdict = on_verdict
        self.counters = Counters()
        self._blocks: queue.Queue[Block | None] = queue.Queue(maxsize=queue_blocks)
        self._stop = threading.Event()
        self.notifier = Notifier()

    def stop(self, *_: Any) -> None:
        """Ask capture to stop; what was captured is still analysed (drain)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: draining and stopping", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _capture(self, source: Iterable[Block]) -> None:
        try:
            for block in source:
                while not self._stop.is_set():
                    try:
                        self._blocks.put(block, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    break
        except Exception:
            log.exception("audio source failed")
        finally:
            self._blocks.put(_END)

    def run(self, source: Iterable[Block]) -> Counters:
        capture = threading.Thread(
            target=self._capture, args=(source,), name="capture", daemon=True
        )
        capture.start()
        self.notifier.ready("listening")
        while True:
            block = self._blocks.get()
            if block is _END:
                break
            self.notifier.audio_alive()
            self.counters.blocks += 1
            for utterance in self.endpointer.feed(block):
                self._handle(utterance)
        self.notifier.stopping()
        for utterance in self.endpointer.flush():
            self._handle(utterance)
        capture.join(timeout=1.0)
        return self.counters

    def _handle(self, utterance: Utterance) -> None:
        verdict = self.guard.check_utterance(utterance)
        decision = self.policy.decide(verdict, time.monotonic())
        row = self.audit.record(verdict, handlers={}, action=decision.action, policy=decision.why)
        c = self.counters
        c.utterances += 1
        c.allowed += verdict.allowed
        c.blocked += not verdict.allowed
        c.actions += decision.action is not None
        c.by_label[verdict.label] = c.by_label.get(verdict.label, 0) + 1
        if self.on_verdict is not None:
            self.on_verdict(row)


def iter_blocks(samples: Block, block_samples: int) -> Iterator[Block]:
    for i in range(0, len(samples), block_samples):
        yield samples[i : i + block_samples]
