"""The consistency detector's score: the JS divergence plus a weighted retreat of the label's
lead; and a state saved before the retreat existed.

Real model, real clips (tests/data). That the score fires on PGD and DeepFool is in
tests/test_detectors_model.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from guard.analysis import Analysis, analyse_batch
from guard.classifier import CommandClassifier
from guard.detectors.consistency import ConsistencyDetector, js_divergence, retreat
from guard.manifest import write_manifest

from .test_detectors_model import _clean_clips


@pytest.fixture(scope="module")
def analyses(classifier: CommandClassifier) -> list[Analysis]:
    return analyse_batch(_clean_clips(), classifier)


def _parts(detector: ConsistencyDetector, analyses: list[Analysis]) -> tuple[np.ndarray, ...]:
    agreed = detector.transformed_probabilities(analyses).mean(axis=1)
    original = np.stack([a.probabilities for a in analyses])
    return js_divergence(original, agreed), retreat(original, agreed, 0.05)


def test_the_retreat_is_the_fall_of_the_labels_probability_over_its_lead() -> None:
    original = np.array([[0.55, 0.40, 0.05], [0.98, 0.01, 0.01], [0.30, 0.30, 0.40]])
    agreed = np.array([[0.45, 0.50, 0.05], [0.97, 0.02, 0.01], [0.30, 0.30, 0.40]])
    np.testing.assert_allclose(
        retreat(original, agreed, 0.05), [0.10 / (0.15 + 0.05), 0.01 / (0.97 + 0.05), 0.0]
    )
    # a label that just won (the first row) retreats fifty times as far as a sure one (the
    # second) for ten times the fall; the divergence sees both as small
    js = js_divergence(original, agreed)
    assert js[0] < 0.01 and js[1] < 0.001


def test_the_score_is_the_divergence_plus_the_weighted_retreat(analyses: list[Analysis]) -> None:
    detector = ConsistencyDetector().fit(analyses)
    js, back = _parts(detector, analyses)
    np.testing.assert_allclose(detector.anomaly_score(analyses), js + 0.05 * back, rtol=1e-9)
    assert np.any(back > 0.05)  # the retreat adds something on real clips
    alone = ConsistencyDetector(retreat_weight=0.0).fit(analyses)
    np.testing.assert_allclose(alone.anomaly_score(analyses), js, rtol=1e-9)


def test_it_persists_as_arrays_and_a_state_from_before_the_retreat_scores_as_it_did(
    analyses: list[Analysis], tmp_path: Path
) -> None:
    detector = ConsistencyDetector().fit(analyses)
    detector.threshold_ = 0.2
    detector.save(tmp_path / "consistency.npz")
    write_manifest(tmp_path, ["consistency.npz"])
    loaded = ConsistencyDetector.load(tmp_path / "consistency.npz")
    assert loaded.get_params() == detector.get_params()
    np.testing.assert_allclose(loaded.anomaly_score(analyses), detector.anomaly_score(analyses))

    # what an older guard wrote: its three parameters and the noise
    old = tmp_path / "old"
    old.mkdir()
    np.savez(
        old / "consistency.npz",
        noise=detector.noise_,
        __params__=np.array(json.dumps({"noise_snr_db": 20.0, "floor_db": 40.0, "seed": 0})),
        __threshold__=np.array(0.098),
    )
    write_manifest(old, ["consistency.npz"])
    older = ConsistencyDetector.load(old / "consistency.npz")
    assert older.retreat_weight == 0.0 and older.threshold() == 0.098
    # the JS divergence alone, in nats: the score its threshold was calibrated on
    np.testing.assert_allclose(older.anomaly_score(analyses), _parts(detector, analyses)[0])
