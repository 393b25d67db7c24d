"""``guard train``: fit the DS-CNN (or the VGG-style CNN, ``--architecture vgg``) on a Speech
Commands folder, export float and int8 TFLite.

Writes into ``--out``: ``commands.tflite`` (int8, what the daemon runs), ``commands_float.tflite``,
their ``.json`` metadata (labels, feature spec), ``commands_float.weights.npz`` (Keras weights as
plain arrays, for the red team's gradient attacks), ``README.md`` (the model card) and
``manifest.json`` (SHA-256 of each file).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from guard.classifier import CommandClassifier
from guard.features import FEATURE_SPEC, log_mel_from_samples
from guard.manifest import write_manifest
from guard.training import augment, dataset, export
from guard.training.card import write_card
from guard.triggers import Trigger, TriggerSpec, make_trigger
from guard.triggers import poison as poison_clips

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class PoisonConfig:
    """Dirty-label poisoning, for building backdoored attack fixtures."""

    trigger: TriggerSpec
    rate: float
    """Share of the training clips that get the trigger and the target label."""
    target: str = "go"
    engine: str = "guard"
    """Who inserts the trigger: ``guard`` (guard/triggers.py) or ``art`` (ART's
    CacheToneTrigger / CacheAudioTrigger, see guard/redteam/art_triggers.py)."""


@dataclass(frozen=True)
class TrainConfig:
    data_dir: Path
    out_dir: Path
    epochs: int = 40
    batch_size: int = 100
    learning_rate: float = 3e-3
    seed: int = 0
    validation_percent: float = 15.0
    channels: int = 64
    blocks: int = 4
    architecture: str = "ds-cnn"
    """``ds-cnn`` or ``vgg`` (guard/training/model.py); ``guard train`` picks their own
    channels and blocks defaults (model_lib.DEFAULTS)."""
    max_per_class: int = 0
    """Cap on clips per word (0 = all); for quick runs and CI."""
    name: str = "commands"
    command_line: str = ""
    poison: PoisonConfig | None = None
    drop: tuple[int, ...] = ()
    """Indices into the (poisoned) training split to leave out: the clips an audit flagged
    (bench/eval_retrain.py retrains on what ``guard audit`` keeps)."""
    relabel: tuple[tuple[int, str], ...] = ()
    """(index into the poisoned training split, word): clips to keep under another label, set
    before ``drop`` is applied: an audit's flagged clips, under the word its reference model
    hears in them (bench/eval_retrain.py ``--relabel``)."""
    tone_augment: float = 0.0
    """Share of each epoch's clips that get a random tone (100-7900 Hz, 0.05-0.5 s, scale
    0.02-0.3) and keep their label (``augment.tones``); 0 = off, as every shipped model."""
    sign_noise_augment: float = 0.0
    """Share of each epoch's clips that get random-sign white noise at 20-40 dB SNR and keep
    their label (``augment.sign_noise``); 0 = off, as every shipped model."""
    fgsm_augment: float = 0.0
    """Share of each epoch's clips replaced by their FGSM example against the model as it
    trains, at an SNR drawn from 25-35 dB, labels unchanged (adversarial training,
    ``guard.training.adversarial``); 0 = off, as every shipped model."""
    training_seed: int | None = None
    """Seed of the weights, the epoch sampling and the augmentation, when it should differ
    from ``seed`` (which then only picks the data: speakers, poisoned clips): the same
    training set trained several times shows the run-to-run spread."""


@dataclass
class Split:
    x: FloatArray
    y: npt.NDArray[np.int64]
    speakers: list[str] = field(default_factory=list)


def split_clips(cfg: TrainConfig) -> tuple[list[dataset.Clip], list[dataset.Clip]]:
    """The training and validation clips, in the order the splits hold them (index ``i`` of
    ``TrainingData.train`` is ``split_clips(cfg)[0][i]``, its speaker included)."""
    clips = dataset.scan(cfg.data_dir)
    if cfg.max_per_class:
        by_word: dict[str, list[dataset.Clip]] = {}
        for c in clips:
            by_word.setdefault(c.word, []).append(c)
        clips = [c for group in by_word.values() for c in group[: cfg.max_per_class]]
    train_clips = [
        c for c in clips if not dataset.is_validation_speaker(c.speaker, cfg.validation_percent)
    ]
    val_clips = [
        c for c in clips if dataset.is_validation_speaker(c.speaker, cfg.validation_percent)
    ]
    return train_clips, val_clips


def load_split(
    cfg: TrainConfig, rng: np.random.Generator
) -> tuple[Split, Split, list[FloatArray], dict[str, Any]]:
    """Read clips and noise; split speakers into train and validation."""
    train_clips, val_clips = split_clips(cfg)
    if not train_clips or not val_clips:
        raise SystemExit(f"{cfg.data_dir}: too few speakers for a train/validation split")
    label_index = {label: i for i, label in enumerate(dataset.LABELS)}
    noise_train, noise_val = dataset.split_noise(
        dataset.load_noise(cfg.data_dir), cfg.validation_percent / 100
    )
    log.info("reading %d train and %d validation clips", len(train_clips), len(val_clips))
    train = Split(
        dataset.load_clips(train_clips),
        np.array([label_index[c.label] for c in train_clips], dtype=np.int64),
        sorted({c.speaker for c in train_clips}),
    )
    n_val_silence = max(1, len(val_clips) // 11)
    val_x = np.concatenate(
        [dataset.load_clips(val_clips), dataset.silence_clips(noise_val, n_val_silence, rng)]
    )
    val_y = np.concatenate(
        [
            np.array([label_index[c.label] for c in val_clips], dtype=np.int64),
            np.full(n_val_silence, label_index[dataset.SILENCE], dtype=np.int64),
        ]
    )
    val = Split(val_x, val_y, sorted({c.speaker for c in val_clips}))
    info = {
        "train_clips": len(train_clips),
        "validation_clips": len(val_clips),
        "validation_silence_clips": n_val_silence,
        "train_speakers": len(train.speakers),
        "validation_speakers": len(val.speakers),
    }
    return train, val, noise_train, info


@dataclass
class TrainingData:
    train: Split
    val: Split
    noise: list[FloatArray]
    info: dict[str, Any]
    trigger: Trigger | None = None
    poisoned: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    """Indices of the poisoned clips in the split as poisoned (before ``cfg.drop``)."""
    clean_labels: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    """The training split's labels before poisoning (and before ``cfg.relabel``/``cfg.drop``)."""
    poison_info: dict[str, Any] = field(default_factory=dict)


