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
  L-inf budget 24-34 dB below the clip (one draw per chunk of 256 clips);
- deepfool: ART's DeepFool on the first ``deepfool`` clips (3,000 by default), the examples
  that change the twin's label: a minimal perturbation, a median 47 dB below the clip (5-95 %:
  33-67 dB), where the budgeted ones above sit at 24-34 dB.

Plus up to ``synthetic`` clips of synthetic voices, in every family (``synthetic_voices``):
espeak-ng saying words the evaluation never uses, with voice variants it never uses, in its
seven English accents, each clip as it is (clean) and with each of the four perturbations
above. Without them the network learned "formant synthesis" as a perturbation (it blocked a
fifth of espeak-ng's commands); as clean examples alone they cost much of its PGD catch; in
every family the voice is no cue either way (docs/DETECTION.md).

The network (``build``) is four strided convolutions over the (49, 257) power spectrogram in
dB (``spectrogram_db``), global average and max pooling, and one logit; trained with binary
cross-entropy, the clean class weighted ``clean_weight`` times its balanced share so the clean
tail, where the threshold will sit, counts for more.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from guard import devdata
from guard.audio import fit_window, read_audio
from guard.detectors.perturbation_net import spectrogram_db
from guard.features import N_BINS, N_FRAMES, power_spectrogram
from guard.manifest import write_manifest
from guard.training.tts import ESPEAK_ACCENTS, speak
from guard.triggers import random_tone

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float32]
FAMILIES = ("clean", "tone", "aliased", "fgsm", "pgd")
SYNTHETIC_VARIANTS = (
    *("+m1", "+m2", "+m4", "+m5", "+m6", "+m7", "+f1", "+f3", "+f5", "+klatt", "+klatt3"),
    *("+Alex", "+Andy", "+Annie", "+belinda", "+benjamin"),
)
"""espeak-ng voice variants for training; bench/eval_tts_voices.py uses "", +f2, +f4, +m3."""
SYNTHETIC_WORDS = (
    *("zero", "one", "two", "three", "four", "five", "six", "eight", "nine", "bed", "bird"),
    *("cat", "tree", "wow", "sheila", "learn", "follow", "forward", "backward", "visual"),
)
"""Words for training; none is a command or one of the evaluation's unknown words."""


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
    synthetic: int = 1200
    """At most this many synthetic-voice clips (half of the accent x variant x word grid is
    drawn: ~1,080); 0 for none. Needs espeak-ng and sox."""
    synthetic_seed: int = 21
    deepfool: int = 3000
    """The first this many speaker clips also get ART's DeepFool (family "deepfool"; ~0.6 s
    per clip on 2 cores); 0 for none."""
    command_line: str = ""


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is under it (cards are committed)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def make_sets(cfg: NetConfig) -> dict[str, FloatArray]:
    """The five families of waveforms (n_clips + synthetic clips each), from training speakers
    and synthetic voices, and "deepfool" when ``cfg.deepfool`` asks for it."""
    from guard.redteam.adversarial import art_classifier
    from guard.redteam.twin import load_twin

    chosen = devdata.clips(cfg.data_dir, cfg.part, cfg.n_clips, seed=cfg.seed)
    if not chosen:
        raise ValueError(f"{cfg.data_dir}: no clips of {cfg.part!r} speakers to train on")
    x = devdata.audio(chosen)
    rng = np.random.default_rng(cfg.seed)
    clean = x.copy()
    noisy = rng.random(len(x)) < 0.5
    clean[noisy] = devdata.add_noise(clean[noisy], devdata.noise(cfg.data_dir, "train"), rng, 0.3)
    art = art_classifier(load_twin(cfg.model, logits=True))
    sets = {"clean": clean, **perturbed(x, rng, art, cfg.snr_db)}
    if cfg.synthetic > 0:
        voices = synthetic_voices(cfg)
        # their own generator, so the speakers' sets stay what they were without them
        voice_rng = np.random.default_rng(cfg.synthetic_seed + 10)
        more = {"clean": voices, **perturbed(voices, voice_rng, art, cfg.snr_db)}
        sets = {f: np.concatenate([sets[f], more[f]]) for f in FAMILIES}
    if cfg.deepfool > 0:
        sets["deepfool"] = deepfool(x[: cfg.deepfool], art)
    return sets


