"""Cutting a continuous 16 kHz stream into utterances: an energy VAD with hysteresis.

The stream is re-framed into fixed frames (10 ms by default) whatever block size it arrives
in, and every decision is taken per frame on the sample stream alone, so the utterances found
do not depend on how the audio was chunked (tested with random block sizes).

Per frame, the energy in dBFS is compared with an adaptive noise floor:

- **start:** ``onset_ms`` of consecutive frames at least ``start_db`` above the floor (and above
  ``min_level_dbfs``) open an utterance; it starts ``pre_roll_s`` before the first of them;
- **stop:** a frame below ``stop_db`` above the floor (hysteresis: ``stop_db < start_db``) starts
  the hangover; ``hangover_s`` of such frames close the utterance, which ends ``post_roll_s``
  after the last loud frame;
- utterances shorter than ``min_utterance_s`` are discarded (a click is not a command); one
  longer than ``max_utterance_s`` is cut there and a new one begins if speech goes on;
- the floor follows the energy down quickly and up slowly, and only outside utterances.

The audio lives in a preallocated ring of ``ring_s`` seconds; an utterance is copied out of it
once, when it closes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from guard.analysis import Utterance
from guard.audio import SAMPLE_RATE_HZ
from guard.errors import ConfigError

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class EndpointSettings:
    frame_ms: int = 10
    """VAD frame length in milliseconds."""
    start_db: float = 12.0
    """A frame this many dB above the noise floor counts as speech onset."""
    stop_db: float = 6.0
    """Below this many dB above the floor a frame counts as silence (hysteresis)."""
    min_level_dbfs: float = -50.0
    """Frames quieter than this are never speech, whatever the floor."""
    onset_ms: int = 30
    """Consecutive loud milliseconds needed to open an utterance."""
    hangover_s: float = 0.3
    """Silence that closes an utterance, in seconds."""
    pre_roll_s: float = 0.15
    """Audio kept before the onset, in seconds."""
    post_roll_s: float = 0.1
    """Audio kept after the last loud frame, in seconds."""
    min_utterance_s: float = 0.15
    """Shorter utterances (clicks) are dropped, in seconds of loud audio."""
    max_utterance_s: float = 2.0
    """Longer speech is cut into pieces of this length, in seconds."""
    ring_s: float = 5.0
    """Length of the audio ring the utterances are cut from, in seconds."""
    floor_rise_db_per_s: float = 3.0
    """How fast the noise floor may rise (it falls at once)."""

    def check(self, where: str = "endpoint") -> None:
        """Raise ConfigError naming the key when the values cannot work together."""
        if self.frame_ms <= 0:
            raise ConfigError(f"{where}.frame_ms: must be positive, got {self.frame_ms}")
        if self.stop_db > self.start_db:
            raise ConfigError(
                f"{where}.stop_db: must not exceed start_db ({self.stop_db} > {self.start_db})"
            )
        if self.max_utterance_s <= self.min_utterance_s:
            raise ConfigError(f"{where}.max_utterance_s: must exceed min_utterance_s")
        needed = self.pre_roll_s + self.max_utterance_s + self.post_roll_s + self.hangover_s
        if self.ring_s < needed:
            raise ConfigError(
                f"{where}.ring_s: {self.ring_s} s is too short; it must hold pre-roll + "
                f"max utterance + post-roll + hangover ({needed:.2f} s)"
            )


class Endpointer:
    """``feed(block)`` returns the utterances that closed in it; ``flush()`` ends the stream."""

    def __init__(self, settings: EndpointSettings | None = None, source: str = "") -> None:
        self.settings = s = settings or EndpointSettings()
        s.check()
        self.source = source
        self.frame = s.frame_ms * SAMPLE_RATE_HZ // 1000
        self._onset_frames = max(1, math.ceil(s.onset_ms / s.frame_ms))
        self._hangover_frames = max(1, round(s.hangover_s * 1000 / s.frame_ms))
        self._max_frames = round(s.max_utterance_s * 1000 / s.frame_ms)
        self._min_loud_frames = max(1, round(s.min_utterance_s * 1000 / s.frame_ms))
        self._pre = round(s.pre_roll_s * SAMPLE_RATE_HZ)
        self._post = round(s.post_roll_s * SAMPLE_RATE_HZ)
        self._rise_db = s.floor_rise_db_per_s * s.frame_ms / 1000
        self._ring = np.zeros(round(s.ring_s * SAMPLE_RATE_HZ), dtype=np.float32)
        self._carry = np.zeros(self.frame, dtype=np.float32)
        self._carry_n = 0
        self.samples_seen = 0
        """Samples fed so far (the stream clock)."""
        self._valid_from = 0
        self.dropped_short = 0
        """Loud bursts too short to be utterances."""
        self._floor_db: float | None = None
        self._run = 0  # consecutive loud frames before an utterance opens
        self._in_utt = False
        self._utt_start = 0  # sample index
        self._utt_frames = 0
        self._loud_frames = 0
        self._quiet = 0
        self._last_loud_end = 0  # sample index just after the last loud frame

    # -- stream input ---------------------------------------------------------------------

    def feed(self, block: FloatArray) -> list[Utterance]:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        out: list[Utterance] = []
        i = 0
        if self._carry_n:
            take = min(self.frame - self._carry_n, len(block))
            self._carry[self._carry_n : self._carry_n + take] = block[:take]
            self._carry_n += take
            i = take
            if self._carry_n < self.frame:
                return out
            self._frames(self._carry, out)
            self._carry_n = 0
        whole = (len(block) - i) // self.frame * self.frame
        if whole:
            self._frames(block[i : i + whole], out)
        rest = len(block) - i - whole
        if rest:
            self._carry[:rest] = block[i + whole :]
            self._carry_n = rest
        return out

    def flush(self) -> list[Utterance]:
        """End of stream: close an open utterance (if long enough)."""
        out: list[Utterance] = []
        if self._in_utt:
            self._close(self.samples_seen, out)
        return out

    def skip(self, samples: int) -> list[Utterance]:
        """Audio was lost (an overflow): close what is open and move the clock on."""
        out = self.flush()
        self.samples_seen += self._carry_n + samples  # a partial frame is dropped with the gap
        self._valid_from = self.samples_seen  # the ring before this point is stale
        self._carry_n = 0
        self._run = 0
        return out

    # -- per frame --------------------------------------------------------------------------

    def _frames(self, samples: FloatArray, out: list[Utterance]) -> None:
        n = len(samples) // self.frame
        frames = samples.reshape(n, self.frame)
        power = np.mean(np.square(frames, dtype=np.float64), axis=1)
        energy_db = 10.0 * np.log10(power + 1e-12)
        s = self.settings
        for k in range(n):
            self._store(frames[k])  # frame by frame: the ring never depends on block size
            e = float(energy_db[k])
            end = self.samples_seen
            if self._floor_db is None:
                self._floor_db = e
            floor = self._floor_db
            if not self._in_utt:
                if e >= max(floor + s.start_db, s.min_level_dbfs):
                    self._run += 1
                    if self._run >= self._onset_frames:
                        self._open(end - self._run * self.frame)
                else:
                    self._run = 0
                    self._floor_db = e if e < floor else min(e, floor + self._rise_db)
                continue
            self._utt_frames += 1
            if e >= max(floor + s.stop_db, s.min_level_dbfs):
                self._quiet = 0
                self._loud_frames += 1
                self._last_loud_end = end
            else:
                self._quiet += 1
            if self._quiet >= self._hangover_frames:
                self._close(min(self._last_loud_end + self._post, end), out)
            elif self._utt_frames >= self._max_frames:
                self._close(end, out)
                # Speech goes on: the next piece opens at once if this frame is loud.
                if self._quiet == 0:
                    self._open(end, pre_roll=False)

    def _open(self, onset: int, pre_roll: bool = True) -> None:
        self._in_utt = True
        self._utt_start = max(onset - (self._pre if pre_roll else 0), 0, self._oldest())
        self._utt_frames = self._run if pre_roll else 0
        self._loud_frames = self._run if pre_roll else 0
        self._last_loud_end = onset + self._run * self.frame if pre_roll else onset
        self._quiet = 0
        self._run = 0

    def _close(self, end: int, out: list[Utterance]) -> None:
        self._in_utt = False
        self._quiet = 0
        if self._loud_frames < self._min_loud_frames:
            self.dropped_short += 1
            return
        start = max(self._utt_start, self._oldest())
        out.append(Utterance(self._read(start, end), start / SAMPLE_RATE_HZ, self.source))

    # -- the ring ---------------------------------------------------------------------------

    def _oldest(self) -> int:
        return max(self._valid_from, self.samples_seen - len(self._ring))

    def _store(self, samples: FloatArray) -> None:
        size = len(self._ring)
        pos = self.samples_seen % size
        first = min(len(samples), size - pos)
        self._ring[pos : pos + first] = samples[:first]
        self._ring[: len(samples) - first] = samples[first:]
        self.samples_seen += len(samples)

    def _read(self, start: int, end: int) -> FloatArray:
        size = len(self._ring)
        idx = np.arange(start, end) % size
        return self._ring[idx].copy()
