"""GMM-in-PCA-space detector: how unlike clean speech an utterance's frames are.

From the project's origin paper: log-mel frames (as spectral shape and level, see
``frame_features``) are projected on a PCA fitted to clean speech, and a Gaussian mixture in
that space is the reference model of clean frames. scikit-learn fits both, in ``fit`` only; the detector then keeps plain arrays
(PCA mean and components, mixture weights, means, full covariances) and scores in numpy.

Two scores:

- ``anomaly_score``: the mean negative log-likelihood (nats per frame) of the utterance's
  ``top_k`` least likely frames among those within ``energy_range_db`` of its loudest frame.
  A trigger is usually short (a 50 ms tone is 2-3 frames): averaged over the 30-40 frames of
  a word it is diluted by well-explained speech, while its own frames are the worst of the
  utterance (in a development run on validation speakers at 1% false block, tone triggers
  were 43% blocked by the mean over frames, 71% by the top-3 mean). Quiet frames are left out because the silence before
  and after a word varies with the recording, not with the attack.
- ``kl_score``: KL divergence from a Gaussian fitted to the utterance's frames to the
  reference mixture, by Hershey and Olsen's variational approximation (ICASSP 2007).

The KL helpers are exact where a closed form exists (two Gaussians) and use the published
approximations otherwise. (The origin paper's snippet took means from ``weights_``, read
the removed ``covars_`` attribute and used a formula that was not a KL divergence.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from guard.analysis import Analysis
from guard.detectors.base import Detector, NotFittedError

FloatArray = npt.NDArray[np.float64]

FLOOR_DB = 60.0
"""Mel energies more than this below the loudest frame are clamped (digital silence)."""
_DB_TO_NATS = np.log(10.0) / 10.0


def _as_full(cov: npt.ArrayLike, n: int, d: int) -> FloatArray:
    """Covariances of n components as (n, d, d). Full: (n, d, d), or (d, d) when n == 1.
    Diagonal: (n, d), (d,) or a scalar variance when d == 1."""
    c = np.asarray(cov, dtype=np.float64)
    full = c.ndim == 3 or (c.ndim == 2 and n == 1 and c.shape == (d, d))
    if not full:
        c = np.reshape(c, (-1, d))[..., None] * np.eye(d)
    return np.broadcast_to(c, (n, d, d)).copy()


def _kl_pairs(mu0: FloatArray, cov0: FloatArray, mu1: FloatArray, cov1: FloatArray) -> FloatArray:
    """KL(N0_a || N1_b) for every pair: mu (A, d), (B, d); cov (A, d, d), (B, d, d) -> (A, B)."""
    d = mu0.shape[1]
    chol1 = np.linalg.cholesky(cov1)  # (B, d, d)
    inv1 = np.linalg.inv(cov1)
    logdet0 = np.linalg.slogdet(cov0)[1]
    logdet1 = 2.0 * np.log(np.diagonal(chol1, axis1=1, axis2=2)).sum(axis=1)
    trace = np.einsum("bij,aji->ab", inv1, cov0)
    diff = mu1[None, :, :] - mu0[:, None, :]  # (A, B, d)
    maha = np.einsum("abi,bij,abj->ab", diff, inv1, diff)
    return np.asarray(0.5 * (trace + maha - d + logdet1[None, :] - logdet0[:, None]), np.float64)


def kl_gaussian(
    mu0: npt.ArrayLike, cov0: npt.ArrayLike, mu1: npt.ArrayLike, cov1: npt.ArrayLike
) -> float:
    """KL(N(mu0, cov0) || N(mu1, cov1)) in nats, closed form:
    0.5 * (tr(S1^-1 S0) + (m1 - m0)' S1^-1 (m1 - m0) - d + ln(det S1 / det S0)).
    Covariances may be full (d, d) or diagonal (d,)."""
    m0 = np.atleast_1d(np.asarray(mu0, dtype=np.float64))
    m1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    d = m0.size
    return float(_kl_pairs(m0[None], _as_full(cov0, 1, d), m1[None], _as_full(cov1, 1, d))[0, 0])


def _logsumexp(x: FloatArray, axis: int) -> FloatArray:
    top = np.max(x, axis=axis, keepdims=True)
    return np.asarray(np.log(np.exp(x - top).sum(axis=axis)) + np.squeeze(top, axis), np.float64)


def kl_gmm_variational(
    w0: npt.ArrayLike,
    mu0: npt.ArrayLike,
    cov0: npt.ArrayLike,
    w1: npt.ArrayLike,
    mu1: npt.ArrayLike,
    cov1: npt.ArrayLike,
) -> float:
    """Hershey & Olsen's variational approximation of KL(f || g) for Gaussian mixtures:
    sum_a pi_a ln( sum_a' pi_a' e^-KL(f_a||f_a') / sum_b w_b e^-KL(f_a||g_b) ).
    Exact when both mixtures have one component, and >= 0 when f has one (each e^-KL <= 1);
    for general mixtures it is an approximation that can dip below 0. Weights (n,), means
    (n, d), covariances full (n, d, d) or diagonal (n, d)."""
    pi, m0 = np.asarray(w0, np.float64), np.atleast_2d(np.asarray(mu0, np.float64))
    om, m1 = np.asarray(w1, np.float64), np.atleast_2d(np.asarray(mu1, np.float64))
    d = m0.shape[1]
    c0, c1 = _as_full(cov0, len(m0), d), _as_full(cov1, len(m1), d)
    within = _logsumexp(np.log(pi)[None, :] - _kl_pairs(m0, c0, m0, c0), axis=1)
    across = _logsumexp(np.log(om)[None, :] - _kl_pairs(m0, c0, m1, c1), axis=1)
    return float((pi * (within - across)).sum())


def gmm_log_likelihood(
    x: FloatArray, weights: FloatArray, means: FloatArray, precision_chol: FloatArray
) -> FloatArray:
    """ln p(x) of rows x (n, d) under a mixture given its precision Cholesky factors (K, d, d)
    (precision = P P', as in scikit-learn)."""
    d = x.shape[1]
    y = (
        np.einsum("nd,kde->kne", x, precision_chol)
        - np.einsum("kd,kde->ke", means, precision_chol)[:, None, :]
    )
    log_det = np.log(np.diagonal(precision_chol, axis1=1, axis2=2)).sum(axis=1)
    log_comp = -0.5 * (d * np.log(2 * np.pi) + (y * y).sum(axis=2)) + log_det[:, None]
    return _logsumexp(np.log(weights)[:, None] + log_comp, axis=0)


def precision_cholesky(covariances: FloatArray) -> FloatArray:
    """P with P P' = inverse covariance, for each (K, d, d) covariance."""
    chol = np.linalg.cholesky(covariances)
    eye = np.broadcast_to(np.eye(covariances.shape[1]), covariances.shape)
    return np.asarray(np.swapaxes(np.linalg.solve(chol, eye), 1, 2), np.float64)


def kl_gmm_monte_carlo(
    w0: npt.ArrayLike,
    mu0: npt.ArrayLike,
    cov0: npt.ArrayLike,
    w1: npt.ArrayLike,
    mu1: npt.ArrayLike,
    cov1: npt.ArrayLike,
    n_samples: int,
    rng: np.random.Generator,
) -> float:
    """Monte Carlo KL(f || g) = E_f[ln f(x) - ln g(x)] from ``n_samples`` draws of f."""
    pi, m0 = np.asarray(w0, np.float64), np.atleast_2d(np.asarray(mu0, np.float64))
    om, m1 = np.asarray(w1, np.float64), np.atleast_2d(np.asarray(mu1, np.float64))
    d = m0.shape[1]
    c0, c1 = _as_full(cov0, len(m0), d), _as_full(cov1, len(m1), d)
    comp = rng.choice(len(pi), size=n_samples, p=pi / pi.sum())
    z = rng.standard_normal((n_samples, d))
    x = m0[comp] + np.einsum("nij,nj->ni", np.linalg.cholesky(c0)[comp], z)
    log_f = gmm_log_likelihood(x, pi, m0, precision_cholesky(c0))
    log_g = gmm_log_likelihood(x, om, m1, precision_cholesky(c1))
    return float(np.mean(log_f - log_g))


def frame_features(log_mel: npt.NDArray[np.float32]) -> tuple[FloatArray, FloatArray]:
    """Per frame: the spectral shape and the level; and each frame's level in dB.

    The shape is the frame's log-mel minus its own log energy (so a louder talker, a nearer
    microphone or a louder syllable change nothing), after clamping mel energies at
    ``FLOOR_DB`` below the loudest frame; the level (nats below the loudest frame) is one more
    column. Shapes separate triggers far better than log-mel relative to the utterance: a
    tone in a quiet syllable makes that frame's shape unlike any speech frame. Deltas were
    tried and added nothing. Returns ((frames, mels + 1), (frames,) dB <= 0).
    """
    x = log_mel.astype(np.float64)
    energy = _logsumexp(x, axis=1)  # ln of the frame's total mel energy
    rel = np.maximum(x - energy.max(), -FLOOR_DB * _DB_TO_NATS)
    shape = rel - _logsumexp(rel, axis=1)[:, None]
    level = energy - energy.max()
    return np.concatenate([shape, level[:, None]], axis=1), level / _DB_TO_NATS


class GmmPcaDetector(Detector):
    """Score = mean negative log-likelihood (nats) of an utterance's ``top_k`` worst frames
    under a clean-speech Gaussian mixture in a PCA space of log-mel frame shapes.

    Parameters: ``n_pca`` dimensions, ``n_mixtures`` full-covariance components,
    ``top_k`` frames averaged, frames within ``energy_range_db`` of the loudest one scored,
    ``shrinkage`` of the per-utterance covariance toward its mean variance (for ``kl_score``),
    ``seed`` for the mixture's initialisation.
    """

    name = "gmm"

    def __init__(
        self,
        n_pca: int = 24,
        n_mixtures: int = 16,
        top_k: int = 3,
        energy_range_db: float = 30.0,
        shrinkage: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.n_pca = n_pca
        self.n_mixtures = n_mixtures
        self.top_k = top_k
        self.energy_range_db = energy_range_db
        self.shrinkage = shrinkage
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {
            "n_pca": self.n_pca,
            "n_mixtures": self.n_mixtures,
            "top_k": self.top_k,
            "energy_range_db": self.energy_range_db,
            "shrinkage": self.shrinkage,
            "seed": self.seed,
        }

    def _frames(self, analysis: Analysis) -> FloatArray:
        """The utterance's frames within ``energy_range_db`` of its loudest, unprojected."""
        x, level_db = frame_features(analysis.features.log_mel)
        return x[level_db >= -self.energy_range_db]

    def _fit(self, clean: Sequence[Analysis]) -> None:
        from sklearn.decomposition import PCA  # fit-time only: scoring is numpy
        from sklearn.mixture import GaussianMixture

        frames = np.concatenate([self._frames(a) for a in clean])
        pca = PCA(n_components=self.n_pca, random_state=self.seed).fit(frames)
        gmm = GaussianMixture(
            n_components=self.n_mixtures,
            covariance_type="full",
            reg_covar=1e-3,
            max_iter=300,
            random_state=self.seed,
        ).fit(pca.transform(frames))
        self._set_fitted_arrays(
            {
                "pca_mean": pca.mean_,
                "pca_components": pca.components_,
                "weights": gmm.weights_,
                "means": gmm.means_,
                "covariances": gmm.covariances_,
            }
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise NotFittedError(f"{self.name}: call fit(clean analyses) before scoring")

    def project(self, analysis: Analysis) -> FloatArray:
        """The utterance's scored frames in the PCA space: (frames, n_pca)."""
        self._check_fitted()
        return np.asarray((self._frames(analysis) - self.pca_mean_) @ self.pca_components_.T)

    def frame_nll(self, analysis: Analysis) -> FloatArray:
        """Negative log-likelihood (nats) of each scored frame under the clean mixture."""
        z = self.project(analysis)
        return -gmm_log_likelihood(z, self.weights_, self.means_, self.precision_chol_)

    def anomaly_score(self, analyses: Sequence[Analysis]) -> FloatArray:
        out = np.empty(len(analyses), dtype=np.float64)
        for i, a in enumerate(analyses):
            nll = self.frame_nll(a)
            k = min(self.top_k, len(nll))
            out[i] = np.partition(nll, len(nll) - k)[len(nll) - k :].mean()
        return out

    def utterance_gaussian(self, analysis: Analysis) -> tuple[FloatArray, FloatArray]:
        """Mean and shrunk covariance of the utterance's frames in the PCA space."""
        z = self.project(analysis)
        mean = z.mean(axis=0)
        centred = z - mean
        cov = centred.T @ centred / len(z)
        d = cov.shape[0]
        target = max(float(np.trace(cov)) / d, 1e-3)
        cov = (1 - self.shrinkage) * cov + self.shrinkage * target * np.eye(d)
        return mean, cov + 1e-6 * np.eye(d)

    def kl_score(self, analyses: Sequence[Analysis]) -> FloatArray:
        """Variational KL (nats) from each utterance's Gaussian to the clean mixture."""
        out = np.empty(len(analyses), dtype=np.float64)
        for i, a in enumerate(analyses):
            mean, cov = self.utterance_gaussian(a)
            out[i] = kl_gmm_variational(
                np.ones(1), mean[None], cov[None], self.weights_, self.means_, self.covariances_
            )
        return out

    def _fitted_arrays(self) -> dict[str, npt.NDArray[Any]]:
        self._check_fitted()
        return {
            "pca_mean": self.pca_mean_,
            "pca_components": self.pca_components_,
            "weights": self.weights_,
            "means": self.means_,
            "covariances": self.covariances_,
        }

    def _set_fitted_arrays(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.pca_mean_ = np.asarray(arrays["pca_mean"], dtype=np.float64)
        self.pca_components_ = np.asarray(arrays["pca_components"], dtype=np.float64)
        self.weights_ = np.asarray(arrays["weights"], dtype=np.float64)
        self.means_ = np.asarray(arrays["means"], dtype=np.float64)
        self.covariances_ = np.asarray(arrays["covariances"], dtype=np.float64)
        self.precision_chol_ = precision_cholesky(self.covariances_)
