"""The red team's arithmetic: attack success with and without guard, AUROC, ROC curves, and
the Wilson interval of a measured share.

numpy and scipy only (runtime dependencies), so it is tested on hand-made cases without the
``redteam`` extra.
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


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for a share of ``k`` in ``n`` (a blocked rate, say).

    What a measured share on a few dozen inputs can and cannot say: 34 of 36 C&W examples
    blocked (94.4 %) is 81.9-98.5 % at 95 % confidence, so it neither meets nor misses a 95 %
    target; 388 of 400 tones (97.0 %) is 94.8-98.3 %, below a 99 % one. Unlike the normal
    approximation it stays inside [0, 1] and is not empty at k = 0 or k = n.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n={n}], got {k}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo = 0.0 if k == 0 else max(0.0, float(centre - half))  # exact at the edges, where
    hi = 1.0 if k == n else min(1.0, float(centre + half))  # rounding would leave 1 - 1e-16
    return lo, hi


def percent_interval(ci: tuple[float, float] | list[float], label: str = "") -> str:
    """An interval as reports print it: ``(81.9-98.5)``, percent, one decimal."""
    return f"({label}{100 * ci[0]:.1f}-{100 * ci[1]:.1f})"