def deepfool(x: FloatArray, art: Any) -> FloatArray:
    """ART's DeepFool on ``x``, the examples that change the twin's label."""
    from guard.redteam.adversarial import generate

    started = time.perf_counter()
    parts = []
    for lo in range(0, len(x), 256):
        clean = x[lo : lo + 256]
        adv = generate("deepfool", art, clean)
        moved = art.predict(adv).argmax(axis=1) != art.predict(clean).argmax(axis=1)
        parts.append(adv[moved])
    out = np.concatenate(parts)
    log.info("deepfool: %d of %d clips in %.0f s", len(out), len(x), time.perf_counter() - started)
    return out


def perturbed(
    x: FloatArray, rng: np.random.Generator, art: Any, snr_db: tuple[float, float]
) -> dict[str, FloatArray]:
    """``x`` with a random tone, an aliased ultrasonic tone, ART's FGSM and ART's PGD."""
    from guard.redteam.adversarial import generate

    sets: dict[str, FloatArray] = {}
    for kind, low_hz, high_hz in (("tone", 100, 7900), ("aliased", 17_000, 23_000)):
        sets[kind] = np.stack([random_tone(kind, low_hz, high_hz, rng).apply(c, rng) for c in x])
    for name in ("fgsm", "pgd"):
        started = time.perf_counter()
        parts = []
        for lo in range(0, len(x), 256):
            snr = float(rng.uniform(*snr_db))
            parts.append(generate(name, art, x[lo : lo + 256], snr_target_db=snr))
        sets[name] = np.concatenate(parts)
        log.info("%s: %d clips in %.0f s", name, len(x), time.perf_counter() - started)
    return sets


def synthetic_voices(cfg: NetConfig) -> FloatArray:
    """Up to ``cfg.synthetic`` 1 s clips of espeak-ng (half of the accent x variant x word grid,
    random speed 120-200 words/min and pitch 20-80, peak 0.1-0.8), half of them in background
    noise of the training recordings, as the speakers' clean clips."""
    import shutil
    import subprocess
    import tempfile

    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise ValueError(
                f"{tool} not found: synthetic voices need espeak-ng and sox "
                "(apt-get install espeak-ng sox), or set synthetic to 0"
            )
    rng = np.random.default_rng(cfg.synthetic_seed)
    out: list[FloatArray] = []
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "word.wav"
        grid = itertools.product(ESPEAK_ACCENTS, SYNTHETIC_VARIANTS, SYNTHETIC_WORDS)
        for accent, variant, word in grid:
            if len(out) == cfg.synthetic:
                break
            if rng.random() > 0.5:
                continue
            speed, pitch = int(rng.uniform(120, 200)), int(rng.uniform(20, 80))
            options = ["-s", str(speed), "-p", str(pitch)]
            try:
                speak("espeak-ng", accent + variant, word, wav, options)
            except subprocess.CalledProcessError:  # a variant this espeak-ng lacks
                continue
            clip = fit_window(read_audio(wav), 16_000)
            peak = max(float(np.abs(clip).max()), 1e-6)
            out.append((clip * rng.uniform(0.1, 0.8) / peak).astype(np.float32))
    if not out:
        raise ValueError("espeak-ng spoke none of the synthetic words")
    voices = np.stack(out)
    noisy = rng.random(len(voices)) < 0.5
    noise = devdata.noise(cfg.data_dir, "train")
    voices[noisy] = devdata.add_noise(voices[noisy], noise, rng, 0.3)
    log.info("synthetic voices: %d clips", len(voices))
    return voices


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
    families = list(sets)
    x = np.concatenate([spectrograms(sets[f]) for f in families])
    y = np.concatenate(
        [np.full(len(sets[f]), 0.0 if f == "clean" else 1.0, np.float32) for f in families]
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
        "families": families,
        "data": "Speech Commands (Warden 2018, CC BY 4.0), training speakers only "
        "(guard/devdata.py part 'train'); background noise: head of each recording"
        + (
            f"; up to {cfg.synthetic} synthetic-voice clips (espeak-ng, guard/training/tts.py) "
            "in every family"
            if cfg.synthetic > 0
            else ""
        ),
        "config": {k: _shown(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "clips_per_family": {f: len(sets[f]) for f in families},
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