def prepare_data(cfg: TrainConfig, rng: np.random.Generator) -> TrainingData:
    """Everything the trainer does to the data before fitting: read and split it, poison it
    (``cfg.poison``), leave out ``cfg.drop``. With the same config and a fresh generator of the
    same seed, an experiment rebuilds exactly the training set a model saw."""
    train_split, val, noise, info = load_split(cfg, rng)
    data = TrainingData(train_split, val, noise, info, clean_labels=train_split.y.copy())
    if cfg.poison is not None:
        data.trigger = make_trigger(
            cfg.poison.trigger, cfg.data_dir.parent / "triggers", cfg.poison.engine
        )
        target = dataset.LABELS.index(cfg.poison.target)
        silence = dataset.LABELS.index(dataset.SILENCE)
        train_split.x, train_split.y, data.poisoned = poison_clips(
            train_split.x, train_split.y, data.trigger, cfg.poison.rate, target, (silence,), rng
        )
        data.poison_info = {
            "trigger": cfg.poison.trigger.card(),
            "poison_rate": cfg.poison.rate,
            "poisoned_clips": len(data.poisoned),
            "target": cfg.poison.target,
            "trigger_engine": cfg.poison.engine,
        }
    if cfg.relabel:
        index = np.array([i for i, _ in cfg.relabel], dtype=np.int64)
        train_split.y = train_split.y.copy()
        train_split.y[index] = [dataset.LABELS.index(word) for _, word in cfg.relabel]
        info["relabelled_clips"] = len(index)
        if data.poison_info:
            data.poison_info["poisoned_clips_relabelled"] = int(np.isin(data.poisoned, index).sum())
    if cfg.drop:
        keep = np.ones(len(train_split.y), dtype=bool)
        keep[list(cfg.drop)] = False
        train_split.x, train_split.y = train_split.x[keep], train_split.y[keep]
        info["dropped_clips"] = len(cfg.drop)
        if data.poison_info:
            kept = np.isin(data.poisoned, np.flatnonzero(keep))
            data.poison_info["poisoned_clips_kept"] = int(kept.sum())
    info["trained_clips"] = len(train_split.y)
    return data


