"""Fusing detectors into one rule: block when any detector scores above its threshold.

The thresholds are calibrated jointly on held-out clean utterances so that the *union*
blocks at most the target share of clean speech: every detector gets the same per-detector
false-block level q, and q is the largest level whose union stays within the target.
An OR of per-detector thresholds keeps every block explainable in the audit log.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from guard.detectors.base import threshold_for

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
    best = {name: threshold_for(s, 0.0) for name, s in scores.items()}
    for k in range(int(np.floor(target_false_block * n)) + 1):
        q = k / n
        thresholds = {name: threshold_for(s, q) for name, s in scores.items()}
        if union_false_block(scores, thresholds) > target_false_block:
            break
        best = thresholds
    return best
