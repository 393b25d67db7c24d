"""Train the learned perturbation detector (guard/detectors/perturbation_net.py).

Needs the ``train`` extra (TensorFlow) and the ``redteam`` extra (ART, for the adversarial
examples). Only clips of *training* speakers are used (guard/devdata.py part "train"): the
validation speakers set thresholds and report figures, and never reach this network.

Per clip of ``n_clips``:

- clean: the clip, half of them mixed with background noise (the head of each
  ``_background_noise_`` recording, volume 0.02-0.3, as the detectors' fit set);
- tone: a random tone in the evaluation's ranges (100-7900 Hz, 0.05-0.5 s, scale 0.05-0.3);
- aliased: an ultrasonic tone (17-23 kHz) folded down by sampling without an anti-alias filter;
- fgsm, pgd: ART's FGSM and PGD (20 steps) through the float twin of guard's model, with an
  L-inf budget 24-34 dB below the clip (one draw per chunk of 256 clips).

The network (``build``) is four strided convolutions over the (49, 257) power spectrogram in
dB (``spectrogram_db``), global average and max pooling, and one logit; trained with binary
cross-entropy, the clean class weighted ``clean_weight`` times its balanced share so the clean
tail, where the threshold will sit, counts for more.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from guard import devdata
from guard.detectors.perturbation_net import spectrogram_db
from guard.features import N_BINS, N_FRAMES, power_spectrogram
from guard.manifest import write_manifest
from guard.triggers import random_tone

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float32]
FAMILIES = ("clean", "tone", "aliased", "fgsm", "pgd")


@dataclass
class NetConfig:
    data_dir: Path
    out: Path
    """``NAME.tflite``; the card is written beside it as ``NAME.json``."""
    model: Path = Path("models/commands.tflite")
    """The model whose float twin the adversarial examples are made against."""
    n_clips: int = 8000
    epochs: int = 30
    width: int = 16
    clean_weight: float = 5.0
    seed: int = 11
    part: str = "train"
    """guard/devdata.py part the clips come from (only "train" for a network that ships)."""
    snr_db: tuple[float, float] = (24.0, 34.0)
    command_line: str = ""


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is under it (cards are committed)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def make_sets(cfg: NetConfig) -> dict[str, FloatArray]:
    """The five families of waveforms (n_clips, 16000) each, from training speakers."""
    from guard.redteam.adversarial import art_classifier, generate
    from guard.redteam.twin import load_twin

    chosen = devdata.clips(cfg.data_dir, cfg.part, cfg.n_clips, seed=cfg.seed)
    if not chosen:
        raise ValueError(f"{cfg.data_dir}: no clips of {cfg.part!r} speakers to train on")
    x = devdata.audio(chosen)
    n = len(x)
    rng = np.random.default_rng(cfg.seed)
    clean = x.copy()
    noisy = rng.random(n) < 0.5
    clean[noisy] = devdata.add_noise(clean[noisy], devdata.noise(cfg.data_dir, "train"), rng, 0.3)
    sets = {"clean": clean}
    for kind, low_hz, high_hz in (("tone", 100, 7900), ("aliased", 17_000, 23_000)):
        sets[kind] = np.stack([random_tone(kind, low_hz, high_hz, rng).apply(c, rng) for c in x])
    art = art_classifier(load_twin(cfg.model, logits=True))
    for name in ("fgsm", "pgd"):
        started = time.perf_counter()
        parts = []
        for lo in range(0, n, 256):
            snr = float(rng.uniform(*cfg.snr_db))
            parts.append(generate(name, art, x[lo : lo + 256], snr_target_db=snr))
        sets[name] = np.concatenate(parts)
        log.info("%s: %d clips in %.0f s", name, n, time.perf_counter() - started)
    return sets


def spectrograms(x: FloatArray) -> FloatArray:
    return np.concatenate(
        [spectrogram_db(power_spectrogram(x[i : i + 500])) for i in range(0, len(x), 500)]
    )


def build(width: int) -> Any:
    import keras
    from keras import layers

    inp = keras.Input((N_FRAMES, N_BINS), name="spectrogram")
    h = layers.Reshape((N_FRAMES, N_BINS, 1))(inp)
    h = layers.Conv2D(width, (3, 5), strides=(1, 2), activation="relu")(h)
    h = layers.Conv2D(2 * width, 3, strides=2, activation="relu")(h)
    h = layers.Conv2D(2 * width, 3, strides=2, activation="relu")(h)
    h = layers.Conv2D(4 * width, 3, strides=2, activation="relu")(h)
    h = layers.Concatenate()([layers.GlobalAveragePooling2D()(h), layers.GlobalMaxPooling2D()(h)])
    h = layers.Dropout(0.2)(h)
    return keras.Model(inp, layers.Dense(1, name="logit")(h), name="perturbation_net")


def train(cfg: NetConfig, sets: dict[str, FloatArray]) -> Path:
    """Train on ``sets``, write ``cfg.out`` (float TFLite), its card and the manifest entries."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.seed)
    x = np.concatenate([spectrograms(sets[f]) for f in FAMILIES])
    y = np.concatenate(
        [np.full(len(sets[f]), 0.0 if f == "clean" else 1.0, np.float32) for f in FAMILIES]
    )
    weight = np.where(y == 0, cfg.clean_weight * (y == 1).sum() / (y == 0).sum(), 1.0)
    order = np.random.default_rng(cfg.seed).permutation(len(x))
    held, fit = order[: len(order) // 10], order[len(order) // 10 :]
    model = build(cfg.width)
    steps = cfg.epochs * (len(fit) // 64 + 1)
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        weighted_metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)],
    )
    started = time.perf_counter()
    history = model.fit(
        x[fit],
        y[fit],
        sample_weight=weight[fit].astype(np.float32),
        validation_data=(x[held], y[held], weight[held].astype(np.float32)),
        epochs=cfg.epochs,
        batch_size=64,
        verbose=2,
    )
    seconds = time.perf_counter() - started
    logits = model.predict(x[held], batch_size=256, verbose=0)[:, 0]
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    card = {
        "what": "guard's learned perturbation detector: logit that a 1 s clip carries an added "
        "tone or an adversarial perturbation (guard/detectors/perturbation_net.py)",
        "input": "(batch, 49, 257) power spectrogram in dB under the clip's loudest cell, "
        "floored at -100 dB, mapped to [0, 1] (spectrogram_db)",
        "families": list(FAMILIES),
        "data": "Speech Commands (Warden 2018, CC BY 4.0), training speakers only "
        "(guard/devdata.py part 'train'); background noise: head of each recording",
        "config": {k: _shown(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "clips_per_family": {f: len(sets[f]) for f in FAMILIES},
        "held_out_accuracy": {  # a tenth of the examples, at logit 0 (not the calibrated threshold)
            "clean": float(np.mean(logits[y[held] == 0] <= 0)),
            "perturbed": float(np.mean(logits[y[held] == 1] > 0)),
        },
        "final_epoch": {k: float(v[-1]) for k, v in history.history.items()},
        "training_seconds": round(seconds, 1),
    }
    card_path = cfg.out.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    write_manifest(cfg.out.parent, [cfg.out.name, card_path.name])
    return cfg.out
