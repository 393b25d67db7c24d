"""The values that flow through guard, one way: Utterance -> Analysis -> Verdict.

An ``Analysis`` holds everything computed once per utterance (features, the classifier's
outputs) and is what every detector reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from guard.audio import SAMPLE_RATE_HZ, fit_window
from guard.classifier import CommandClassifier, ModelOutputs
from guard.features import CLIP_SAMPLES, Features

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Utterance:
    """A stretch of 16 kHz mono audio cut from a stream or read from a file."""

    samples: FloatArray
    """float32 in [-1, 1] at 16 kHz."""
    start_s: float = 0.0
    """Start, in seconds from the start of the stream."""
    source: str = ""
    """Where it came from (file path, device name)."""

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE_HZ

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass
class Analysis:
    """One utterance with its features and model outputs, computed once and shared.

    ``model`` is kept so detectors that need more interpreter calls (STRIP's blends,
    the consistency detector's transforms) run the same model the verdict is about.
    """

    utterance: Utterance
    features: Features
    outputs: ModelOutputs
    """Batch-1 outputs of ``model`` on ``features.log_mel``."""
    model: CommandClassifier = field(repr=False)

    @property
    def probabilities(self) -> FloatArray:
        return np.asarray(self.outputs.probabilities[0], dtype=np.float32)

    @property
    def label_index(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def label(self) -> str:
        return self.model.labels[self.label_index]

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.label_index])


def analyse(utterance: Utterance, model: CommandClassifier) -> Analysis:
    """Compute the 1 s features window and run the classifier once.

    Raises ValueError on empty or non-finite audio (the caller blocks such an utterance).
    """
    if utterance.samples.size == 0 or not np.all(np.isfinite(utterance.samples)):
        raise ValueError("utterance is empty or has NaN/infinite samples")
    features = Features(fit_window(utterance.samples, CLIP_SAMPLES))
    return Analysis(utterance, features, model.predict(features.log_mel), model)


def analyse_batch(
    samples: FloatArray, model: CommandClassifier, source: str = ""
) -> list[Analysis]:
    """Analyse many 1 s clips (n, 16000) with one interpreter call per 256 clips (for fitting)."""
    out: list[Analysis] = []
    for i in range(0, len(samples), 256):
        chunk = samples[i : i + 256]
        feats = [Features(fit_window(x, CLIP_SAMPLES)) for x in chunk]
        outputs = model.predict(np.stack([f.log_mel for f in feats]))
        for j, f in enumerate(feats):
            row = ModelOutputs(
                outputs.probabilities[j : j + 1],
                outputs.embedding[j : j + 1],
                outputs.early[j : j + 1],
            )
            out.append(Analysis(Utterance(chunk[j], source=source), f, row, model))
    return out
