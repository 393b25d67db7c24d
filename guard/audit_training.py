"""A model trained on the dataset under audit, for ``guard audit``'s activation-based methods.

Activation clustering (Chen et al. 2018) and spectral signatures (Tran et al. 2018) look for
the backdoor inside a model that *learned* it: the poisoned clips of a class share the
trigger's features in the model's penultimate layer and form a small cluster there. So the
model is trained on the data exactly as it is, labels as the folders give them, poison
included, with guard's own trainer (``guard.training.train``: the DS-CNN guard ships, its
augmentation, the seed fixed) for about :data:`DEFAULT_STEPS` batches. Without ``--model``, ``guard audit`` calls
:func:`train_on_dataset` and gives the model to ``activation`` and ``spectral_signature`` only;
``knn`` and ``label`` keep listening with the trusted configured model, and ``runtime`` runs
the configured model with its fitted detectors (a fresh model has no detector state; the
spectral and GMM detectors read the input, not the model).

The split. The trainer holds out validation speakers (hashed, never by file) and refuses to
train without at least one. The audit scores every clip whichever side it falls on, so the
held-out share is made as small as is still useful: about 5 % of the dataset's own speakers
(at least one), chosen with the trainer's hash (:func:`holdout_percent`). Not zero, because the
trainer cannot, and because the validation accuracy it reports is the one sign that the model
learned words at all. Scoring the held-out clips is sound: a backdoor learned from the other
95 % fires on held-out triggered clips too (that is what a backdoor does at test time), so
they land with the other poisoned clips; the held-out clean clips (~5 %) are scored by a
model that never heard their speakers, as any new clip would be.

TensorFlow (the ``train`` extra) is imported only here, only when a model is trained; importing
this module costs nothing (the CLI reads :data:`DEFAULT_STEPS` when it builds its parser).
Measured (docs/AUDIT.md): on the development data the activation-based methods find no more
dirty-label poison with such a model than with the shipped one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from guard.errors import GuardError

log = logging.getLogger(__name__)

MODEL_NAME = "audit"
"""Base name of the files the trainer writes (``audit_float.tflite``, ``audit.tflite``, ...)."""
DEFAULT_STEPS = 550
"""Without ``--train-epochs``: enough epochs for about this many optimiser steps (batches of
100): 4 epochs of the 10,452-clip development set, ~25 of a 1,700-clip one. Steps, not epochs,
decide whether the DS-CNN has learned anything: in inference mode it stays at chance for its
first ~300 steps (the shipped model's history), whatever the size of the data."""
MAX_EPOCHS = 40
"""The shipped model's recipe; the automatic choice never goes beyond it."""
LOW_ACCURACY = 0.5
"""Below this validation accuracy the trained model is reported as not having learned the words."""
HOLDOUT_SHARE = 0.05
"""Share of the dataset's speakers the trainer holds out for its validation figure."""


@dataclass(frozen=True)
class TrainedModel:
    """What :func:`train_on_dataset` made."""

    path: Path
    """The float TFLite model the activation-based methods read (no quantisation noise)."""
    epochs: int
    validation_accuracy: float
    """Of the float model, on the held-out speakers' clips and the trainer's silence clips."""
    validation_examples: int
    held_out_speakers: int
    train_seconds: float
    """Wall time of ``train`` (reading, fitting, export, evaluation)."""

    @property
    def provenance(self) -> str:
        """How it was made, in parentheses, for the report and stderr."""
        return (
            f"(trained on the audited data: {self.epochs} epoch{'s' * (self.epochs != 1)}, "
            f"{self.train_seconds:.0f} s; "
            f"validation accuracy {self.validation_accuracy:.1%} on {self.held_out_speakers} "
            f"held-out speakers, {self.validation_examples} examples with silence)"
        )


def require_tensorflow() -> None:
    """Import TensorFlow or raise a one-line ``GuardError`` saying what to do instead."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise GuardError(
            "guard audit trains a model on the data for its activation-based methods and "
            "needs TensorFlow: pip install 'guard[train]', or pass --model PATH "
            "(or --model configured)"
        ) from None


def holdout_percent(speakers: set[str], share: float = HOLDOUT_SHARE) -> float:
    """The trainer's ``validation_percent`` that holds out about ``share`` of ``speakers``
    (at least one, never all): a bisection over the trainer's own speaker hash."""
    if len(speakers) < 2:
        raise GuardError(
            "training a model for the audit needs clips of at least two speakers "
            "(<speaker>_nohash_<take> file names); pass --model PATH or --model configured"
        )
    from guard.training.dataset import is_validation_speaker

    want = min(max(1, round(share * len(speakers))), len(speakers) - 1)

    def held(percent: float) -> int:
        return sum(is_validation_speaker(s, percent) for s in speakers)

    low, high = 0.0, 100.0  # held(low) < want <= held(high)
    while high - low > 0.005:  # the hash has 10,000 steps of 0.01 %
        mid = (low + high) / 2
        low, high = (low, mid) if held(mid) >= want else (mid, high)
    if held(high) >= len(speakers):  # several speakers on one hash step: keep one to train on
        raise GuardError("cannot split the speakers for training; pass --model PATH")
    return high


def train_on_dataset(
    data_dir: Path, out_dir: Path, epochs: int | None = None, command_line: str = ""
) -> TrainedModel:
    """Train guard's DS-CNN on ``data_dir`` (seed 0) into ``out_dir``; see the module docstring.

    ``epochs`` None: enough for :data:`DEFAULT_STEPS` optimiser steps (at most
    :data:`MAX_EPOCHS`). Needs TensorFlow (:func:`require_tensorflow`). The trainer logs each
    epoch on stderr.
    """
    require_tensorflow()
    import numpy as np

    from guard.training.dataset import LABELS, is_validation_speaker, scan
    from guard.training.train import TrainConfig, epoch_indices, train

    if epochs is not None and epochs < 1:
        raise GuardError(f"--train-epochs must be >= 1, got {epochs}")
    clips = scan(data_dir)
    speakers = {c.speaker for c in clips}
    percent = holdout_percent(speakers)
    cfg = TrainConfig(data_dir, out_dir, seed=0, validation_percent=percent, name=MODEL_NAME)
    if epochs is None:  # the trainer's own count of steps per epoch (oversampling, silence)
        y = [LABELS.index(c.label) for c in clips if not is_validation_speaker(c.speaker, percent)]
        per_epoch = len(epoch_indices(np.array(y), np.random.default_rng(0))) * 1.1
        per_epoch /= cfg.batch_size
        epochs = min(MAX_EPOCHS, math.ceil(DEFAULT_STEPS / per_epoch))
    cfg = dataclasses.replace(cfg, epochs=epochs, command_line=command_line)
    log.info(
        "training a model on %s for the activation-based methods: %d epochs, %d of %d "
        "speakers held out",
        data_dir,
        epochs,
        sum(is_validation_speaker(s, percent) for s in speakers),
        len(speakers),
    )
    started = time.perf_counter()
    with _stdout_to_stderr():  # Keras' export prints its signature: keep stdout for results
        figures = train(cfg)
    trained = TrainedModel(
        path=out_dir / f"{MODEL_NAME}_float.tflite",
        epochs=epochs,
        validation_accuracy=float(figures["float"]["accuracy"]),
        validation_examples=int(figures["validation_examples"]),
        held_out_speakers=int(figures["info"]["validation_speakers"]),
        train_seconds=time.perf_counter() - started,
    )
    if trained.validation_accuracy < LOW_ACCURACY:
        log.warning(
            "the model trained for the audit has not learned the words (validation accuracy "
            "%.1f%%): activation and spectral_signature read a poor model; more --train-epochs",
            100 * trained.validation_accuracy,
        )
    return trained


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what Python and native code write to stdout to stderr instead, for the block."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
