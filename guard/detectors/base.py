"""The detector contract, after scikit-learn's outlier detectors.

- ``__init__`` only stores parameters; ``fit(clean analyses)`` returns ``self``; fitted
  attributes end in ``_``.
- ``anomaly_score(analyses)``: one float per utterance, **higher = more suspicious**.
- ``calibrate(held_out_clean, target_false_block)`` sets ``threshold_`` to the clean
  score quantile, so that share of clean utterances would be blocked.
- ``decision_function`` = ``threshold_ - anomaly_score`` (negative = outlier) and
  ``predict`` (+1 inlier, -1 outlier), as in scikit-learn.
- Fitted state persists as plain arrays: ``save(path)`` writes one ``.npz`` with the
  parameters as a JSON string; ``load`` reads it with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from guard.analysis import Analysis
from guard.errors import ModelError
from guard.manifest import verified_bytes

FloatArray = npt.NDArray[np.float64]
D = TypeVar("D", bound="Detector")


class NotFittedError(RuntimeError):
    """A detector was used before ``fit`` (or ``calibrate``)."""


class Detector(ABC):
    """Base class: subclasses implement ``_fit``, ``anomaly_score``, ``get_params`` and the
    fitted-array round trip (``_fitted_arrays`` / ``_set_fitted_arrays``)."""

    name: ClassVar[str]
    budget_weight: ClassVar[int] = 1
    """Turns per round in the fused calibration's share of the clean budget
    (``guard.fusion.calibrate_union``)."""
    saved_before: ClassVar[dict[str, Any]] = {}
    """Parameters a state saved before they existed had in effect (``load`` fills them in)."""
    threshold_: float
    _last: tuple[list[Analysis], FloatArray] | None = None

    @abstractmethod
    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (JSON-serialisable)."""

    @abstractmethod
    def _fit(self, clean: Sequence[Analysis]) -> None: ...

    @abstractmethod
    def anomaly_score(self, analyses: Sequence[Analysis]) -> FloatArray:
        """One score per analysis, higher = more suspicious."""

    @abstractmethod
    def _fitted_arrays(self) -> dict[str, npt.NDArray[Any]]: ...

    @abstractmethod
    def _set_fitted_arrays(self, arrays: dict[str, npt.NDArray[Any]]) -> None: ...

    def fit(self: D, clean: Sequence[Analysis]) -> D:
        """Fit on clean utterances; returns ``self``."""
        if not clean:
            raise ValueError(f"{self.name}: fit needs at least one clean utterance")
        self._last = None  # scores remembered from before this fit are not this fit's
        self._fit(clean)
        fixed = self.fixed_threshold()
        if fixed is not None:  # a stated rule needs no calibration
            self.threshold_ = fixed
        return self

    def calibrate(self: D, held_out_clean: Sequence[Analysis], target_false_block: float) -> D:
        """Set ``threshold_`` so ``target_false_block`` of these clean utterances score above it."""
        fixed = self.fixed_threshold()
        if fixed is not None:
            self.threshold_ = fixed
            return self
        scores = self.anomaly_score(held_out_clean)
        self.threshold_ = threshold_for(scores, target_false_block)
        return self

    def decision_function(self, analyses: Sequence[Analysis]) -> FloatArray:
        return self.threshold() - self.anomaly_score(analyses)

    def predict(self, analyses: Sequence[Analysis]) -> npt.NDArray[np.int64]:
        return np.where(self.decision_function(analyses) < 0, -1, 1)

    def _scores_once(
        self, analyses: Sequence[Analysis], compute: Callable[[Sequence[Analysis]], FloatArray]
    ) -> FloatArray:
        """``compute(analyses)``, or what it gave for these very analyses (the same objects)
        the last time: a detector that combines others' scores (guard.detectors.agreement)
        reads them without running them a second time."""
        last = self._last
        if (
            last is not None
            and len(last[0]) == len(analyses)
            and all(a is b for a, b in zip(last[0], analyses, strict=True))
        ):
            return last[1].copy()
        scores = compute(analyses)
        self._last = (list(analyses), scores.copy())
        return scores

    def fixed_threshold(self) -> float | None:
        """A threshold set by the detector's own rule rather than calibrated (None: calibrate)."""
        return None

    def threshold(self) -> float:
        if not hasattr(self, "threshold_"):
            raise NotFittedError(f"{self.name}: not calibrated")
        return float(self.threshold_)

    def save(self, path: Path) -> None:
        arrays = dict(self._fitted_arrays())
        arrays["__params__"] = np.array(json.dumps(self.get_params()))
        arrays["__threshold__"] = np.array(self.threshold())
        savez: Any = np.savez  # numpy's stub types **kwds against allow_pickle
        savez(path, **arrays)

    @classmethod
    def load(cls: type[D], path: Path) -> D:
        """Read a saved detector after checking ``path`` against its directory's manifest."""
        import io

        try:
            with np.load(io.BytesIO(verified_bytes(path)), allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            params = cls.saved_before | json.loads(str(arrays.pop("__params__")))
            threshold = float(arrays.pop("__threshold__"))
            detector = cls(**params)
            detector._set_fitted_arrays(arrays)
        except ModelError:
            raise
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise ModelError(f"{path}: not a saved {cls.name} detector ({exc})") from exc
        detector.threshold_ = threshold
        return detector


Z99 = 2.3263
"""Standard-normal 99th percentile: where a clean 99th-percentile value scores."""


def tail_model(values: npt.ArrayLike, min_scale: float) -> tuple[FloatArray, FloatArray]:
    """Per column (along axis 0): the clean median and a scale matched to the clean upper tail.

    The scale puts the clean 99th percentile at z = 2.33, where a normal distribution has it:
    clean tails of detector statistics are far from normal and differ between them, and
    matching the tail (not the MAD) makes equal scores mean equal false-block odds.
    """
    median, q99 = np.quantile(np.asarray(values, np.float64), [0.5, 0.99], axis=0)
    return np.asarray(median), np.asarray(np.maximum((q99 - median) / Z99, min_scale))


def threshold_for(scores: FloatArray, target_false_block: float) -> float:
    """The smallest threshold with at most ``target_false_block`` of ``scores`` strictly above it."""
    if not 0.0 <= target_false_block < 1.0:
        raise ValueError(f"target_false_block must be in [0, 1), got {target_false_block}")
    n = len(scores)
    allowed = int(np.floor(target_false_block * n))
    if allowed / n > target_false_block:  # the product rounded up
        allowed -= 1
    return threshold_allowing(scores, allowed)


def threshold_allowing(scores: FloatArray, allowed: int) -> float:
    """The threshold with exactly the ``allowed`` highest scores strictly above it (no ties)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    return float(s[len(s) - 1 - min(allowed, len(s) - 1)])
