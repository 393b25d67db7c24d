"""A small learned detector: a CNN that tells clean speech from speech carrying an added tone
or an adversarial perturbation.

The hand-built detectors each test one idea (a narrowband ridge, a steady phase, a prediction
that moves under re-framing). Their misses are where the idea runs out: short tones and tones
among a voice's low harmonics, and perturbations loud enough to survive every harmless
transform (docs/DETECTION.md). This detector learns the difference from examples instead:
``tools/train_perturbation_net.py`` (the ``train`` and ``redteam`` extras) puts random tones,
aliased ultrasonic tones, and ART's FGSM, PGD and DeepFool perturbations (through the float
twin of guard's model) on clips of *training* speakers, beside the same speakers' clean clips
half in background noise, and trains a four-layer CNN on the power spectrogram the other detectors
already share. It ships as ``models/perturbation_net.tflite`` with a card beside it
(``perturbation_net.json``: what it was trained on), under ``models/manifest.json``.

Score: the network's logit (higher = more likely perturbed), calibrated like every detector
on held-out clean speech. It knows the attack *families* it was shown, not a particular
trigger; what it was never shown (recorded sounds, style changes, other attacks) is reported
separately in docs/DETECTION.md.

The network travels inside the fitted state (its bytes as a uint8 array and its SHA-256 in
the detector's ``.npz``, verified by the state's manifest), as the second ear's reference
does, so a state means the same thing whatever file the configuration names later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from guard.analysis import Analysis
from guard.detectors.base import Detector, NotFittedError
from guard.errors import ModelError
from guard.features import N_BINS, N_FRAMES
from guard.manifest import verified_bytes
from guard.runtime import BatchInterpreters, make_interpreter

FloatArray = npt.NDArray[np.float64]
FLOOR_DB = 100.0
"""Cells more than this far below the clip's loudest cell read as the floor."""


def spectrogram_db(power: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The network's input: (..., frames, bins) power -> dB relative to each clip's loudest
    cell, floored at -``FLOOR_DB`` and mapped to [0, 1] (1 = the loudest cell)."""
    db = 10.0 * np.log10(np.asarray(power, dtype=np.float64) + 1e-12)
    db -= db.max(axis=(-2, -1), keepdims=True)
    return np.asarray(np.maximum(db, -FLOOR_DB) / FLOOR_DB + 1.0, dtype=np.float32)


class _Net:
    """The TFLite network: (batch, frames, bins) float32 in, (batch, 1) logit out."""

    def __init__(self, content: bytes, name: str) -> None:
        self.content = content
        first, _ = make_interpreter(content)
        (detail,) = first.get_input_details()
        if tuple(detail["shape"][1:]) != (N_FRAMES, N_BINS):
            raise ModelError(f"{name}: input shape {detail['shape']} is not (n, 49, 257)")
        self._output_index = first.get_output_details()[0]["index"]
        self._interpreters = BatchInterpreters(
            content, detail["index"], (N_FRAMES, N_BINS), max_sizes=4, first=first
        )

    def logits(self, spectrograms: npt.NDArray[np.float32]) -> FloatArray:
        out = np.empty(len(spectrograms), dtype=np.float64)
        for lo in range(0, len(spectrograms), 256):
            chunk = spectrograms[lo : lo + 256]
            interpreter = self._interpreters.get(len(chunk))
            interpreter.set_tensor(self._interpreters.input_index, chunk)
            interpreter.invoke()
            logit = interpreter.get_tensor(self._output_index)
            out[lo : lo + len(chunk)] = logit.reshape(len(chunk))
        return out


class PerturbationNetDetector(Detector):
    """Score = the network's logit that the utterance carries a tone or an adversarial
    perturbation.

    ``net_path`` (a ``.tflite`` checked against its folder's manifest) is needed to fit, not to
    load: a loaded detector rebuilds the network from its state.
    """

    name = "perturbation_net"
    budget_weight = 6
    """Six turns per round of the fused clean budget: chosen on a dev set of the calibrate
    speakers (bench/try_perturbation_net.py; docs/DETECTION.md). With one turn it gets 1 of
    the 8 clean blocks and adds little; with four it gets 4 and catches 77.5 % of PGD there;
    with six it takes 6 (96.7 %) and every other detector keeps 1."""

    def __init__(self, net_path: str | Path | None = None) -> None:
        self.net_path = net_path

    def get_params(self) -> dict[str, Any]:
        return {}  # the network is fitted state, not a parameter

    def _fit(self, clean: Sequence[Analysis]) -> None:
        if self.net_path is None:
            raise ValueError(
                f"{self.name}: fitting needs the network file (detectors.perturbation_net)"
            )
        path = Path(self.net_path)
        self._set_net(verified_bytes(path), str(path))

    def _set_net(self, content: bytes, name: str) -> None:
        self.net_ = _Net(content, name)
        self.net_sha256_ = hashlib.sha256(content).hexdigest()

    def anomaly_score(self, analyses: Sequence[Analysis]) -> FloatArray:
        return self._scores_once(analyses, self._score)

    def _score(self, analyses: Sequence[Analysis]) -> FloatArray:
        if not hasattr(self, "net_"):
            raise NotFittedError(f"{self.name}: call fit(clean analyses) before scoring")
        if not analyses:
            return np.zeros(0, dtype=np.float64)
        power = np.stack([a.features.power for a in analyses])
        return self.net_.logits(spectrogram_db(power))

    def _fitted_arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "net_tflite": np.frombuffer(self.net_.content, dtype=np.uint8),
            "net_sha256": np.array(self.net_sha256_),
        }

    def _set_fitted_arrays(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        content = arrays["net_tflite"].astype(np.uint8).tobytes()
        if hashlib.sha256(content).hexdigest() != str(arrays["net_sha256"]):
            raise ValueError("the stored network does not match its SHA-256")
        self._set_net(content, f"{self.name} network")
