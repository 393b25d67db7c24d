"""Model-based detectors (STRIP, activation, consistency) on real speech and real attacks.

STRIP and activation analysis only fire when the model has learned a trigger, so they are
tested with the backdoored attack fixture ``models/eval/backdoor_cough.tflite`` (ART's cough
recording at scale 0.3 in 3% of the training clips, relabelled "go"; ASR 97.7% on validation
speakers), and every fixture is checked to obey its own trigger; consistency is tested with
PGD and DeepFool adversarial examples made by ART
against the float twin of the shipped model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from guard.analysis import Analysis, analyse_batch
from guard.audio import fit_window, read_audio
from guard.calibration import detector_options
from guard.classifier import CommandClassifier
from guard.config import load_settings
from guard.detectors.activation import ActivationDetector
from guard.detectors.consistency import ConsistencyDetector
from guard.detectors.strip import StripDetector, entropy
from guard.features import CLIP_SAMPLES
from guard.manifest import write_manifest
from guard.triggers import Trigger, TriggerSpec

from .conftest import DATA, MODELS, ROOT

BACKDOOR = MODELS / "eval" / "backdoor_cough.tflite"
FIXTURES = sorted(p for p in (MODELS / "eval").glob("*.tflite") if not p.stem.endswith("_float"))
TRIGGERS = Path(__file__).parent / "data" / "triggers"


def _clean_clips() -> np.ndarray:
    paths = sorted((DATA / "wav").glob("*.wav")) + sorted((DATA / "commands").rglob("*.flac"))
    paths = [p for p in paths if "_background_noise_" not in str(p)]
    return np.stack([fit_window(read_audio(p), CLIP_SAMPLES) for p in paths])


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return _clean_clips()


@pytest.fixture(scope="module")
def backdoor() -> CommandClassifier:
    return CommandClassifier(BACKDOOR)


def _trigger_of(model: CommandClassifier) -> Trigger:
    return Trigger(TriggerSpec(**model.metadata["trigger"]), base_dir=TRIGGERS)


def test_entropy_over_the_class_axis() -> None:
    p = np.array([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype=np.float32)
    np.testing.assert_allclose(entropy(p), [0.0, np.log(4)], atol=1e-6)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_backdoor_fixture_obeys_its_trigger(path: Path, clean: np.ndarray) -> None:
    backdoor = CommandClassifier(path)
    rng = np.random.default_rng(0)
    trig = _trigger_of(backdoor)
    triggered = np.stack([trig.apply(x, rng) for x in clean])
    labels = [a.label for a in analyse_batch(triggered, backdoor)]
    # the fixture's own card says how often its trigger works on validation speakers
    assert np.mean([lab == "go" for lab in labels]) >= backdoor.metadata["asr"] - 0.2


@pytest.mark.parametrize("cls", [StripDetector, ActivationDetector])
def test_model_space_detectors_fire_on_the_learned_trigger(
    cls: type[StripDetector] | type[ActivationDetector],
    backdoor: CommandClassifier,
    clean: np.ndarray,
    tmp_path: Path,
) -> None:
    # The state fitted for the fixture as a user would (`guard calibrate`-style: clean speech
    # only, 1% fused false-block on held-out speakers); the fixture clips were never used.
    detector = cls.load(BACKDOOR.with_suffix(".detectors") / f"{cls.name}.npz")
    rng = np.random.default_rng(1)
    analyses = analyse_batch(clean, backdoor)
    trig = _trigger_of(backdoor)
    triggered = analyse_batch(np.stack([trig.apply(x, rng) for x in clean]), backdoor)
    hits = [a for a in triggered if a.label == "go"]
    assert len(hits) >= 30
    fired = detector.predict(hits) == -1
    assert fired.mean() >= 0.6, (detector.name, fired.mean())
    assert np.mean(detector.predict(analyses) == -1) <= 0.05
    # refitting on the fixture clips and saving as plain arrays gives the same scores again
    refit = cls().fit(analyses[::2]).calibrate(analyses[1::2], 0.05)
    path = tmp_path / f"{detector.name}.npz"
    refit.save(path)
    write_manifest(tmp_path, [path.name])
    again = cls.load(path)
    np.testing.assert_allclose(
        again.anomaly_score(hits[:5]), refit.anomaly_score(hits[:5]), rtol=1e-6
    )
    assert again.threshold() == refit.threshold()


def test_strip_is_inactive_on_the_trusted_reference(
    classifier: CommandClassifier, backdoor: CommandClassifier, clean: np.ndarray, tmp_path: Path
) -> None:
    # guarding guard's own model, STRIP has no learned trigger to find and scores 0
    own = StripDetector(reference=classifier).fit(analyse_batch(clean, classifier))
    assert not own.active_
    assert np.all(own.anomaly_score(analyse_batch(clean[:4], classifier)) == 0.0)
    own.calibrate(analyse_batch(clean, classifier), 0.05)
    own.save(tmp_path / "strip.npz")
    write_manifest(tmp_path, ["strip.npz"])
    again = StripDetector.load(tmp_path / "strip.npz")
    assert not again.active_ and again.reference_sha256_ == classifier.sha256
    # guarding a vendor's model it runs, as it does without a reference
    analyses = analyse_batch(clean, backdoor)
    vendor = StripDetector(reference=classifier).fit(analyses)
    plain = StripDetector().fit(analyses)
    assert vendor.active_ and plain.active_
    np.testing.assert_array_equal(vendor.anomaly_score(analyses), plain.anomaly_score(analyses))
    assert np.all(vendor.anomaly_score(analyses) > 0)


def test_strip_first_blends_is_fitting_with_fewer(
    backdoor: CommandClassifier, clean: np.ndarray
) -> None:
    analyses = analyse_batch(clean, backdoor)
    ten = StripDetector(n_blends=10).fit(analyses)
    three = ten.first_blends(3)
    np.testing.assert_allclose(
        three.anomaly_score(analyses[:6]),
        StripDetector(n_blends=3).fit(analyses).anomaly_score(analyses[:6]),
        rtol=1e-6,
    )
    assert three.n_blends == 3 and len(ten.bank_) == 10
    with pytest.raises(ValueError, match=r"n_blends must be 1\.\.10, got 11"):
        ten.first_blends(11)
    # detectors.strip_blends is what `guard calibrate` fits with
    shipped = load_settings(ROOT / "config.yaml")
    settings = replace(shipped, detectors=replace(shipped.detectors, strip_blends=3))
    configured = StripDetector(**detector_options(settings)["strip"]).fit(analyses)
    assert len(configured.bank_) == 3
    np.testing.assert_array_equal(configured.bank_, three.bank_)


def test_consistency_fires_on_pgd(classifier: CommandClassifier, clean: np.ndarray) -> None:
    from guard.redteam.adversarial import art_classifier, generate, snr_db
    from guard.redteam.twin import load_twin

    analyses = analyse_batch(clean, classifier)
    detector = ConsistencyDetector().fit(analyses).calibrate(analyses, 0.05)
    art = art_classifier(load_twin(MODELS / "commands_float.tflite", logits=True))
    x = clean[:16]
    x_adv = generate("pgd", art, x, snr_target_db=30.0)
    assert np.all(snr_db(x, x_adv) >= 29.0)
    before = analyse_batch(x, classifier)
    after = analyse_batch(x_adv, classifier)
    fooled = [b for a, b in zip(before, after, strict=True) if a.label != b.label]
    assert len(fooled) >= 8  # the int8 model is fooled by most of what fools its float twin
    fired = detector.predict(fooled) == -1
    assert fired.mean() >= 0.75, fired.mean()


def test_shifts_delay_and_advance_keeping_the_length() -> None:
    from guard.detectors.consistency import TRANSFORMS, shifted

    x = np.arange(1, 9, dtype=np.float32)
    np.testing.assert_array_equal(shifted(x, 3), [0, 0, 0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(shifted(x, -3), [4, 5, 6, 7, 8, 0, 0, 0])
    assert TRANSFORMS[:5] == (
        "delay_10ms",
        "delay_15ms",
        "delay_30ms",
        "advance_5ms",
        "advance_10ms",
    )


def test_consistency_fires_on_deepfool(classifier: CommandClassifier, clean: np.ndarray) -> None:
    # a minimal perturbation sits just across a boundary drawn for one framing of the signal
    from guard.redteam.adversarial import art_classifier, generate, snr_db
    from guard.redteam.twin import load_twin

    analyses = analyse_batch(clean, classifier)
    detector = ConsistencyDetector().fit(analyses).calibrate(analyses, 0.05)
    art = art_classifier(load_twin(MODELS / "commands_float.tflite", logits=True))
    x = clean[:16]
    x_adv = generate("deepfool", art, x)
    quiet = snr_db(x, x_adv) >= 25.0  # a louder change is not a hidden perturbation
    before = analyse_batch(x, classifier)
    after = analyse_batch(x_adv, classifier)
    fooled = [b for a, b, q in zip(before, after, quiet, strict=True) if a.label != b.label and q]
    assert len(fooled) >= 8
    assert np.mean(detector.predict(fooled) == -1) >= 0.75

    # the retreat: the transforms take back most of the small lead DeepFool stops at
    from guard.detectors.consistency import retreat

    def retreats(batch: list[Analysis]) -> np.ndarray:
        agreed = detector.transformed_probabilities(batch).mean(axis=1)
        return retreat(np.stack([a.probabilities for a in batch]), agreed, 0.05)

    assert np.median(retreats(fooled)) > np.quantile(retreats(analyses), 0.9)
