"""Where the stream comes from: the microphone, WAV files, or raw PCM on stdin.

Every source hands 16 kHz mono float32 blocks to the pipeline through a ``BlockRing``: a
preallocated array of block slots and a bounded queue of filled slot numbers. The producer
(the PortAudio callback, or a reader thread) only copies into a free slot and enqueues its
number; when the ring is full it counts an overflow and drops the block, never blocks (the
file source with ``--fast`` is the exception: it waits, so nothing is lost).

The microphone callback does nothing else (python-sounddevice's rule: no logging, no
allocation, no blocking in the callback). ``import sounddevice`` happens only when a
microphone source is opened, so file and stdin sources work without PortAudio.
"""

from __future__ import annotations

import os
import queue
import select
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
import numpy.typing as npt

from guard.audio import SAMPLE_RATE_HZ, iter_audio_paths, read_audio
from guard.errors import AudioError

FloatArray = npt.NDArray[np.float32]


class BlockRing:
    """Preallocated slots + a bounded queue of ``(slot, frames, gap)``; one producer, one
    consumer.

    The queue holds at most ``slots - 2`` entries, so the slot being written is never one the
    consumer may still be copying. Dropped audio is reported in band: the next block that gets
    through carries the number of samples lost just before it, so the stream clock stays exact.
    """

    def __init__(self, slots: int, block_samples: int) -> None:
        if slots < 3:
            raise ValueError("a BlockRing needs at least 3 slots")
        self.block_samples = block_samples
        self._data = np.zeros((slots, block_samples), dtype=np.float32)
        self._queue: queue.Queue[tuple[int, int, int]] = queue.Queue(maxsize=slots - 2)
        self._next = 0
        self._gap = 0
        self.overflows = 0
        """Blocks dropped because the consumer fell behind."""
        self.dropped_samples = 0

    def put_nowait(self, samples: npt.NDArray[Any]) -> bool:
        """Copy ``samples`` (<= block_samples) into the next slot; False (counted) if full."""
        if self._queue.full():
            self.overflows += 1
            self.dropped_samples += len(samples)
            self._gap += len(samples)
            return False
        slot = self._next
        n = len(samples)
        self._data[slot, :n] = samples
        self._next = (slot + 1) % len(self._data)
        self._queue.put_nowait((slot, n, self._gap))
        self._gap = 0
        return True

    def put(self, samples: npt.NDArray[Any], stop: threading.Event) -> bool:
        """Wait for room (file sources with --fast); False if ``stop`` was set meanwhile."""
        while not stop.is_set():
            if not self._queue.full():
                return self.put_nowait(samples)
            time.sleep(0.002)
        return False

    def get(self, timeout_s: float) -> tuple[FloatArray, int] | None:
        """The oldest block (a copy) and the samples lost just before it, or None when no
        block arrived within ``timeout_s``."""
        try:
            slot, n, gap = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        return self._data[slot, :n].copy(), gap


class Source(Protocol):
    name: str
    ring: BlockRing
    lossless: bool
    """True when the producer waits for the consumer instead of dropping (``--fast``)."""

    def start(self) -> None: ...

    def stop(self) -> None:
        """Stop producing; blocks already in the ring can still be read (drain)."""
        ...

    @property
    def ended(self) -> bool:
        """True once the source produced its last block (files, stdin at EOF)."""
        ...

    def describe(self, at_s: float) -> str:
        """What to call the audio at ``at_s`` in the audit log (file name, device)."""
        ...


class _ThreadedSource:
    """A source fed by a reader thread."""

    name = ""
    lossless = False

    def __init__(self, block_samples: int, slots: int) -> None:
        self.ring = BlockRing(slots, block_samples)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self.error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def ended(self) -> bool:
        return self._done.is_set()

    def _run(self) -> None:
        try:
            self._produce()
        except (AudioError, OSError) as exc:
            self.error = str(exc)
        finally:
            self._done.set()

    def _produce(self) -> None:
        raise NotImplementedError

    def describe(self, at_s: float) -> str:
        return self.name


