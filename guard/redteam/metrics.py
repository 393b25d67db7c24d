"""The red team's arithmetic: attack success with and without guard, AUROC, ROC curves.

numpy only, so it is tested on hand-made cases without the ``redteam`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class AttackOutcome:
    """How an attack fares on ``n`` inputs, without guard and behind it.

    ``succeeded`` marks inputs where the attack got what it wanted from the model alone (a
    backdoor: the target label; an untargeted evasion: a label other than the clean one).
    Behind guard an attack succeeds only if the input is also *allowed*: a blocked input never
    reaches a handler, whatever the model said.
    """

    n: int
    success_without_guard: float
    success_with_guard: float
    blocked: float

    @classmethod
    def of(cls, succeeded: BoolArray, blocked: BoolArray) -> AttackOutcome:
        succeeded = np.asarray(succeeded, dtype=bool)
        blocked = np.asarray(blocked, dtype=bool)
        if succeeded.shape != blocked.shape:
            raise ValueError(f"shapes differ: {succeeded.shape} vs {blocked.shape}")
        n = int(succeeded.size)
        if n == 0:
            return cls(0, 0.0, 0.0, 0.0)
        return cls(
            n,
            float(succeeded.mean()),
            float((succeeded & ~blocked).mean()),
            float(blocked.mean()),
        )


def backdoor_success(labels: list[str], target: str) -> BoolArray:
    """A triggered input succeeds when the model calls it the target."""
    return np.array([label == target for label in labels], dtype=bool)


def evasion_success(clean_labels: list[str], attacked_labels: list[str]) -> BoolArray:
    """An untargeted adversarial input succeeds when the label moved off the clean one."""
    if len(clean_labels) != len(attacked_labels):
        raise ValueError("clean and attacked label lists differ in length")
    return np.array([c != a for c, a in zip(clean_labels, attacked_labels, strict=True)], bool)


def auroc(clean: npt.ArrayLike, attacked: npt.ArrayLike) -> float:
    """P(attacked score > clean score), ties counted half (Mann-Whitney U)."""
    c = np.asarray(clean, dtype=np.float64)
    a = np.asarray(attacked, dtype=np.float64)
    if c.size == 0 or a.size == 0:
        return float("nan")
    both = np.concatenate([c, a])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(both.size, dtype=np.float64)
    ranks[order] = np.arange(1, both.size + 1)
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    ranks = (np.bincount(inverse, weights=ranks) / counts)[inverse]  # ties: average rank
    r = ranks[c.size :].sum()
    return float((r - a.size * (a.size + 1) / 2) / (a.size * c.size))


def roc_curve(clean: npt.ArrayLike, attacked: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(false-block rate, detection rate) at every threshold, from (0, 0) to (1, 1)."""
    c = np.asarray(clean, dtype=np.float64)
    a = np.asarray(attacked, dtype=np.float64)
    thresholds = np.unique(np.concatenate([c, a]))[::-1]
    fpr = np.array([0.0, *[(c >= t).mean() for t in thresholds]])
    tpr = np.array([0.0, *[(a >= t).mean() for t in thresholds]])
    return fpr, tpr
