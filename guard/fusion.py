"""Fusing detectors into one rule: block when any detector scores above its threshold.

The thresholds are calibrated jointly on held-out clean utterances so that the *union*
blocks at most the target share of clean speech: starting from thresholds that block nothing,
each detector in turn is allowed one more clean utterance above its threshold, as long as the
union stays within the target (round robin, so the budget is shared evenly and what one
detector's extra block costs is only counted once when detectors agree).
An OR of per-detector thresholds keeps every block explainable in the audit log.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from guard.detectors.base import threshold_allowing

FloatArray = npt.NDArray[np.float64]


def union_false_block(scores: dict[str, FloatArray], thresholds: dict[str, float]) -> float:
    """Share of utterances on which at least one detector is above its threshold."""
    fired = np.zeros(len(next(iter(scores.values()))), dtype=bool)
    for name, s in scores.items():
        fired |= np.asarray(s) > thresholds[name]
    return float(fired.mean())


def calibrate_union(scores: dict[str, FloatArray], target_false_block: float) -> dict[str, float]:
    """Per-detector thresholds whose union blocks at most ``target_false_block`` of ``scores``."""
    n = len(next(iter(scores.values())))
    allowed = dict.fromkeys(scores, 0)
    thresholds = {name: threshold_allowing(s, 0) for name, s in scores.items()}
    progress = True
    while progress:
        progress = False
        for name, s in scores.items():
            if (allowed[name] + 1) / n > target_false_block:
                continue
            trial = {**thresholds, name: threshold_allowing(s, allowed[name] + 1)}
            if union_false_block(scores, trial) <= target_false_block:
                allowed[name] += 1
                thresholds = trial
                progress = True
    return thresholds
