"""The GMM-in-PCA-space detector and its KL divergences.

The KL helpers are checked against the closed form (by hand in 1-D) and against each other;
the detector is fitted on the 24 FLAC clips, calibrated on 10 WAV clips and checked on the
other 10, clean and with triggers added (generators from ``test_detector_spectral``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from scipy.stats import multivariate_normal

from guard.analysis import Utterance, analyse, analyse_batch
from guard.classifier import CommandClassifier
from guard.detectors.base import NotFittedError
from guard.detectors.gmm import (
    GmmPcaDetector,
    gmm_log_likelihood,
    kl_gaussian,
    kl_gmm_monte_carlo,
    kl_gmm_variational,
    precision_cholesky,
)
from guard.manifest import write_manifest

from .test_detector_spectral import ATTACKS, Clips, degenerate_clips, split_clips

FloatArray = npt.NDArray[np.float64]
GMM_MIN_HITS = {"aliased_21khz": 8, "tone_1khz": 7, "tone_440hz": 7, "hiss_above_7khz": 9}
"""Triggers the frame model must catch in at least this many of the 10 held-out clips. (A
7.8 kHz tone is above the 7.6 kHz top of the mel bands, so only the spectral detector sees it;
clicks and claps last one frame of 49 and are left to it too.)"""
KL_MIN_HITS = {"aliased_21khz": 6, "hiss_above_7khz": 8}


def random_gaussian(rng: np.random.Generator, d: int) -> tuple[FloatArray, FloatArray]:
    a = rng.standard_normal((d, d))
    return rng.standard_normal(d), a @ a.T + 0.5 * np.eye(d)


def test_kl_gaussian_matches_the_textbook_1d_case() -> None:
    # KL(N(0, 1) || N(1, 2)) = ln(s1 / s0) + (s0^2 + (m0 - m1)^2) / (2 s1^2) - 1/2
    #                        = ln(sqrt 2) + (1 + 1) / 4 - 1/2 = ln(2) / 2
    assert kl_gaussian(0.0, 1.0, 1.0, 2.0) == pytest.approx(np.log(2) / 2, abs=1e-12)
    assert kl_gaussian([0.0], [[1.0]], [1.0], [[2.0]]) == pytest.approx(np.log(2) / 2, abs=1e-12)


def test_kl_is_zero_for_equal_and_positive_otherwise() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        mu0, cov0 = random_gaussian(rng, 4)
        mu1, cov1 = random_gaussian(rng, 4)
        assert kl_gaussian(mu0, cov0, mu0, cov0) == pytest.approx(0.0, abs=1e-9)
        assert kl_gaussian(mu0, cov0, mu1, cov1) > 0.0
        # f with one component (the detector's case) keeps the approximation >= 0
        weights = rng.dirichlet(np.ones(3))
        means = rng.standard_normal((3, 4))
        covs = np.stack([random_gaussian(rng, 4)[1] for _ in range(3)])
        assert kl_gmm_variational([1.0], mu0[None], cov0[None], weights, means, covs) >= 0.0
        assert kl_gmm_variational(weights, means, covs, weights, means, covs) == pytest.approx(
            0.0, abs=1e-9
        )


def test_diagonal_covariances_equal_full_diagonal_matrices() -> None:
    var0, var1 = np.array([1.0, 2.0, 0.5]), np.array([0.3, 1.0, 4.0])
    mu0, mu1 = np.zeros(3), np.array([1.0, -1.0, 0.5])
    assert kl_gaussian(mu0, var0, mu1, var1) == pytest.approx(
        kl_gaussian(mu0, np.diag(var0), mu1, np.diag(var1)), abs=1e-12
    )


def test_single_component_mixtures_reduce_to_the_closed_form() -> None:
    rng = np.random.default_rng(1)
    mu0, cov0 = random_gaussian(rng, 3)
    mu1, cov1 = random_gaussian(rng, 3)
    exact = kl_gaussian(mu0, cov0, mu1, cov1)
    one = np.ones(1)
    assert kl_gmm_variational(one, mu0[None], cov0[None], one, mu1[None], cov1[None]) == (
        pytest.approx(exact, abs=1e-10)
    )
    mc = kl_gmm_monte_carlo(
        one, mu0[None], cov0[None], one, mu1[None], cov1[None], n_samples=100_000, rng=rng
    )
    assert mc == pytest.approx(exact, rel=0.03, abs=0.02)


def test_monte_carlo_and_variational_agree_on_mixtures() -> None:
    rng = np.random.default_rng(2)
    w0, w1 = np.array([0.3, 0.7]), np.array([0.5, 0.25, 0.25])
    m0, m1 = rng.standard_normal((2, 2)) * 2, rng.standard_normal((3, 2)) * 2
    c0 = np.stack([random_gaussian(rng, 2)[1] for _ in range(2)])
    c1 = np.stack([random_gaussian(rng, 2)[1] for _ in range(3)])
    mc = kl_gmm_monte_carlo(w0, m0, c0, w1, m1, c1, n_samples=100_000, rng=rng)
    variational = kl_gmm_variational(w0, m0, c0, w1, m1, c1)
    assert mc > 0.0
    assert variational == pytest.approx(mc, rel=0.25)  # an approximation, not an identity


def test_mixture_log_likelihood_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    weights = np.array([0.2, 0.8])
    pairs = [random_gaussian(rng, 3) for _ in range(2)]
    means, covs = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    x = rng.standard_normal((5, 3))
    expected = np.log(
        sum(
            w * multivariate_normal(m, c).pdf(x)
            for w, m, c in zip(weights, means, covs, strict=True)
        )
    )
    got = gmm_log_likelihood(x, weights, means, precision_cholesky(covs))
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.fixture(scope="module")
def clips() -> tuple[Clips, Clips, Clips]:
    return split_clips()


@pytest.fixture(scope="module")
def detector(clips: tuple[Clips, Clips, Clips], classifier: CommandClassifier) -> GmmPcaDetector:
    # 24 clips give ~700 frames: a small model (the shipped default is 24 dims, 16 components)
    det = GmmPcaDetector(n_pca=16, n_mixtures=4).fit(analyse_batch(clips[0], classifier))
    return det.calibrate(analyse_batch(clips[1], classifier), target_false_block=0.0)


def test_quiet_on_held_out_clean_and_fires_on_triggers(
    detector: GmmPcaDetector, clips: tuple[Clips, Clips, Clips], classifier: CommandClassifier
) -> None:
    held_out = analyse_batch(clips[2], classifier)
    assert int((detector.predict(held_out) == -1).sum()) <= 1
    kl_threshold = float(detector.kl_score(analyse_batch(clips[1], classifier)).max())
    for name in sorted(GMM_MIN_HITS.keys() | KL_MIN_HITS.keys()):
        rng = np.random.default_rng(sorted(ATTACKS).index(name))
        attacked = analyse_batch(ATTACKS[name](clips[2], rng), classifier)
        scores = detector.anomaly_score(attacked)
        assert (scores > detector.threshold()).sum() >= GMM_MIN_HITS.get(name, 0), (name, scores)
        kl = detector.kl_score(attacked)
        assert (kl > kl_threshold).sum() >= KL_MIN_HITS.get(name, 0), (name, kl, kl_threshold)


def test_degenerate_input_scores_are_finite(
    detector: GmmPcaDetector, classifier: CommandClassifier
) -> None:
    analyses = analyse_batch(degenerate_clips(), classifier)
    with np.errstate(divide="raise", invalid="raise"):
        scores, kl = detector.anomaly_score(analyses), detector.kl_score(analyses)
    assert np.isfinite(scores).all() and np.isfinite(kl).all()


def test_save_load_round_trip(
    detector: GmmPcaDetector,
    clips: tuple[Clips, Clips, Clips],
    classifier: CommandClassifier,
    tmp_path: Path,
) -> None:
    path = tmp_path / "gmm.npz"
    detector.save(path)
    write_manifest(tmp_path, [path.name])
    loaded = GmmPcaDetector.load(path)
    assert loaded.get_params() == detector.get_params()
    analyses = analyse_batch(clips[2][:4], classifier)
    np.testing.assert_array_equal(loaded.anomaly_score(analyses), detector.anomaly_score(analyses))
    np.testing.assert_array_equal(loaded.kl_score(analyses), detector.kl_score(analyses))
    assert loaded.threshold() == detector.threshold()


def test_fit_returns_self_and_unfitted_raises(
    clips: tuple[Clips, Clips, Clips], classifier: CommandClassifier
) -> None:
    analyses = [analyse(Utterance(x), classifier) for x in clips[0][:6]]
    det = GmmPcaDetector(n_pca=4, n_mixtures=2)
    for score in (det.anomaly_score, det.kl_score):
        with pytest.raises(NotFittedError, match="fit"):
            score(analyses)
    assert det.fit(analyses) is det
    assert det.anomaly_score(analyses).shape == det.kl_score(analyses).shape == (6,)
