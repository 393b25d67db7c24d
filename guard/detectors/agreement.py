"""Agreement: two perturbation detectors that are each just under their thresholds, together.

The learned perturbation detector (``perturbation_net``) and the consistency detector see an
adversarial perturbation from two sides: what it looks like in the spectrogram, and how
little it survives re-framing. Minimal attacks (DeepFool, C&W) and FGSM often leave each of
them a little below its own threshold. The agreement score is the sum of the two scores, each
in units of its clean tail (median, and the 99th percentile at z = 2.33: ``tail_model``), so
that equal parts mean equal false-block odds. It is calibrated in the fused rule like any
detector, and a block it causes names it in the verdict's reasons.

It runs neither part again: it reads the scores they just gave the same utterances
(``Detector._scores_once``), so it costs two subtractions. Its parts come from the same state
(``guard.detectors.registry.wire``); a state without both cannot enable it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from guard.analysis import Analysis
from guard.detectors.base import Detector, FloatArray, NotFittedError, tail_model
from guard.errors import ModelError


class AgreementDetector(Detector):
    """Sum of ``parts``' scores, each scaled by its clean tail."""

    name = "agreement"
    parts: ClassVar[tuple[str, ...]] = ("perturbation_net", "consistency")

    def __init__(self) -> None:
        self.parts_: dict[str, Detector] = {}

    def get_params(self) -> dict[str, Any]:
        return {}

    def use_parts(self, detectors: Mapping[str, Detector]) -> None:
        """The fitted detectors whose scores this one adds (by name)."""
        missing = [p for p in self.parts if p not in detectors]
        if missing:
            raise ModelError(
                f"{self.name}: needs {' and '.join(self.parts)} in the same state "
                f"(detectors.enabled lacks {', '.join(missing)})"
            )
        self.parts_ = {p: detectors[p] for p in self.parts}

    def _part_scores(self, analyses: Sequence[Analysis]) -> npt.NDArray[np.float64]:
        if len(self.parts_) != len(self.parts):
            raise NotFittedError(f"{self.name}: its parts were not given (use_parts)")
        return np.stack([self.parts_[p].anomaly_score(analyses) for p in self.parts], axis=1)

    def _fit(self, clean: Sequence[Analysis]) -> None:
        self.median_, self.scale_ = tail_model(self._part_scores(clean), 1e-9)

    def anomaly_score(self, analyses: Sequence[Analysis]) -> FloatArray:
        if not hasattr(self, "median_"):
            raise NotFittedError(f"{self.name}: call fit(clean analyses) before scoring")
        if not analyses:
            return np.zeros(0, dtype=np.float64)
        z = (self._part_scores(analyses) - self.median_) / self.scale_
        return np.asarray(z.sum(axis=1), dtype=np.float64)

    def _fitted_arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"median": self.median_, "scale": self.scale_}

    def _set_fitted_arrays(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.median_ = arrays["median"].astype(np.float64)
        self.scale_ = arrays["scale"].astype(np.float64)
        if self.median_.shape != (len(self.parts),) or self.scale_.shape != self.median_.shape:
            raise ValueError(f"expected {len(self.parts)} medians and scales")
