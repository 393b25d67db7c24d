"""The learned perturbation detector: the shipped network on the committed clips, its state
round trip, and its trainer end to end on the tiny set.

Real network (``models/perturbation_net.tflite``), real clips (tests/data), real attacks
(ART's PGD through the float twin of guard's model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from guard.analysis import analyse_batch
from guard.classifier import CommandClassifier
from guard.detectors import registry
from guard.detectors.base import NotFittedError
from guard.detectors.perturbation_net import FLOOR_DB, PerturbationNetDetector, spectrogram_db
from guard.errors import ModelError
from guard.manifest import write_manifest
from guard.triggers import Trigger, TriggerSpec

from .conftest import DATA, MODELS
from .test_detectors_model import _clean_clips

NET = MODELS / "perturbation_net.tflite"


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return _clean_clips()


@pytest.fixture(scope="module")
def fitted(classifier: CommandClassifier, clean: np.ndarray) -> PerturbationNetDetector:
    return PerturbationNetDetector(net_path=NET).fit(analyse_batch(clean, classifier))


def test_spectrogram_db_maps_the_loudest_cell_to_one_and_the_floor_to_zero() -> None:
    power = np.full((2, 49, 257), 1e-3, dtype=np.float32)
    power[0, 3, 7] = 10.0  # 40 dB above the rest
    power[1] *= 1e-12  # far below any floor: only the clip's own level counts
    power[1, 0, 0] = 1.0
    s = spectrogram_db(power)
    assert s[0, 3, 7] == pytest.approx(1.0) and s[1, 0, 0] == pytest.approx(1.0)
    assert s[0, 0, 0] == pytest.approx(1.0 - 40.0 / FLOOR_DB, abs=1e-5)
    assert s[1, 5, 5] == pytest.approx(0.0)  # 150 dB below: floored


def test_a_tone_scores_above_every_clean_clip(
    classifier: CommandClassifier, clean: np.ndarray, fitted: PerturbationNetDetector
) -> None:
    clean_scores = fitted.anomaly_score(analyse_batch(clean, classifier))
    rng = np.random.default_rng(0)
    tones = []
    for x in clean:  # tones of the evaluation's ranges, mid-band and loud enough to steer
        spec = TriggerSpec(
            "tone", float(rng.uniform(1000, 6000)), 0.3, float(rng.uniform(0.1, 0.3))
        )
        tones.append(Trigger(spec).apply(x, rng))
    tone_scores = fitted.anomaly_score(analyse_batch(np.stack(tones), classifier))
    assert np.mean(tone_scores > clean_scores.max()) >= 0.9


def test_pgd_scores_above_every_clean_clip(
    classifier: CommandClassifier, clean: np.ndarray, fitted: PerturbationNetDetector
) -> None:
    from guard.redteam.adversarial import art_classifier, generate
    from guard.redteam.twin import load_twin

    x = clean[:24]
    x_adv = generate("pgd", art_classifier(load_twin(MODELS / "commands.tflite", logits=True)), x)
    clean_scores = fitted.anomaly_score(analyse_batch(clean, classifier))
    adv_scores = fitted.anomaly_score(analyse_batch(x_adv, classifier))
    assert np.mean(adv_scores > clean_scores.max()) >= 0.75


def test_state_round_trip_and_a_tampered_network(
    classifier: CommandClassifier,
    clean: np.ndarray,
    fitted: PerturbationNetDetector,
    tmp_path: Path,
) -> None:
    analyses = analyse_batch(clean[:8], classifier)
    fitted.threshold_ = 1.5
    registry.save(tmp_path, [fitted], {})
    (loaded,) = registry.load_state(tmp_path)
    assert isinstance(loaded, PerturbationNetDetector) and loaded.threshold() == 1.5
    np.testing.assert_allclose(loaded.anomaly_score(analyses), fitted.anomaly_score(analyses))
    # the network's bytes changed after the manifest was written: refused, naming the file
    data = dict(np.load(tmp_path / "perturbation_net.npz"))
    data["net_tflite"] = data["net_tflite"].copy()
    data["net_tflite"][100] ^= 1
    np.savez(tmp_path / "perturbation_net.npz", **data)
    with pytest.raises(ModelError, match=r"perturbation_net\.npz"):
        registry.load_state(tmp_path)
    write_manifest(tmp_path, ["perturbation_net.npz"])  # manifest re-signed: its own hash check
    with pytest.raises(ModelError, match="does not match its SHA-256"):
        registry.load_state(tmp_path)


def test_fitting_needs_the_network_and_scoring_needs_a_fit(
    classifier: CommandClassifier, clean: np.ndarray, tmp_path: Path
) -> None:
    analyses = analyse_batch(clean[:2], classifier)
    with pytest.raises(ValueError, match=r"detectors\.perturbation_net"):
        PerturbationNetDetector().fit(analyses)
    with pytest.raises(NotFittedError):
        PerturbationNetDetector(net_path=NET).anomaly_score(analyses)
    stray = tmp_path / "net.tflite"
    stray.write_bytes(NET.read_bytes())  # not in any manifest
    with pytest.raises(ModelError, match="no manifest"):
        PerturbationNetDetector(net_path=stray).fit(analyses)


def test_a_state_fitted_before_the_detector_loads_without_it(
    classifier: CommandClassifier, clean: np.ndarray, tmp_path: Path
) -> None:
    from guard.detectors.spectral import SpectralTriggerDetector

    analyses = analyse_batch(clean, classifier)
    spectral = SpectralTriggerDetector().fit(analyses).calibrate(analyses, 0.1)
    registry.save(tmp_path, [spectral], {})
    assert [d.name for d in registry.load_state(tmp_path)] == ["spectral"]


def test_the_trainer_writes_a_network_the_detector_loads(
    classifier: CommandClassifier, clean: np.ndarray, tmp_path: Path
) -> None:
    from guard.training.perturbation_net import FAMILIES, NetConfig, make_sets, train

    out = tmp_path / "models" / "net.tflite"
    # the tiny set's speakers all fall in the validation parts: train on "calibrate" here
    cfg = NetConfig(
        data_dir=DATA / "commands",
        out=out,
        n_clips=12,
        epochs=1,
        width=4,
        part="calibrate",
        synthetic=3,  # espeak-ng voices, in every family
        deepfool=2,  # and DeepFool on the first two speaker clips
    )
    sets = make_sets(cfg)
    deepfool = sets.pop("deepfool")
    assert set(sets) == set(FAMILIES) and all(v.shape == (15, 16_000) for v in sets.values())
    # the examples that moved the twin's label: small perturbations of the first two clips
    assert 1 <= len(deepfool) <= 2 and deepfool.shape[1:] == (16_000,)
    assert all(max(np.corrcoef(d, c)[0, 1] for c in sets["fgsm"][:2]) > 0.9 for d in deepfool)
    sets["deepfool"] = deepfool
    assert not np.allclose(sets["fgsm"], sets["pgd"])
    voices = sets["clean"][12:]
    assert np.all(np.abs(voices).max(axis=1) > 0.05)  # spoken words, not silence
    for family in FAMILIES[1:]:  # the same voices, perturbed
        assert not np.allclose(sets[family][12:], voices)
    for family in ("fgsm", "pgd"):  # perturbations 25-35 dB down: still the same voices
        assert np.corrcoef(sets[family][12:].ravel(), voices.ravel())[0, 1] > 0.9
    train(cfg, sets)
    card = out.with_suffix(".json").read_text()
    assert '"held_out_accuracy"' in card and '"n_clips": 12' in card and '"synthetic": 3' in card
    assert '"clean": 15' in card  # clips_per_family: the speakers' 12 and the 3 voices
    assert f'"deepfool": {len(deepfool)}' in card and '"deepfool": 2' in card  # and its config
    detector = PerturbationNetDetector(net_path=out).fit(analyse_batch(clean[:4], classifier))
    assert np.all(np.isfinite(detector.anomaly_score(analyse_batch(clean[:4], classifier))))
