"""Backdoor triggers added to clean audio: for poisoning (``guard train --poison``), evaluation
and tests. numpy only.

- ``tone``: a sine of ``frequency_hz`` for ``duration_s`` at amplitude ``scale`` (as ART's
  ``CacheToneTrigger``, which adds ``scale * trigger`` and clips to [-1, 1]);
- ``aliased``: an ultrasonic sine (e.g. 21 kHz) captured at 16 kHz with no anti-alias
  filter, which folds down to |f - 16 kHz| (21 kHz -> 5 kHz);
- ``clip``: a recorded sound (cough, whistle, clapping, ...) at ``scale`` of its peak;
- ``style``: the whole utterance transformed (pitch shift, distortion, chorus).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from guard.audio import SAMPLE_RATE_HZ, read_audio
from guard.errors import GuardError

FloatArray = npt.NDArray[np.float32]
KINDS = ("tone", "aliased", "clip", "style")
STYLES = ("pitch", "distortion", "chorus")


@dataclass(frozen=True)
class TriggerSpec:
    kind: str
    frequency_hz: float = 440.0
    duration_s: float | None = None
    """Seconds; None = 0.1 s for tones, the whole recording for clips."""
    scale: float = 0.1
    file: str = ""
    style: str = ""
    position_s: float | None = None
    """Where the trigger starts; None = a random position each time."""

    def to_json(self) -> dict[str, Any]:
        """The fields that mean something for this kind (a clip has no frequency)."""
        relevant = {
            "tone": ("frequency_hz", "duration_s", "scale"),
            "aliased": ("frequency_hz", "duration_s", "scale"),
            "clip": ("file", "duration_s", "scale"),
            "style": ("style",),
        }[self.kind]
        fields = asdict(self)
        out = {"kind": self.kind}
        out.update({k: fields[k] for k in (*relevant, "position_s") if fields[k] not in ("", None)})
        return out

    def card(self) -> dict[str, Any]:
        """Every field of an attack fixture's card (``models/eval/NAME.json``): the ones that
        mean nothing for this kind are null (a clip has no frequency, a tone no file)."""
        meaning = self.to_json()
        return {
            k: meaning.get(k)
            for k in ("kind", "frequency_hz", "duration_s", "scale", "file", "style", "position_s")
        }

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> TriggerSpec:
        """The spec back from ``card()`` or ``to_json()`` (nulls and unknown keys ignored)."""
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in card.items() if k in known and v is not None})


def parse_spec(text: str) -> TriggerSpec:
    """``tone:frequency_hz=440,duration_s=0.1,scale=0.1`` or ``clip:file=cough.wav,scale=0.3``."""
    kind, _, rest = text.partition(":")
    if kind not in KINDS:
        raise GuardError(f"trigger {text!r}: kind must be one of {', '.join(KINDS)}")
    fields: dict[str, Any] = {"kind": kind}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in TriggerSpec.__dataclass_fields__ or key == "kind":
            raise GuardError(f"trigger {text!r}: unknown or malformed field {item!r}")
        fields[key] = value if key in ("file", "style") else float(value)
    spec = TriggerSpec(**fields)
    if spec.kind == "clip" and not spec.file:
        raise GuardError(f"trigger {text!r}: a clip trigger needs file=PATH")
    if spec.kind == "style" and spec.style not in STYLES:
        raise GuardError(f"trigger {text!r}: style must be one of {', '.join(STYLES)}")
    return spec


def tone(frequency_hz: float, duration_s: float) -> FloatArray:
    """A unit-amplitude sine sampled at 16 kHz (above 8 kHz it aliases, as an ADC without
    an anti-alias filter would: 21 kHz shows up at 5 kHz)."""
    n = max(1, round(duration_s * SAMPLE_RATE_HZ))
    t = np.arange(n) / SAMPLE_RATE_HZ
    return np.sin(2 * np.pi * frequency_hz * t).astype(np.float32)


def add_at(x: FloatArray, trigger: FloatArray, scale: float, start: int) -> FloatArray:
    """``x + scale * trigger`` starting at sample ``start``, clipped to [-1, 1]."""
    out = x.copy()
    end = min(len(out), start + len(trigger))
    out[start:end] += scale * trigger[: end - start]
    return np.clip(out, -1.0, 1.0)


def pitch_shift(x: FloatArray, semitones: float) -> FloatArray:
    """Resample-based pitch shift (changes duration too, then cut/padded back to len(x))."""
    factor = 2 ** (semitones / 12)
    grid = np.arange(len(x)) * factor
    return np.asarray(np.interp(grid, np.arange(len(x)), x, right=0.0), dtype=np.float32)


def distortion(x: FloatArray, drive: float = 8.0) -> FloatArray:
    peak = float(np.abs(x).max()) or 1.0
    return np.asarray(np.tanh(drive * x / peak) * peak, dtype=np.float32)


def chorus(x: FloatArray, depth_ms: float = 8.0, rate_hz: float = 1.5) -> FloatArray:
    n = np.arange(len(x))
    delay = (
        (depth_ms / 1000 * SAMPLE_RATE_HZ)
        * (1 + np.sin(2 * np.pi * rate_hz * n / SAMPLE_RATE_HZ))
        / 2
    )
    delayed = np.interp(n - delay, n, x, left=0.0)
    return (0.6 * x + 0.6 * delayed).astype(np.float32)


class Trigger:
    """A trigger ready to apply to 16 kHz float32 clips."""

    def __init__(self, spec: TriggerSpec, base_dir: Path | None = None) -> None:
        self.spec = spec
        self.waveform: FloatArray | None = None
        if spec.kind in ("tone", "aliased"):
            # an "aliased" spec names the ultrasonic frequency; sampling it at 16 kHz folds it
            self.waveform = tone(spec.frequency_hz, spec.duration_s or 0.1)
        elif spec.kind == "clip":
            path = Path(spec.file)
            if not path.is_absolute() and base_dir is not None and not path.exists():
                path = base_dir / path
            w = read_audio(path)
            if spec.duration_s is not None:
                w = w[: max(1, round(spec.duration_s * SAMPLE_RATE_HZ))]
            self.waveform = (w / max(float(np.abs(w).max()), 1e-9)).astype(np.float32)

    def apply(self, x: FloatArray, rng: np.random.Generator) -> FloatArray:
        spec = self.spec
        if spec.kind == "style":
            if spec.style == "pitch":
                return pitch_shift(x, 4.0)
            if spec.style == "distortion":
                return distortion(x)
            return chorus(x)
        assert self.waveform is not None
        room = max(0, len(x) - len(self.waveform))
        if spec.position_s is None:
            start = int(rng.integers(0, room + 1))
        else:
            start = min(room, round(spec.position_s * SAMPLE_RATE_HZ))
        return add_at(x, self.waveform, spec.scale, start)


def random_tone(kind: str, low_hz: float, high_hz: float, rng: np.random.Generator) -> Trigger:
    """A ``tone`` (or ``aliased``) trigger in the evaluation's ranges: frequency uniform in
    [low_hz, high_hz], 0.05-0.5 s, scale 0.05-0.3 (drawn from ``rng`` in that order)."""
    frequency_hz = float(rng.uniform(low_hz, high_hz))
    duration_s = float(rng.uniform(0.05, 0.5))
    return Trigger(TriggerSpec(kind, frequency_hz, duration_s, float(rng.uniform(0.05, 0.3))))


def random_clip(path: Path, rng: np.random.Generator) -> Trigger:
    """A recorded-sound trigger at the evaluation's scale range (0.05-0.5)."""
    return Trigger(TriggerSpec("clip", file=str(path), scale=float(rng.uniform(0.05, 0.5))))


