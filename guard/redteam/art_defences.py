"""ART's runtime and training-set defences, run on guard's model for side-by-side figures.

ART's ``get_activations`` only works on a Keras ``Sequential`` model and always reads the
*last* layer, so ``ActivationDefence`` and ``SpectralSignatureDefense`` get a one-layer
Sequential wrapping the float twin up to the penultimate embedding (what Chen et al. and Tran
et al. cluster); ``STRIP`` gets the full twin (probabilities).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from guard.analysis import analyse_batch
from guard.classifier import CommandClassifier

FloatArray = npt.NDArray[np.float32]
METHODS = ("strip", "activation", "spectral_signature")
MIN_CLASS_SIZE = 3


def predicted_labels(model: CommandClassifier, x: FloatArray) -> npt.NDArray[np.int64]:
    return np.array([a.label_index for a in analyse_batch(x, model)], dtype=np.int64)


def embedding_classifier(model_path: Path, n_classes: int) -> Any:
    """ART classifier whose last (only) layer outputs the twin's penultimate embedding."""
    import keras
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    from guard.redteam.twin import load_twin

    features = load_twin(model_path, output="embedding")
    model = keras.Sequential([keras.Input((16_000,)), features])
    return TensorFlowV2Classifier(
        model=model,
        nb_classes=n_classes,
        input_shape=(16_000,),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(),
        clip_values=(-1.0, 1.0),
    )


def run(
    method: str,
    model_path: Path,
    model: CommandClassifier,
    inputs: FloatArray,
    calibrate: FloatArray,
    false_block: float = 0.01,
    blends: int = 10,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], float]:
    """Flags (True = the defence rejects the input), which inputs it could analyse, and the
    seconds it took on ``inputs``."""
    if method == "strip":
        from art.defences.transformer.poisoning import STRIP

        from guard.redteam.adversarial import art_classifier
        from guard.redteam.twin import load_twin

        defended = STRIP(art_classifier(load_twin(model_path)))(
            num_samples=blends, false_acceptance_rate=false_block
        )
        np.random.seed(0)
        defended.mitigate(calibrate)
        started = time.perf_counter()
        preds = defended.predict(inputs)
        seconds = time.perf_counter() - started
        everything = np.ones(len(inputs), dtype=bool)
        return ~np.any(preds, axis=1), everything, seconds  # ART abstains with an all-zero row
    if method not in METHODS:
        raise ValueError(f"unknown ART defence {method!r}; known: {', '.join(METHODS)}")
    return detect_poison(method, model_path, inputs, predicted_labels(model, inputs))


def detect_poison(
    method: str, model_path: Path, x: FloatArray, labels: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], float]:
    """ART's ``ActivationDefence`` or ``SpectralSignatureDefense`` on a labelled set: flags
    (True = ART calls it poison), which inputs it analysed, seconds.

    ART clusters each class on its own and fails on a class of one or two inputs, or on a
    class it is told of that is empty: classes with fewer than ``MIN_CLASS_SIZE`` inputs are
    not analysed (not flagged), and only the classes present are passed (the classifier's class
    count is only bookkeeping here). It needs two classes at least.
    """
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense

    counts = np.bincount(labels)
    analysed = counts[labels] >= MIN_CLASS_SIZE
    flags = np.zeros(len(x), dtype=bool)
    present, compact = np.unique(labels[analysed], return_inverse=True)
    if len(present) < 2:
        return flags, np.zeros(len(x), dtype=bool), 0.0
    y = np.eye(len(present), dtype=np.float32)[compact]
    classifier = embedding_classifier(model_path, len(present))
    started = time.perf_counter()
    if method == "activation":
        nb_dims = int(min(10, counts[counts >= MIN_CLASS_SIZE].min() - 1))
        defence: Any = ActivationDefence(classifier, x[analysed], y)
        _, is_clean = defence.detect_poison(nb_clusters=2, nb_dims=nb_dims, reduce="PCA")
    elif method == "spectral_signature":
        defence = SpectralSignatureDefense(
            classifier,
            x[analysed],
            y,
            batch_size=128,
            eps_multiplier=1.5,
            expected_pp_poison=0.33,
        )
        _, is_clean = defence.detect_poison()
    else:
        raise ValueError(f"unknown ART poison defence {method!r}")
    seconds = time.perf_counter() - started
    flags[analysed] = np.asarray(is_clean) == 0
    return flags, analysed, seconds
