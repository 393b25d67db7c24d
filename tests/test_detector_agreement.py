"""The agreement detector: the sum of the learned perturbation detector's and the consistency
detector's scores in units of their clean tails, read from the scores they just gave.

Real network, real model, real clips (tests/data), and ART's FGSM through the float twin.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from guard.analysis import Analysis, analyse_batch
from guard.classifier import CommandClassifier
from guard.detectors import registry
from guard.detectors.agreement import AgreementDetector
from guard.detectors.base import FloatArray, NotFittedError
from guard.detectors.consistency import ConsistencyDetector
from guard.detectors.perturbation_net import PerturbationNetDetector
from guard.errors import ModelError
from guard.guard import Guard

from .conftest import MODELS
from .test_detectors_model import _clean_clips


class CountingConsistency(ConsistencyDetector):
    """The consistency detector, counting how often it really computes."""

    computed = 0

    def _score(self, analyses: Sequence[Analysis]) -> FloatArray:
        CountingConsistency.computed += len(analyses)
        return super()._score(analyses)


@pytest.fixture(scope="module")
def analyses(classifier: CommandClassifier) -> list[Analysis]:
    return analyse_batch(_clean_clips(), classifier)


@pytest.fixture(scope="module")
def parts(analyses: list[Analysis]) -> list[ConsistencyDetector | PerturbationNetDetector]:
    net = PerturbationNetDetector(net_path=MODELS / "perturbation_net.tflite").fit(analyses)
    return [CountingConsistency().fit(analyses), net]


@pytest.fixture(scope="module")
def agreement(
    analyses: list[Analysis], parts: list[ConsistencyDetector | PerturbationNetDetector]
) -> AgreementDetector:
    fitted = AgreementDetector()
    registry.wire([*parts, fitted])
    return fitted.fit(analyses)


def test_the_score_is_the_sum_of_the_parts_in_clean_tail_units(
    analyses: list[Analysis],
    parts: list[ConsistencyDetector | PerturbationNetDetector],
    agreement: AgreementDetector,
) -> None:
    consistency, net = (p.anomaly_score(analyses) for p in parts)
    expected = np.zeros(len(analyses))
    for s in (net, consistency):  # AgreementDetector.parts order
        median, q99 = np.quantile(s, [0.5, 0.99])
        expected += (s - median) / ((q99 - median) / 2.3263)
    np.testing.assert_allclose(agreement.anomaly_score(analyses), expected, rtol=1e-4)
    # a clean clip sits near the middle of each part's tail: the sum's median is near 0
    assert abs(np.median(agreement.anomaly_score(analyses))) < 1.0


def test_it_reads_the_parts_scores_instead_of_running_them_again(
    analyses: list[Analysis],
    parts: list[ConsistencyDetector | PerturbationNetDetector],
    agreement: AgreementDetector,
) -> None:
    consistency = parts[0]
    batch = analyses[:3]
    CountingConsistency.computed = 0
    first = consistency.anomaly_score(batch)
    agreement.anomaly_score(batch)
    assert CountingConsistency.computed == 3  # the consistency transforms ran once
    # other analyses (even of the same audio) are computed afresh, never taken from the memo
    other = analyses[3:6]
    agreement.anomaly_score(other)
    assert CountingConsistency.computed == 6
    np.testing.assert_allclose(consistency.anomaly_score(batch), first)
    assert CountingConsistency.computed == 9  # the memo holds the last batch only


def test_an_adversarial_example_scores_above_the_clean_clips(
    analyses: list[Analysis],
    agreement: AgreementDetector,
    classifier: CommandClassifier,
) -> None:
    from guard.redteam.adversarial import art_classifier, generate
    from guard.redteam.twin import load_twin

    x = _clean_clips()[:16]
    art = art_classifier(load_twin(MODELS / "commands.tflite", logits=True))
    x_adv = generate("fgsm", art, x, snr_target_db=20.0)
    clean_scores = agreement.anomaly_score(analyses)
    adv_scores = agreement.anomaly_score(analyse_batch(x_adv, classifier))
    assert np.median(adv_scores) > np.quantile(clean_scores, 0.9)


def test_it_needs_both_parts_and_persists_as_arrays(
    analyses: list[Analysis],
    parts: list[ConsistencyDetector | PerturbationNetDetector],
    agreement: AgreementDetector,
    tmp_path: Path,
) -> None:
    with pytest.raises(ModelError, match="needs perturbation_net and consistency"):
        registry.wire([parts[0], AgreementDetector()])
    with pytest.raises(NotFittedError):
        AgreementDetector().anomaly_score(analyses[:1])
    agreement.threshold_ = 3.0
    net = parts[1]
    net.threshold_ = 1.0
    registry.save(tmp_path, [net, agreement], {})
    with pytest.raises(ModelError, match="lacks consistency"):
        registry.load_state(tmp_path)  # the consistency part is not in this state
    consistency = ConsistencyDetector().fit(analyses)
    consistency.threshold_ = 0.1
    registry.save(tmp_path, [consistency, net, agreement], {})
    loaded = registry.load_state(tmp_path)
    assert [d.name for d in loaded] == ["consistency", "perturbation_net", "agreement"]
    np.testing.assert_allclose(
        loaded[2].anomaly_score(analyses), agreement.anomaly_score(analyses), rtol=1e-6
    )
    # in the verdict like any detector: its score and threshold, by name
    verdict = Guard(analyses[0].model, loaded).decide(analyses[0], 0.0)
    assert "agreement" in verdict.scores and verdict.thresholds["agreement"] == 3.0


def test_a_failing_part_blocks_with_both_named(
    analyses: list[Analysis], parts: list[ConsistencyDetector | PerturbationNetDetector]
) -> None:
    """Fail closed: a part that raises takes the agreement down with it, and the utterance is
    blocked with reason ``error``, both named."""

    class Failing(ConsistencyDetector):
        def _score(self, analyses: Sequence[Analysis]) -> FloatArray:
            raise FloatingPointError("transforms blew up")

    failing = Failing().fit(analyses)
    failing.threshold_ = 0.1
    agreement = AgreementDetector()
    registry.wire([failing, parts[1], agreement])
    agreement.median_, agreement.scale_ = np.zeros(2), np.ones(2)
    agreement.threshold_ = 3.0
    verdict = Guard(analyses[0].model, [failing, parts[1], agreement]).decide(analyses[0], 0.0)
    assert verdict.decision == "block" and "error" in verdict.reasons
    assert set(verdict.errors) == {"consistency", "agreement"}
    assert "transforms blew up" in verdict.errors["agreement"]
