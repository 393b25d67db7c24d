"""Poisoning with ART's own triggers, as an untrusted vendor using the research toolbox would.

``ArtTrigger`` has guard's ``Trigger`` interface (``apply(x, rng)``) but inserts with ART's
``CacheToneTrigger`` (tone and aliased kinds: ``librosa.tone`` sampled at 16 kHz, so an
ultrasonic frequency folds down) and ``CacheAudioTrigger`` (clip kind: the recording as ART
loads it, *not* peak-normalised as guard's ``Trigger`` does). ART has no stylistic triggers:
the ``style`` kind falls back to guard's transforms. The position is drawn from ``rng`` (ART's
``random=True`` would draw from numpy's global state, which would make runs irreproducible).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from guard.audio import SAMPLE_RATE_HZ
from guard.errors import GuardError
from guard.triggers import FloatArray, Trigger, TriggerSpec


class ArtTrigger(Trigger):
    """A trigger inserted by ART (needs the ``redteam`` extra: ART and librosa)."""

    engine = "art"

    def __init__(self, spec: TriggerSpec, base_dir: Path | None = None) -> None:
        super().__init__(spec, base_dir)
        self.art: Any = None
        if spec.kind in ("tone", "aliased"):
            from art.attacks.poisoning.perturbations.audio_perturbations import CacheToneTrigger

            self.art = CacheToneTrigger(
                sampling_rate=SAMPLE_RATE_HZ,
                frequency=spec.frequency_hz,
                duration=spec.duration_s or 0.1,
                scale=spec.scale,
            )
        elif spec.kind == "clip":
            from art.attacks.poisoning.perturbations.audio_perturbations import CacheAudioTrigger

            path = Path(spec.file)
            if not path.is_absolute() and base_dir is not None and not path.exists():
                path = base_dir / path
            self.art = CacheAudioTrigger(
                sampling_rate=SAMPLE_RATE_HZ,
                backdoor_path=str(path),
                duration=spec.duration_s,
                scale=spec.scale,
            )

    def apply(self, x: FloatArray, rng: np.random.Generator) -> FloatArray:
        if self.art is None:
            return super().apply(x, rng)
        length = int(self.art.trigger.shape[0])
        if length > len(x):
            raise GuardError(
                f"{self.spec.file or 'tone'}: the trigger is {length} samples, longer than the "
                f"{len(x)}-sample clip; give it a duration_s (ART cannot insert it)"
            )
        room = len(x) - length
        if self.spec.position_s is None:
            self.art.shift = int(rng.integers(0, room + 1))
        else:
            self.art.shift = min(room, round(self.spec.position_s * SAMPLE_RATE_HZ))
        return np.asarray(self.art.insert(np.asarray(x, dtype=np.float32)), dtype=np.float32)
