"""The audit log: one JSON line per utterance, appended and flushed, plus saved clips.

The audit log is data, not log messages: reviewers filter it with ``guard review`` or jq.
Every record has ``time`` (UTC wall clock, ISO 8601), ``start_s``/``end_s`` (seconds from the
start of the stream), ``label``, ``confidence``, ``verdict``, ``reasons``, ``scores``,
``thresholds``, ``latency_ms``, ``handlers`` (handler name -> outcome) and ``clip`` (the saved
WAV, or null).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from scipy.io import wavfile

from guard.audio import SAMPLE_RATE_HZ
from guard.verdict import Verdict


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
        wavfile.write(path, SAMPLE_RATE_HZ, pcm)
        self._enforce_retention()
        return path

    def _enforce_retention(self) -> None:
        clips = sorted(self.directory.glob("*.wav"))  # names start with a sortable UTC stamp
        total = sum(p.stat().st_size for p in clips)
        while clips and total > self.max_bytes:
            oldest = clips.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)


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
        self._fh = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def record(
        self, verdict: Verdict, handlers: dict[str, str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Write one utterance's record (saving its clip when blocked, or always if configured)."""
        now = dt.datetime.now(dt.timezone.utc)
        stamp = now.isoformat(timespec="milliseconds")
        clip = None
        if self.clips is not None and (not verdict.allowed or self.save_allowed):
            clip = str(self.clips.save(verdict, now.strftime("%Y%m%dT%H%M%S.%f")))
        row = {
            "time": stamp,
            "source": verdict.utterance.source,
            **verdict.to_record(),
            "handlers": handlers or {},
            "clip": clip,
            **extra,
        }
        line = json.dumps(row, separators=(",", ":")) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        return row

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def read_records(path: Path) -> list[dict[str, Any]]:
    """All records of an audit log; a line that is not valid JSON is reported with its number."""
    out = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not a JSON record ({exc.msg})") from exc
    return out
