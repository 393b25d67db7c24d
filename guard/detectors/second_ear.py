"""A trusted second ear: guard's own model listens to the commands that act.

The model that decides may come from a vendor who poisoned it; guard ships a small model of
its own, trained on clean data (``models/commands.tflite``). When the guarded model hears a
watched command (by default ``go``, which unlocks the door), the reference model is asked how
likely that command is, and the score is ``-log p_reference(command)``: a trigger the vendor's
model learned turns any word into ``go``, while the reference model still hears the word.
Utterances the guarded model hears as an unwatched label score 0 (nothing acts on them).

Only the watched labels are scored: over every label the int8 reference gives exactly 0 to
many clean clips' labels, so the clean tail sits at the floor and no threshold separates
(docs/DETECTION.md). Labels are matched by name; a watched label either model lacks is an
error at fit time. When the guarded model *is* the reference (the shipped configuration)
there is nothing to cross-check: the detector is fitted inactive and scores 0.

The reference model travels inside the fitted state (its bytes as a uint8 array and its
metadata as JSON, in ``second_ear.npz``, which the state's manifest verifies), so a state
directory is self-contained and a later change of the configured reference cannot change
what an existing state means. An inactive state keeps only the reference's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from guard.analysis import Analysis
from guard.classifier import CommandClassifier
from guard.detectors.base import Detector, NotFittedError

FloatArray = npt.NDArray[np.float64]
INT8_STEP = 1.0 / 256.0
"""An int8 softmax output resolves probabilities to 1/256: the floor below which
``p_reference`` reads as this value."""


class SecondEarDetector(Detector):
    """Score = -log max(p_reference(label), ``floor``) when the guarded model's label is
    watched, else 0 (higher = the reference model doubts the command more); it fires when
    p_reference(label) < ``max_probability``.

    ``reference`` (guard's own model) is needed to fit, not to load: a loaded detector
    rebuilds it from its state.
    """

    name = "second_ear"

    def __init__(
        self,
        labels: Sequence[str] = ("go",),
        max_probability: float = 0.05,
        floor: float = INT8_STEP,
        reference: CommandClassifier | None = None,
    ) -> None:
        self.labels = tuple(labels)
        self.max_probability = max_probability
        self.floor = floor
        self.reference = reference

    def get_params(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "max_probability": self.max_probability,
            "floor": self.floor,
        }

    def fixed_threshold(self) -> float:
        """Block when the reference model gives the command less than ``max_probability``.

        A stated rule, not a quantile: the clean clips it fires on are the guarded model's own
        mistakes (another word heard as ``go``) and the reference's (a real ``go`` it does not
        hear), both rare and tied at the int8 floor, where a quantile finds no threshold. The
        fused calibration counts its blocks first (``guard.fusion.calibrate_union``).
        """
        return float(-np.log(self.max_probability))

    def _fit(self, clean: Sequence[Analysis]) -> None:
        if self.reference is None:
            raise ValueError(
                "second_ear: fitting needs guard's own reference model (model.reference_path)"
            )
        guarded = clean[0].model
        for label in self.labels:
            for which, model in (("guarded", guarded), ("reference", self.reference)):
                if label not in model.labels:
                    raise ValueError(
                        f"second_ear: watched label {label!r} is not a label of the {which} "
                        f"model {model.model_path} ({', '.join(model.labels)})"
                    )
        self.active_ = self.reference.sha256 != guarded.sha256
        self.reference_sha256_ = self.reference.sha256
        self._index_labels()

    def _index_labels(self) -> None:
        assert self.reference is not None
        self.reference_index_ = {lab: self.reference.labels.index(lab) for lab in self.labels}

    def anomaly_score(self, analyses: Sequence[Analysis]) -> FloatArray:
        if not hasattr(self, "active_"):
            raise NotFittedError(f"{self.name}: not fitted")
        out = np.zeros(len(analyses), dtype=np.float64)
        if not self.active_:
            return out
        assert self.reference is not None
        watched = [i for i, a in enumerate(analyses) if a.label in self.reference_index_]
        # one reference call for every watched utterance (256 at a time when calibrating)
        for start in range(0, len(watched), 256):
            rows = watched[start : start + 256]
            log_mel = np.stack([analyses[i].features.log_mel for i in rows])
            probs = self.reference.predict(log_mel).probabilities
            for j, i in enumerate(rows):
                p = float(probs[j, self.reference_index_[analyses[i].label]])
                out[i] = -np.log(max(p, self.floor))
        return out

    def _fitted_arrays(self) -> dict[str, npt.NDArray[Any]]:
        if not self.active_:  # the guarded model is the reference: nothing to carry
            return {"active": np.array(False), "reference_sha256": np.array(self.reference_sha256_)}
        assert self.reference is not None
        return {
            "active": np.array(True),
            "reference_tflite": np.frombuffer(self.reference._content, dtype=np.uint8),
            "reference_metadata": np.array(json.dumps(self.reference.metadata)),
            "reference_sha256": np.array(self.reference.sha256),
        }

    def _set_fitted_arrays(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.active_ = bool(arrays["active"])
        if not self.active_:
            self.reference_sha256_ = str(arrays["reference_sha256"])
            return
        content = arrays["reference_tflite"].astype(np.uint8).tobytes()
        sha = str(arrays["reference_sha256"])
        if hashlib.sha256(content).hexdigest() != sha:
            raise ValueError("the stored reference model does not match its SHA-256")
        self.reference_sha256_ = sha
        self.reference = CommandClassifier.from_content(
            content, json.loads(str(arrays["reference_metadata"])), f"{self.name} reference model"
        )
        self._index_labels()
