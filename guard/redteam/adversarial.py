"""Adversarial examples with IBM's Adversarial Robustness Toolbox (ART) against the float twin.

Attacks run on the waveform (the twin includes guard's log-mel), and the budget is set per clip
from its own loudness so every example keeps an SNR of at least ``snr_db``:
L-inf attacks get eps = rms(x) * 10^(-snr_db/20); for the minimal-perturbation attacks
(Carlini-Wagner L2, DeepFool, NewtonFool) the SNR is measured afterwards and reported.
UniversalPerturbation finds one perturbation for the whole batch (its L-inf budget is set from
the batch's median loudness). HopSkipJump is black-box: it only queries the deployed TFLite
model (``blackbox_classifier``), no gradients, no twin.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
WHITE_BOX = ("fgsm", "pgd", "cw_l2", "deepfool", "newtonfool", "universal")
BLACK_BOX = ("hopskipjump",)
ADAPTIVE = ("pgd_eot", "pgd_ear")
"""``pgd_eot``: PGD through the consistency detector's transforms (guard/redteam/eot.py).
``pgd_ear``: on a backdoored model, the triggered clip plus a targeted PGD that makes guard's
own reference model hear the target too (past the second ear)."""
ATTACKS = (*WHITE_BOX, *BLACK_BOX, *ADAPTIVE)


def snr_db(x: FloatArray, x_adv: FloatArray) -> npt.NDArray[np.float64]:
    """Per-clip signal-to-perturbation ratio in dB."""
    signal = np.sum(x.astype(np.float64) ** 2, axis=-1)
    noise = np.sum((x_adv - x).astype(np.float64) ** 2, axis=-1) + 1e-20
    return np.asarray(10 * np.log10(signal / noise), dtype=np.float64)


def art_classifier(twin_logits: Any) -> Any:
    """ART wrapper of the twin built with ``load_twin(path, logits=True)`` (C&W needs logits)."""
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(
        model=twin_logits,
        nb_classes=int(twin_logits.output_shape[-1]),
        input_shape=(int(twin_logits.input_shape[-1]),),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(-1.0, 1.0),
    )


def blackbox_classifier(model: Any) -> Any:
    """ART ``BlackBoxClassifier`` over a ``CommandClassifier``: waveform in, probabilities out,
    through guard's own features and the TFLite interpreter (what a black-box attacker queries)."""
    from art.estimators.classification import BlackBoxClassifier

    from guard.features import log_mel_from_samples

    def predict(x: FloatArray) -> npt.NDArray[np.float32]:
        x = np.asarray(x, dtype=np.float32).reshape(-1, 16_000)
        out = [
            model.predict(log_mel_from_samples(x[i : i + 256])).probabilities
            for i in range(0, len(x), 256)
        ]
        return np.asarray(np.concatenate(out), dtype=np.float32)

    return BlackBoxClassifier(
        predict, input_shape=(16_000,), nb_classes=len(model.labels), clip_values=(-1.0, 1.0)
    )


def generate(
    name: str,
    classifier: Any,
    x: FloatArray,
    snr_target_db: float = 25.0,
    target_index: int | None = None,
) -> FloatArray:
    """Adversarial versions of ``x`` (n, 16000) with attack ``name``: untargeted, or towards
    class ``target_index`` (PGD only).

    ``classifier`` is ``art_classifier(twin)`` for the white-box attacks and
    ``blackbox_classifier(model)`` for HopSkipJump.
    """
    from art.attacks.evasion import (
        CarliniL2Method,
        DeepFool,
        FastGradientMethod,
        HopSkipJump,
        NewtonFool,
        ProjectedGradientDescent,
        UniversalPerturbation,
    )

    rms = np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=1, keepdims=True))
    eps = (rms * 10 ** (-snr_target_db / 20)).astype(np.float32)
    if name == "fgsm":
        attack: Any = FastGradientMethod(classifier, eps=eps, eps_step=eps, batch_size=64)
    elif name == "pgd":
        attack = ProjectedGradientDescent(
            classifier,
            eps=eps,
            eps_step=eps / 4,
            max_iter=20 if target_index is None else 40,
            targeted=target_index is not None,
            batch_size=64,
            verbose=False,
        )
        if target_index is not None:
            y = np.zeros((len(x), classifier.nb_classes), dtype=np.float32)
            y[:, target_index] = 1.0
            return np.asarray(attack.generate(x=x.astype(np.float32), y=y), dtype=np.float32)
    elif name == "cw_l2":
        attack = CarliniL2Method(
            classifier,
            confidence=0.0,
            max_iter=10,
            binary_search_steps=5,
            learning_rate=0.01,
            batch_size=64,
            verbose=False,
        )
    elif name == "deepfool":
        attack = DeepFool(
            classifier, max_iter=20, epsilon=0.02, nb_grads=12, batch_size=64, verbose=False
        )
    elif name == "newtonfool":
        attack = NewtonFool(classifier, max_iter=20, eta=0.01, batch_size=64, verbose=False)
    elif name == "universal":
        budget = float(np.median(eps))
        attack = UniversalPerturbation(
            classifier,
            attacker="fgsm",
            attacker_params={"eps": budget / 4, "eps_step": budget / 4},
            delta=0.2,
            max_iter=10,
            eps=budget,
            norm=np.inf,
            batch_size=64,
            verbose=False,
        )
    elif name == "hopskipjump":
        attack = HopSkipJump(
            classifier,
            targeted=False,
            norm=2,
            max_iter=10,
            max_eval=1000,
            init_eval=100,
            init_size=100,
            batch_size=256,
            verbose=False,
        )
    else:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    return np.asarray(attack.generate(x=x.astype(np.float32)), dtype=np.float32)