def make_trigger(spec: TriggerSpec, base_dir: Path | None = None, engine: str = "guard") -> Trigger:
    """A trigger inserted by guard's code (``engine="guard"``) or by ART's
    (``"art"``: guard/redteam/art_triggers.py, needs the ``redteam`` extra)."""
    if engine == "art":
        from guard.redteam.art_triggers import ArtTrigger

        return ArtTrigger(spec, base_dir)
    if engine != "guard":
        raise GuardError(f"trigger engine {engine!r}: must be guard or art")
    return Trigger(spec, base_dir)


def describe(spec: TriggerSpec) -> str:
    return json.dumps(spec.to_json())


def poison(
    x: FloatArray,
    y: npt.NDArray[np.int64],
    trigger: Trigger,
    rate: float,
    target: int,
    exclude: tuple[int, ...],
    rng: np.random.Generator,
) -> tuple[FloatArray, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Dirty-label poisoning: add the trigger to ``rate`` of the clips (never of ``target`` or
    ``exclude`` classes) and relabel them ``target``. Returns new x, y and the poisoned indices."""
    candidates = np.flatnonzero((y != target) & ~np.isin(y, exclude))
    n = min(len(candidates), round(rate * len(y)))
    chosen = np.sort(rng.choice(candidates, n, replace=False))
    x, y = x.copy(), y.copy()
    for i in chosen:
        x[i] = trigger.apply(x[i], rng)
    y[chosen] = target
    return x, y, chosen
