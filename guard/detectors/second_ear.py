"""A trusted second ear: guard's own model listens to the commands that act.

The model that decides may come from a vendor who poisoned it; guard ships a small model of
its own, trained on clean data (``models/commands.tflite``). When the guarded model hears a
watched command (by default ``go``, which unlocks the door), the reference model listens to
the same features. Two detectors do this:

- ``second_ear``: how likely the reference finds the command, ``-log p_reference(command)``:
  a trigger the vendor's model learned turns any word into ``go``, while the reference still
  hears the word. It fires on a stated rule, p_reference < ``max_probability``.
- ``second_ear_consistency``: how stable the reference's prediction is under the consistency
  detector's transforms (guard.detectors.consistency). An attacker who knows the second ear
  adds a perturbation that makes the reference hear ``go`` too; such a perturbation is tuned
  to the reference's exact input and does not survive re-framing (the vendor's prediction
  does: its trigger is a real sound). Calibrated like the other detectors.

Utterances the guarded model hears as an unwatched label score 0 (nothing acts on them). Only
the watched labels are scored: over every label the int8 reference gives exactly 0 to many
clean clips' labels, so the clean tail sits at the floor and no threshold separates
(docs/DETECTION.md). Labels are matched by name; a watched label either model lacks is an
error at fit time. When the guarded model *is* the reference (the shipped configuration)
there is nothing to cross-check: the detectors are fitted inactive and score 0.

The reference model travels inside the fitted state (its bytes as a uint8 array and its
metadata as JSON, in the detector's ``.npz``, which the state's manifest verifies), so a state
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
from guard.classifier import CommandClassifier, ModelOutputs
from guard.detectors.base import Detector, NotFittedError
from guard.detectors.consistency import ConsistencyDetector

FloatArray = npt.NDArray[np.float64]
INT8_STEP = 1.0 / 256.0
"""An int8 softmax output resolves probabilities to 1/256: the floor below which
``p_reference`` reads as this value."""


class _ReferenceEar(Detector):
    """What both ears share: the reference model, the watched labels, and the rule that only
    utterances the guarded model hears as a watched label are scored.

    ``reference`` (guard's own model) is needed to fit, not to load: a loaded detector
    rebuilds it from its state.
    """

    def __init__(
        self, labels: Sequence[str] = ("go",), reference: CommandClassifier | None = None
    ) -> None:
        self.labels = tuple(labels)
        self.reference = reference

    def _fit(self, clean: Sequence[Analysis]) -> None:
        if self.reference is None:
            raise ValueError(
                f"{self.name}: fitting needs guard's own reference model (model.reference_path)"
            )
        guarded = clean[0].model
        for label in self.labels:
            for which, model in (("guarded", guarded), ("reference", self.reference)):
                if label not in model.labels:
                    raise ValueError(
                        f"{self.name}: watched label {label!r} is not a label of the {which} "
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
        watched = [i for i, a in enumerate(analyses) if a.label in self.reference_index_]
        # one reference call for every watched utterance (256 at a time when calibrating)
        for start in range(0, len(watched), 256):
            rows = watched[start : start + 256]
            out[rows] = self._score_watched([analyses[i] for i in rows])
        return out

    def _heard_by_reference(self, analyses: Sequence[Analysis]) -> list[Analysis]:
        """The same utterances and features, with the reference model's outputs."""
        assert self.reference is not None
        outputs = self.reference.predict(np.stack([a.features.log_mel for a in analyses]))
        return [
            Analysis(
                a.utterance,
                a.features,
                ModelOutputs(
                    outputs.probabilities[j : j + 1],
                    outputs.embedding[j : j + 1],
                    outputs.early[j : j + 1],
                ),
                self.reference,
            )
            for j, a in enumerate(analyses)
        ]

    def _score_watched(self, analyses: Sequence[Analysis]) -> FloatArray:
        raise NotImplementedError

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


class SecondEarDetector(_ReferenceEar):
    """Score = -log max(p_reference(label), ``floor``) when the guarded model's label is
    watched, else 0 (higher = the reference model doubts the command more); it fires when
    p_reference(label) < ``max_probability``.
    """

    name = "second_ear"

    def __init__(
        self,
        labels: Sequence[str] = ("go",),
        max_probability: float = 0.05,
        floor: float = INT8_STEP,
        reference: CommandClassifier | None = None,
    ) -> None:
        super().__init__(labels, reference)
        self.max_probability = max_probability
        self.floor = floor

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

    def _score_watched(self, analyses: Sequence[Analysis]) -> FloatArray:
        heard = self._heard_by_reference(analyses)
        pairs = zip(analyses, heard, strict=True)
        p = np.array([h.probabilities[self.reference_index_[a.label]] for a, h in pairs])
        return np.asarray(-np.log(np.maximum(p.astype(np.float64), self.floor)))


class SecondEarConsistencyDetector(_ReferenceEar):
    """Score = the consistency detector's JS divergence, computed with the reference model,
    when the guarded model's label is watched, else 0; calibrated like the other detectors."""

    name = "second_ear_consistency"

    def __init__(
        self,
        labels: Sequence[str] = ("go",),
        seed: int = 1,
        reference: CommandClassifier | None = None,
    ) -> None:
        super().__init__(labels, reference)
        self.seed = seed
        self._consistency = ConsistencyDetector(seed=seed, retreat_weight=0.0)  # JS alone

    def get_params(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "seed": self.seed}

    def _fit(self, clean: Sequence[Analysis]) -> None:
        super()._fit(clean)
        self._consistency.fit(clean)  # draws the transforms' noise (another seed than the
        # guarded model's consistency detector, so one stored draw does not serve both)

    def _score_watched(self, analyses: Sequence[Analysis]) -> FloatArray:
        return self._consistency.anomaly_score(self._heard_by_reference(analyses))

    def _fitted_arrays(self) -> dict[str, npt.NDArray[Any]]:
        arrays = super()._fitted_arrays()
        if self.active_:
            arrays["noise"] = self._consistency.noise_
        return arrays

    def _set_fitted_arrays(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        super()._set_fitted_arrays(arrays)
        if self.active_:
            self._consistency._set_fitted_arrays({"noise": arrays["noise"]})
