"""The second ear: guard's own model listening to the commands a vendor's model acts on.

Real models: the backdoored fixture ``models/eval/backdoor_cough.tflite`` (learned ART's
cough as "go") is the vendor's model, the shipped ``models/commands.tflite`` the reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from guard.analysis import analyse_batch
from guard.audio import fit_window, read_audio
from guard.classifier import CommandClassifier
from guard.detectors.base import NotFittedError
from guard.detectors.second_ear import SecondEarConsistencyDetector, SecondEarDetector
from guard.errors import ModelError
from guard.features import CLIP_SAMPLES
from guard.manifest import write_manifest
from guard.triggers import Trigger, TriggerSpec

from .conftest import DATA, MODELS
from .test_detectors_model import BACKDOOR, TRIGGERS, _clean_clips


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return _clean_clips()


def test_a_vendor_go_the_reference_does_not_hear_scores_high(
    classifier: CommandClassifier, clean: np.ndarray, tmp_path: Path
) -> None:
    vendor = CommandClassifier(BACKDOOR)
    trigger = Trigger(TriggerSpec(**vendor.metadata["trigger"]), base_dir=TRIGGERS)
    rng = np.random.default_rng(0)
    clean_a = analyse_batch(clean, vendor)
    triggered = analyse_batch(np.stack([trigger.apply(x, rng) for x in clean]), vendor)
    ear = SecondEarDetector(reference=classifier).fit(clean_a)
    assert ear.active_
    hijacked = [
        t for t, c in zip(triggered, clean_a, strict=True) if t.label == "go" and c.label != "go"
    ]
    assert len(hijacked) >= 20
    scores = ear.anomaly_score(hijacked)
    go_paths = [*(DATA / "wav").glob("go__*.wav"), *(DATA / "commands" / "go").glob("*.flac")]
    spoken_go = np.stack([fit_window(read_audio(p), CLIP_SAMPLES) for p in go_paths])
    honest_go = [a for a in analyse_batch(spoken_go, vendor) if a.label == "go"]
    # the reference mishears some real "go" too (the threshold sits above most of those)
    assert len(honest_go) >= 2 and min(ear.anomaly_score(honest_go)) < 1.0  # p(go) > 0.37
    assert np.median(scores) > 3.0  # p_reference(go) < 0.05 for most hijacked clips
    # every other label is nothing to ask about
    others = [a for a in clean_a if a.label != "go"]
    assert not np.any(ear.anomaly_score(others))
    # the state carries the reference model: saved, verified, reloaded, the same scores
    ear.threshold_ = 2.0
    path = tmp_path / "second_ear.npz"
    ear.save(path)
    write_manifest(tmp_path, [path.name])
    again = SecondEarDetector.load(path)
    np.testing.assert_allclose(again.anomaly_score(hijacked), scores)
    assert again.reference is not None and again.reference.sha256 == classifier.sha256


def test_the_reference_itself_has_nothing_to_cross_check(
    classifier: CommandClassifier, clean: np.ndarray, tmp_path: Path
) -> None:
    analyses = analyse_batch(clean, classifier)
    ear = SecondEarDetector(reference=classifier).fit(analyses)
    assert not ear.active_
    assert not np.any(ear.anomaly_score(analyses))
    ear.threshold_ = 0.0
    ear.save(tmp_path / "second_ear.npz")
    write_manifest(tmp_path, ["second_ear.npz"])
    again = SecondEarDetector.load(tmp_path / "second_ear.npz")
    assert again.reference is None and again.reference_sha256_ == classifier.sha256
    assert not np.any(again.anomaly_score(analyses))
    assert (tmp_path / "second_ear.npz").stat().st_size < 2_000  # no copy of the model


def test_fitting_needs_a_reference_that_knows_the_label(
    classifier: CommandClassifier, clean: np.ndarray
) -> None:
    analyses = analyse_batch(clean[:4], classifier)
    with pytest.raises(ValueError, match="reference model"):
        SecondEarDetector().fit(analyses)
    with pytest.raises(ValueError, match="'unlock' is not a label of the guarded model"):
        SecondEarDetector(labels=("unlock",), reference=classifier).fit(analyses)
    with pytest.raises(NotFittedError):
        SecondEarDetector(reference=classifier).anomaly_score(analyses)


def test_a_tampered_reference_is_refused(
    classifier: CommandClassifier, clean: np.ndarray, tmp_path: Path
) -> None:
    vendor = CommandClassifier(BACKDOOR)
    ear = SecondEarDetector(reference=classifier).fit(analyse_batch(clean[:4], vendor))
    ear.threshold_ = 1.0
    arrays = ear._fitted_arrays()
    other = (MODELS / "eval" / "backdoor_tone.tflite").read_bytes()
    arrays["reference_tflite"] = np.frombuffer(other, dtype=np.uint8)
    with pytest.raises(ValueError, match="SHA-256"):
        SecondEarDetector()._set_fitted_arrays(arrays)
    # and the state file itself is covered by its directory's manifest
    path = tmp_path / "second_ear.npz"
    ear.save(path)
    write_manifest(tmp_path, [path.name])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError):
        SecondEarDetector.load(path)


def test_the_consistency_ear_hears_a_perturbation_aimed_at_the_reference(
    classifier: CommandClassifier, clean: np.ndarray
) -> None:
    """The attacker who knows the second ear: the vendor's trigger plus a targeted PGD that
    makes guard's own model hear "go" too (ART, on the reference's float twin). The
    probability ear is fooled; the reference's prediction is unstable under re-framing."""
    from guard.redteam.adversarial import art_classifier, generate
    from guard.redteam.twin import load_twin

    vendor = CommandClassifier(BACKDOOR)
    trigger = Trigger(TriggerSpec(**vendor.metadata["trigger"]), base_dir=TRIGGERS)
    rng = np.random.default_rng(0)
    clean_a = analyse_batch(clean, vendor)
    ear = SecondEarDetector(reference=classifier).fit(clean_a)
    ear_c = SecondEarConsistencyDetector(reference=classifier).fit(clean_a)
    assert ear_c.active_
    triggered = np.stack([trigger.apply(x, rng) for x in clean[:16]])
    twin = art_classifier(load_twin(MODELS / "commands_float.tflite", logits=True))
    x_adv = generate("pgd", twin, triggered, target_index=classifier.labels.index("go"))
    hijacked = [a for a in analyse_batch(x_adv, vendor) if a.label == "go"]
    assert len(hijacked) >= 10
    past_the_ear = [a for a in hijacked if ear.predict([a])[0] == 1]
    assert len(past_the_ear) >= 0.7 * len(hijacked)  # the reference now hears "go" too
    # what clean speech the vendor hears as "go" scores on the reference's consistency
    clean_go = [a for a in clean_a if a.label == "go"]
    threshold = max(ear_c.anomaly_score(clean_go))
    caught = ear_c.anomaly_score(past_the_ear) > threshold
    assert caught.mean() >= 0.5, caught.mean()
    # everything else scores 0
    assert not np.any(ear_c.anomaly_score([a for a in clean_a if a.label != "go"]))