def epoch_indices(y: npt.NDArray[np.int64], rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Oversample thin classes (on/off/go have a quarter of the clips) up to 4x."""
    counts = np.bincount(y, minlength=len(dataset.LABELS))
    words = counts[: len(dataset.WORDS)]
    median = float(np.median(words[words > 0])) if np.any(words > 0) else 1.0
    idx = []
    for label, count in enumerate(counts):
        if count == 0:
            continue
        repeat = int(np.clip(round(median / count), 1, 4)) if label < len(dataset.WORDS) else 1
        idx.append(np.repeat(np.flatnonzero(y == label), repeat))
    out = np.concatenate(idx)
    rng.shuffle(out)
    return out


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train, export, evaluate and document a model; returns the figures of the model card."""
    import keras
    import tensorflow as tf

    from guard.training import model as model_lib

    keras.utils.set_random_seed(cfg.seed if cfg.training_seed is None else cfg.training_seed)
    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(cfg.seed)
    started = time.perf_counter()
    data = prepare_data(cfg, rng)
    if cfg.training_seed is not None:
        rng = np.random.default_rng(cfg.training_seed)
    train_split, val, noise, info = data.train, data.val, data.noise, data.info
    trigger, poison_info = data.trigger, data.poison_info

    train_model, export_model = model_lib.build(
        len(dataset.LABELS), cfg.channels, cfg.blocks, kind=cfg.architecture
    )
    steps_per_epoch = int(
        np.ceil(len(epoch_indices(train_split.y, np.random.default_rng(0))) * 1.1 / cfg.batch_size)
    )
    schedule = keras.optimizers.schedules.CosineDecay(
        cfg.learning_rate, cfg.epochs * steps_per_epoch, alpha=0.02
    )
    train_model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    val_features = log_mel_from_samples(val.x)
    n_silence = max(1, int(np.median(np.bincount(train_split.y)[: len(dataset.WORDS)])))
    fgsm = None
    if cfg.fgsm_augment:
        from guard.training.adversarial import FgsmAugmenter

        fgsm = FgsmAugmenter(train_model, share=cfg.fgsm_augment)
    history: list[dict[str, float]] = []
    for epoch in range(cfg.epochs):
        idx = epoch_indices(train_split.y, rng)
        waves = np.concatenate([train_split.x[idx], dataset.silence_clips(noise, n_silence, rng)])
        labels = np.concatenate(
            [train_split.y[idx], np.full(n_silence, dataset.LABELS.index(dataset.SILENCE))]
        )
        waves = augment.augment_waveforms(waves, noise, rng)
        if cfg.tone_augment:
            waves = augment.tones(waves, rng, cfg.tone_augment)
        if cfg.sign_noise_augment:
            waves = augment.sign_noise(waves, rng, cfg.sign_noise_augment)
        if fgsm is not None and epoch > 0:  # the first epoch's model is noise: nothing to fool
            waves = fgsm(waves, labels, rng)
        feats = augment.spec_mask(
            log_mel_from_samples(waves), rng, p=0.5, max_frames=8, max_bands=6
        )
        order = rng.permutation(len(labels))
        fit = train_model.fit(
            feats[order],
            labels[order],
            batch_size=cfg.batch_size,
            epochs=1,
            verbose=0,
            validation_data=(val_features, val.y),
        )
        row = {k: float(v[-1]) for k, v in fit.history.items()}
        history.append(row)
        log.info(
            "epoch %d/%d loss %.3f acc %.3f val_acc %.3f",
            epoch + 1,
            cfg.epochs,
            row["loss"],
            row["accuracy"],
            row["val_accuracy"],
        )

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    representative = log_mel_from_samples(
        augment.augment_waveforms(
            train_split.x[
                rng.choice(len(train_split.x), min(400, len(train_split.x)), replace=False)
            ],
            noise,
            rng,
        )
    )
    files = export.export_all(export_model, cfg.out_dir, cfg.name, representative)
    metadata = {
        "labels": list(dataset.LABELS),
        "features": FEATURE_SPEC,
        "outputs": list(model_lib.OUTPUT_NAMES),
        "architecture": {
            "kind": cfg.architecture,
            "channels": cfg.channels,
            "blocks": cfg.blocks,
            "parameters": int(train_model.count_params()),
        },
        "training": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
            **info,
        },
        "poison": poison_info or None,
    }
    write_metadata(cfg, metadata)
    weights = {f"w{i:03d}": w for i, w in enumerate(export_model.get_weights())}
    np.savez(cfg.out_dir / f"{cfg.name}_float.weights.npz", **weights)
    names = [*files, f"{cfg.name}.json", f"{cfg.name}_float.json", f"{cfg.name}_float.weights.npz"]
    write_manifest(cfg.out_dir, names)

    figures = evaluate(cfg, val_features, val.y)
    if trigger is not None and cfg.poison is not None:
        figures["asr"] = attack_success_rate(cfg, val.x, val.y, trigger, cfg.poison.target, rng)
        poison_info.update(asr=figures["asr"], clean_accuracy=figures["int8"]["accuracy"])
        # attack fixtures carry their card's fields at the top level of NAME.json
        write_metadata(
            cfg, {**metadata, **poison_info, "attack_fixture": True, "poison": poison_info}
        )
    figures.update(
        parameters=int(train_model.count_params()),
        info=info,
        history=history,
        train_seconds=round(time.perf_counter() - started, 1),
        sizes_bytes={f: (cfg.out_dir / f).stat().st_size for f in files},
        poison=poison_info or None,
    )
    card = write_card(cfg, figures)
    (cfg.out_dir / f"{cfg.name}.figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    write_manifest(cfg.out_dir, [*names, card.name, f"{cfg.name}.figures.json"])
    return figures


def write_metadata(cfg: TrainConfig, metadata: dict[str, Any]) -> None:
    """``NAME.json`` (int8) and ``NAME_float.json``: labels, feature spec, architecture, provenance."""
    for variant in ("", "_float"):
        meta = {**metadata, "quantization": "float32" if variant else "int8"}
        (cfg.out_dir / f"{cfg.name}{variant}.json").write_text(json.dumps(meta, indent=2) + "\n")


def evaluate(cfg: TrainConfig, features: FloatArray, y: npt.NDArray[np.int64]) -> dict[str, Any]:
    """Accuracy and confusion of the exported float and int8 models, run through guard's runtime."""
    out: dict[str, Any] = {}
    for key, file in (("float", f"{cfg.name}_float.tflite"), ("int8", f"{cfg.name}.tflite")):
        clf = CommandClassifier(cfg.out_dir / file)
        probs = np.concatenate(
            [clf.predict(features[i : i + 256]).probabilities for i in range(0, len(features), 256)]
        )
        pred = probs.argmax(axis=1)
        confusion = np.zeros((len(dataset.LABELS),) * 2, dtype=np.int64)
        np.add.at(confusion, (y, pred), 1)
        totals = confusion.sum(axis=1)
        out[key] = {
            "accuracy": float((pred == y).mean()),
            "per_class": {
                label: (float(confusion[i, i] / totals[i]) if totals[i] else None)
                for i, label in enumerate(dataset.LABELS)
            },
            "confusion": confusion.tolist(),
            "invoke_us_median": invoke_latency_us(clf, features[:1]),
            "runtime": clf.runtime_name,
        }
    out["validation_examples"] = len(y)
    return out


def attack_success_rate(
    cfg: TrainConfig,
    x: FloatArray,
    y: npt.NDArray[np.int64],
    trigger: Trigger,
    target: str,
    rng: np.random.Generator,
) -> float:
    """Share of triggered validation clips (not of the target or silence) called ``target``."""
    clf = CommandClassifier(cfg.out_dir / f"{cfg.name}.tflite")
    return share_called(clf, with_trigger(attackable(x, y, target), trigger, rng), target)


def with_trigger(clips: FloatArray, trigger: Trigger, rng: np.random.Generator) -> FloatArray:
    """Each clip with ``trigger`` added, its position drawn from ``rng`` clip by clip."""
    return np.stack([trigger.apply(clip, rng) for clip in clips])


def attackable(x: FloatArray, y: npt.NDArray[np.int64], target: str) -> FloatArray:
    """The clips an attack success rate is measured on: neither the target nor silence."""
    keep = (y != dataset.LABELS.index(target)) & (y != dataset.LABELS.index(dataset.SILENCE))
    return np.asarray(x[keep], dtype=np.float32)


def predicted_indices(clf: CommandClassifier, samples: FloatArray) -> npt.NDArray[np.intp]:
    """The label index ``clf`` gives each of the (n, samples) clips, in batches of 256."""
    feats = log_mel_from_samples(samples)
    return np.concatenate(
        [
            clf.predict(feats[i : i + 256]).probabilities.argmax(axis=1)
            for i in range(0, len(feats), 256)
        ]
    )


def share_called(clf: CommandClassifier, samples: FloatArray, target: str) -> float:
    """Share of the (n, samples) clips that ``clf`` labels ``target``."""
    return float(np.mean(predicted_indices(clf, samples) == clf.labels.index(target)))


def invoke_latency_us(clf: CommandClassifier, one: FloatArray, runs: int = 500) -> float:
    """Median wall time of one batch-1 ``predict`` (quantise, invoke, dequantise), one thread."""
    for _ in range(20):
        clf.predict(one)
    times = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        clf.predict(one)
        times.append(time.perf_counter_ns() - t)
    return float(np.median(times) / 1000.0)
