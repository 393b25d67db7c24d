"""STRIP (Gao et al., ACSAC 2019): a backdoored input keeps its label when blended with others.

The utterance is superimposed on N clean reference utterances (a bank shipped with the
fitted state) and the model is run on all N blends in one interpreter call. A clean command
blended with other speech gives uncertain, varied predictions (high entropy); an input whose
prediction is carried by a trigger stays confident. Entropy is taken over the class axis of
each blend's probabilities and averaged over the blends (ART's ``STRIP`` takes it over the
sample axis, which is not the paper's measure).

Blending happens on the complex STFT, which is linear: STFT(a·x + b·r) = a·X + b·R, so the
bank's spectra are computed once at load and each check costs N log-mel projections plus one
batched interpreter call.

STRIP looks for a trigger the *model* has learned. When the guarded model is guard's own
``reference`` (the shipped configuration: a model trained here on clean data), there is none
to find: on every input-space attack STRIP alone blocked no more than it blocks of clean
speech (docs/DETECTION.md), while its clean false blocks took part of the fused budget. Given
the reference, the detector is then fitted inactive and scores 0, like the second ears
(guard.detectors.second_ear); for any other model it runs. Without a reference it always runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from guard.analysis import Analysis
from guard.classifier import CommandClassifier
from guard.detectors.base import Detector, NotFittedError
from guard.features import log_mel, power_of, stft

FloatArray = npt.NDArray[np.float64]


def entropy(probabilities: npt.NDArray[np.float32], axis: int = -1) -> npt.NDArray[np.float64]:
    """Shannon entropy in nats along the class axis."""
    p = np.clip(probabilities.astype(np.float64), 1e-12, 1.0)
    return np.asarray(-(p * np.log(p)).sum(axis=axis), dtype=np.float64)


class StripDetector(Detector):
    """Score = log(n_classes) - mean entropy of the predictions on N blends (higher = suspicious).

    Parameters: ``n_blends`` reference utterances (the paper found 10 enough) and the
    ``mix`` weight of the reference in each blend (the input keeps ``1 - mix``).
    """

    name = "strip"

    def __init__(
        self,
        n_blends: int = 10,
        mix: float = 0.5,
        seed: int = 0,
        reference: CommandClassifier | None = None,
    ) -> None:
        self.n_blends = n_blends
        self.mix = mix
        self.seed = seed
        self.reference = reference

    def get_params(self) -> dict[str, Any]:
        return {"n_blends": self.n_blends, "mix": self.mix, "seed": self.seed}

    def _fit(self, clean: Sequence[Analysis]) -> None:
        """Pick a bank of confidently classified clean utterances, spread over labels (or
        nothing, when the guarded model is the trusted reference)."""
        guarded = clean[0].model.sha256
        self.active_ = self.reference is None or self.reference.sha256 != guarded
        if not self.active_:
            self.reference_sha256_ = guarded
            return
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(clean))
        chosen: list[int] = []
        seen: set[int] = set()
        for i in order:  # first pass: one per label, then fill
            a = clean[int(i)]
            if a.label_index not in seen and a.confidence > 0.8 and a.label != "_silence_":
                chosen.append(int(i))
                seen.add(a.label_index)
            if len(chosen) == self.n_blends:
                break
        for i in order:
            if len(chosen) == self.n_blends:
                break
            if int(i) not in chosen:
                chosen.append(int(i))
        bank = np.stack([clean[i].features.samples for i in chosen])
        # stored as 16-bit PCM: quantise now so a saved and reloaded detector scores the same
        self._set_bank(np.round(bank * 32767).astype(np.int16))

    def _set_bank(self, bank_int16: npt.NDArray[np.int16]) -> None:
        self.bank_ = (bank_int16 / 32767).astype(np.float32)
        self.bank_spectra_ = stft(self.bank_) * np.float32(self.mix)

    def first_blends(self, n_blends: int) -> StripDetector:
        """A copy of this fitted detector that blends with the first ``n_blends`` of its bank
        only (what fitting with ``n_blends`` would have chosen: the bank is picked in order).
        Uncalibrated: its scores move, so its threshold must be set again."""
        if not getattr(self, "active_", False):
            raise NotFittedError(f"{self.name}: only an active fitted detector has a bank")
        if not 1 <= n_blends <= len(self.bank_):
            raise ValueError(f"n_blends must be 1..{len(self.bank_)}, got {n_blends}")
        fewer = StripDetector(n_blends, self.mix, self.seed, self.reference)
        fewer.active_ = True
        fewer.bank_ = self.bank_[:n_blends]  # the spectra are per clip: no STFT again
        fewer.bank_spectra_ = self.bank_spectra_[:n_blends]
        return fewer

    def anomaly_score(self, analyses: Sequence[Analysis]) -> FloatArray:
        if not hasattr(self, "active_"):
            raise NotFittedError(f"{self.name}: call fit(clean analyses) before scoring")
        if not self.active_:
            return np.zeros(len(analyses), dtype=np.float64)
        out = np.empty(len(analyses), dtype=np.float64)
        for i, a in enumerate(analyses):
            blends = a.features.spectrum[None] * np.float32(1.0 - self.mix) + self.bank_spectra_
            probs = a.model.predict(log_mel(power_of(blends))).probabilities
            out[i] = np.log(probs.shape[1]) - entropy(probs).mean()
        return out

    def _fitted_arrays(self) -> dict[str, npt.NDArray[Any]]:
        if not self.active_:  # guarding the reference itself: no bank to carry
            return {"active": np.array(False), "reference_sha256": np.array(self.reference_sha256_)}
        return {
            "active": np.array(True),
            "bank_int16": np.round(self.bank_ * 32767).astype(np.int16),
        }

    def _set_fitted_arrays(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        # states saved before the rule existed carry only the bank: they ran, and still do
        self.active_ = bool(arrays["active"]) if "active" in arrays else True
        if self.active_:
            self._set_bank(arrays["bank_int16"].astype(np.int16))
        else:
            self.reference_sha256_ = str(arrays["reference_sha256"])
