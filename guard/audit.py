"""The audit log: one JSON line per utterance, appended and flushed, plus saved clips.

The audit log is data, not log messages: reviewers filter it with ``guard review`` or jq.
Every record has ``time`` (UTC wall clock, ISO 8601), ``start_s``/``end_s`` (seconds from the
start of the stream), ``label``, ``confidence``, ``verdict``, ``reasons``, ``scores``,
``thresholds``, ``latency_ms``, ``handlers`` (handler name -> outcome) and ``clip`` (the saved
WAV, or null; ``clip_error`` says why when saving it failed).

A full or failing disk (a Pi's SD card) loses as little as it can: a clip that cannot be saved
leaves no partial WAV and the record is written without it; a record that cannot be appended
goes to the journal whole (``guard.audit`` at ERROR) before the error is raised, and the next
record starts on a line of its own, so a torn line never swallows it. ``guard review`` skips a
torn line (a power cut mid-write leaves one) with a warning naming it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
from scipy.io import wavfile

from guard.audio import SAMPLE_RATE_HZ
from guard.verdict import Verdict

log = logging.getLogger(__name__)


class ClipStore:
    """Saves utterances as 16-bit WAV under ``directory``, deleting the oldest clips when the
    folder grows past ``max_bytes`` (size-based retention)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)

    def save(self, verdict: Verdict, stamp: str) -> Path:
        name = f"{stamp.replace(':', '').replace('-', '')}_{verdict.decision}_{verdict.label or 'error'}.wav"
        path = self.directory / name
        pcm = np.round(np.clip(verdict.utterance.samples, -1.0, 1.0) * 32767).astype(np.int16)
        try:
            wavfile.write(path, SAMPLE_RATE_HZ, pcm)
        except OSError:
            with contextlib.suppress(OSError):  # the write's error is the one to report
                path.unlink()  # no half-written WAV left behind
            raise
        try:
            self._enforce_retention()
        except OSError as exc:  # the clip is saved; retention tries again next time
            log.warning("%s: clip retention failed (%s)", self.directory, exc)
        return path

    def _enforce_retention(self) -> None:
        sizes = {}
        for clip in sorted(self.directory.glob("*.wav")):  # names start with a sortable stamp
            with contextlib.suppress(FileNotFoundError):  # another thread's retention took it
                sizes[clip] = clip.stat().st_size
        total = sum(sizes.values())
        for oldest, size in sizes.items():
            if total <= self.max_bytes:
                break
            oldest.unlink(missing_ok=True)
            total -= size


class AuditLog:
    """Append-only JSON-lines file; each ``write`` is flushed and fsynced before it returns.

    Thread-safe: the analysis thread and handler threads may both write.
    """

    def __init__(
        self, path: Path, clips: ClipStore | None = None, save_allowed: bool = False
    ) -> None:
        self.path = path
        self.clips = clips
        self.save_allowed = save_allowed
        path.parent.mkdir(parents=True, exist_ok=True)
        # unbuffered: a failed append leaves nothing in a buffer to be flushed later; readable,
        # so the torn-line check reads the file the descriptor writes to (logrotate may have
        # moved it away from ``path``)
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        self._closer = weakref.finalize(self, os.close, self._fd)  # a log never closed
        self._lock = threading.Lock()
        # the file may end in part of a line (a power cut, or our last append failed): checked
        # before the next append, so a record never joins a torn one
        self._torn = True

    def record(
        self, verdict: Verdict, handlers: dict[str, str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Write one utterance's record (saving its clip when blocked, or always if configured)."""
        now = dt.datetime.now(dt.timezone.utc)
        stamp = now.isoformat(timespec="milliseconds")
        clip, clip_error = None, None
        if self.clips is not None and (not verdict.allowed or self.save_allowed):
            try:
                clip = str(self.clips.save(verdict, now.strftime("%Y%m%dT%H%M%S.%f")))
            except OSError as exc:  # the record matters more than the clip
                clip_error = f"{type(exc).__name__}: {exc.strerror or exc}"
                log.warning("%s: clip not saved (%s)", self.clips.directory, clip_error)
        row = {
            "time": stamp,
            "source": verdict.utterance.source,
            **verdict.to_record(),
            "handlers": handlers or {},
            "clip": clip,
            **({"clip_error": clip_error} if clip_error else {}),
            **extra,
        }
        line = json.dumps(row, separators=(",", ":")) + "\n"
        with self._lock:
            self._append(line)
        return row

    def _append(self, line: str) -> None:
        """Write and fsync one line; on failure put it in the journal and re-raise."""
        try:
            if self._torn and self._ends_mid_line():
                line = "\n" + line
            data = line.encode("utf-8")
            while data:  # a full disk may take part of it, then refuse the rest
                data = data[os.write(self._fd, data) :]
            os.fsync(self._fd)
            self._torn = False
        except OSError as exc:  # (after a failed fsync the line may be in the file too)
            log.error("%s: record not appended (%s): %s", self.path, exc, line.strip())
            self._torn = True
            raise

    def _ends_mid_line(self) -> bool:
        try:
            size = os.fstat(self._fd).st_size
            return size > 0 and os.pread(self._fd, 1, size - 1) != b"\n"
        except OSError:  # cannot tell: write the record as it is rather than lose it
            return False

    def close(self) -> None:
        with self._lock:
            self._closer()  # closes the descriptor once; later writes fail with EBADF
            self._fd = -1


def read_records(path: Path, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """All records of an audit log.

    A line that is not a JSON record raises ``ValueError`` naming it by number; with
    ``skipped``, such lines (a power cut or a full disk tears the line being written) are left
    out instead and one message per line is appended to that list.
    """
    out = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"a JSON {type(row).__name__}, not an object")
            except ValueError as exc:
                why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                message = f"{path}:{number}: not a JSON record ({why})"
                if skipped is None:
                    raise ValueError(message) from exc
                skipped.append(message)
                continue
            out.append(row)
    return out