class FileSource(_ThreadedSource):
    """WAV/FLAC files (or folders of them) played as one stream, 0.5 s of silence between
    files; paced in real time, or as fast as the consumer takes them (``fast``: nothing lost)."""

    def __init__(
        self,
        inputs: Sequence[str | Path],
        fast: bool = False,
        block_samples: int = 1600,
        slots: int = 64,
        gap_s: float = 0.5,
    ) -> None:
        super().__init__(block_samples, slots)
        found = list(iter_audio_paths(inputs))
        self.unreadable: list[str] = [str(err) for _, err in found if err is not None]
        self.paths = [path for path, err in found if err is None]
        if not self.paths:
            raise AudioError(self.unreadable[0] if self.unreadable else "no audio input given")
        self.fast = fast
        self.lossless = fast
        self.gap_samples = round(gap_s * SAMPLE_RATE_HZ)
        self.name = str(inputs[0]) if len(inputs) == 1 else f"{len(self.paths)} files"
        self._starts: list[tuple[float, str]] = []

    def _produce(self) -> None:
        position = 0
        started = time.monotonic()
        gap = np.zeros(self.gap_samples, dtype=np.float32)
        for path in self.paths:
            try:
                samples = read_audio(path)
            except AudioError as exc:
                self.unreadable.append(str(exc))
                continue
            self._starts.append((position / SAMPLE_RATE_HZ, str(path)))
            for chunk in (samples, gap):
                for i in range(0, len(chunk), self.ring.block_samples):
                    block = chunk[i : i + self.ring.block_samples]
                    if not self.fast:
                        due = started + (position + len(block)) / SAMPLE_RATE_HZ
                        delay = due - time.monotonic()
                        if delay > 0 and self._stop.wait(delay):
                            return
                        ok = self.ring.put_nowait(block)
                    else:
                        ok = self.ring.put(block, self._stop)
                    if self._stop.is_set() and not ok:
                        return
                    position += len(block)

    def describe(self, at_s: float) -> str:
        name = self.name
        for t, path in self._starts:
            if t > at_s + 1e-6:
                break
            name = path
        return name


class PcmSource(_ThreadedSource):
    """Raw signed 16-bit little-endian mono PCM at 16 kHz (``arecord -f S16_LE -r 16000 -c 1``)."""

    def __init__(
        self, stream: BinaryIO | None = None, block_samples: int = 1600, slots: int = 64
    ) -> None:
        super().__init__(block_samples, slots)
        self.stream = stream if stream is not None else sys.stdin.buffer
        self.name = "stdin"

    def _produce(self) -> None:
        # Raw reads on the descriptor, polled, so that a stop never waits on a silent pipe
        # (a thread stuck in a buffered read aborts the interpreter at exit).
        fd = self.stream.fileno()
        nbytes = self.ring.block_samples * 2
        carry = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            data = os.read(fd, nbytes - len(carry))
            if not data:
                break
            data = carry + data
            usable = len(data) - len(data) % 2
            carry = data[usable:]
            if usable:
                pcm = np.frombuffer(data[:usable], dtype="<i2")
                self.ring.put_nowait(pcm.astype(np.float32) / 32768.0)


class MicSource:
    """A sounddevice input stream (16 kHz, mono, float32) feeding the ring from its callback."""

    def __init__(
        self, device: str = "", block_samples: int = 1600, slots: int = 64, latency: str = "low"
    ) -> None:
        self.ring = BlockRing(slots, block_samples)
        self.device: str | int | None = int(device) if device.isdigit() else (device or None)
        self.name = f"mic:{device or 'default'}"
        self.lossless = False
        self.latency = latency
        self.status_flags = 0
        """Callbacks that reported an input overflow from PortAudio."""
        self._stream: Any = None

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        # Realtime thread: copy into a preallocated slot, count problems, nothing else.
        if status:
            self.status_flags += 1
        self.ring.put_nowait(indata[:, 0])

    def start(self) -> None:
        try:
            import sounddevice as sd
        except OSError as exc:  # PortAudio missing
            raise AudioError(
                f"microphone: {exc} (install libportaudio2: apt-get install libportaudio2)"
            ) from exc
        try:
            self._stream = sd.InputStream(
                device=self.device,
                samplerate=SAMPLE_RATE_HZ,
                channels=1,
                dtype="float32",
                blocksize=self.ring.block_samples,
                latency=self.latency,
                callback=self._callback,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioError(
                f"microphone {self.device if self.device is not None else 'default'}: "
                f"{str(exc).splitlines()[0]}"
            ) from exc

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None

    @property
    def ended(self) -> bool:
        return False

    def describe(self, at_s: float) -> str:
        return self.name
