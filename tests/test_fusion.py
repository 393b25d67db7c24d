"""Calibration of per-detector thresholds and of the fused (OR) rule, on synthetic scores."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.detectors.base import threshold_for
from guard.fusion import calibrate_union, union_false_block


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(min_value=50, max_value=2000),
    target=st.floats(min_value=0.0, max_value=0.2),
    seed=st.integers(0, 10_000),
)
def test_threshold_hits_target_on_its_own_scores(n: int, target: float, seed: int) -> None:
    scores = np.random.default_rng(seed).normal(size=n)
    t = threshold_for(scores, target)
    assert np.mean(scores > t) <= target
    # and it is the tightest such threshold: one step lower would exceed the target
    lower = np.sort(scores)[np.sort(scores) < t]
    if len(lower):
        assert np.mean(scores > lower[-1]) > target or lower[-1] == t


def test_calibration_generalises_to_fresh_clean_scores() -> None:
    rng = np.random.default_rng(0)
    t = threshold_for(rng.normal(size=20_000), 0.01)
    fresh = rng.normal(size=20_000)
    assert 0.007 <= np.mean(fresh > t) <= 0.013


def test_union_stays_within_target_with_correlated_and_independent_detectors() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=5000)
    scores = {
        "a": base,
        "b": base + 0.1 * rng.normal(size=5000),  # nearly the same detector
        "c": rng.normal(size=5000),  # independent
        "d": rng.exponential(size=5000),
    }
    thresholds = calibrate_union(scores, 0.01)
    fb = union_false_block(scores, thresholds)
    assert fb <= 0.01
    assert fb >= 0.008  # it uses the budget, not a needlessly strict rule
    fresh = {k: v + 0 for k, v in scores.items()}
    assert union_false_block(fresh, thresholds) == pytest.approx(fb)


def test_a_fixed_threshold_is_kept_and_counted_first() -> None:
    """A detector with a stated rule keeps its threshold; what it blocks comes out of the
    budget before the others share the rest."""
    rng = np.random.default_rng(3)
    n = 4000
    rule = np.zeros(n)
    rule[:20] = 5.0  # fires on 0.5 % of clean utterances
    scores = {"a": rng.normal(size=n), "b": rng.normal(size=n), "rule": rule}
    thresholds = calibrate_union(scores, 0.01, fixed={"rule": 3.0})
    assert thresholds["rule"] == 3.0
    fb = union_false_block(scores, thresholds)
    assert 0.008 <= fb <= 0.01
    others = {k: scores[k] for k in ("a", "b")}
    alone = calibrate_union(others, 0.01)
    # the others get less of the budget than without the rule
    assert union_false_block(others, {k: thresholds[k] for k in others}) <= 0.0055
    assert union_false_block(others, alone) >= 0.008


def test_union_rule_still_catches_a_shifted_population() -> None:
    rng = np.random.default_rng(2)
    clean = {"a": rng.normal(size=3000), "b": rng.normal(size=3000)}
    thresholds = calibrate_union(clean, 0.01)
    attacked = {"a": rng.normal(size=3000), "b": rng.normal(loc=5.0, size=3000)}
    assert union_false_block(attacked, thresholds) > 0.95


def test_bad_target_rejected() -> None:
    with pytest.raises(ValueError, match="target_false_block"):
        threshold_for(np.zeros(10), 1.5)


def test_a_weighted_detector_gets_that_many_turns_per_round() -> None:
    rng = np.random.default_rng(4)
    n = 6000
    scores = {"a": rng.normal(size=n), "b": rng.normal(size=n), "net": rng.normal(size=n)}
    even = calibrate_union(scores, 0.01)
    weighted = calibrate_union(scores, 0.01, weights={"net": 3})
    blocked = {k: int(np.sum(scores[k] > weighted[k])) for k in scores}
    assert 0.008 <= union_false_block(scores, weighted) <= 0.01
    # independent detectors: 3 turns per round to 1 each gives it about three fifths
    assert blocked["net"] >= 2.5 * max(blocked["a"], blocked["b"])
    assert int(np.sum(scores["net"] > even["net"])) < blocked["net"]
    assert calibrate_union(scores, 0.01, weights={"net": 1}) == even


def test_a_detector_with_no_turns_sits_at_its_highest_clean_score() -> None:
    rng = np.random.default_rng(5)
    scores = {
        "a": rng.normal(size=2000),
        "b": rng.normal(size=2000),
        "add_on": rng.normal(size=2000),
    }
    thresholds = calibrate_union(scores, 0.01, weights={"add_on": 0})
    assert thresholds["add_on"] == scores["add_on"].max()
    # the others share the whole budget, as if it were not there
    assert thresholds == {
        **calibrate_union({k: scores[k] for k in "ab"}, 0.01),
        "add_on": thresholds["add_on"],
    }
