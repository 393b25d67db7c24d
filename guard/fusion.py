"""Fusing detectors into one rule: block when any detector scores above its threshold.

The thresholds are calibrated jointly on held-out clean utterances so that the *union*
blocks at most the target share of clean speech: starting from thresholds that block nothing,
each detector in turn is allowed one more clean utterance above its threshold, as long as the
union stays within the target (round robin, so the budget is shared evenly and what one
detector's extra block costs is only counted once when detectors agree).
A detector may ask for more turns per round (``weights``: the learned perturbation detector,
trained on the very attack families the thresholds are for, takes six; docs/DETECTION.md), or
none (``steady_tone``: its threshold stays at its highest clean score, so it adds what it
catches above everything clean it saw and takes none of the others' share; on new clean audio
it still blocks about 1 / (N + 1), N the calibration utterances, which ``guard calibrate``
says when N is small).
An OR of per-detector thresholds keeps every block explainable in the audit log. A detector
with a fixed threshold (the second ear's "guard's own model gives the command under 5 %")
takes its share first, whatever it costs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from guard.detectors.base import threshold_allowing

FloatArray = npt.NDArray[np.float64]


def union_fired(
    scores: dict[str, FloatArray], thresholds: dict[str, float]
) -> npt.NDArray[np.bool_]:
    """Per utterance: is at least one detector above its threshold (the fused block)?"""
    fired = np.zeros(len(next(iter(scores.values()))), dtype=bool)
    for name, s in scores.items():
        fired |= np.asarray(s) > thresholds[name]
    return fired


def union_false_block(scores: dict[str, FloatArray], thresholds: dict[str, float]) -> float:
    """Share of utterances on which at least one detector is above its threshold."""
    return float(union_fired(scores, thresholds).mean())


def calibrate_union(
    scores: dict[str, FloatArray],
    target_false_block: float,
    fixed: dict[str, float] | None = None,
    weights: dict[str, int] | None = None,
) -> dict[str, float]:
    """Per-detector thresholds whose union blocks at most ``target_false_block`` of ``scores``.

    ``fixed`` thresholds (a detector whose threshold is a stated rule, not a quantile) are
    kept as given, and what they block counts against the union first: the other detectors
    share what is left. ``weights`` give a detector that many turns per round (default 1).
    """
    fixed = fixed or {}
    weights = weights or {}
    n = len(next(iter(scores.values())))
    allowed = dict.fromkeys(scores, 0)
    thresholds = {
        name: fixed[name] if name in fixed else threshold_allowing(s, 0)
        for name, s in scores.items()
    }
    progress = True
    while progress:
        progress = False
        for name, s in scores.items():
            for _ in range(weights.get(name, 1)):
                if name in fixed or (allowed[name] + 1) / n > target_false_block:
                    break
                trial = {**thresholds, name: threshold_allowing(s, allowed[name] + 1)}
                if union_false_block(scores, trial) > target_false_block:
                    break
                allowed[name] += 1
                thresholds = trial
                progress = True
    return thresholds
