"""The trainer end to end on the committed tiny dataset: a broken trainer fails CI."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from guard.audio import read_audio
from guard.classifier import CommandClassifier
from guard.features import CLIP_SAMPLES, log_mel_from_samples
from guard.manifest import verified_bytes

from .conftest import DATA, WAV_FIXTURES


def train_tiny(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``guard train`` on the committed tiny dataset with a 7 % validation split."""
    data = ["--data", str(DATA / "commands"), "--validation-percent", "7"]
    return subprocess.run(
        [sys.executable, "-m", "guard.cli", "train", *data, "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_train_tiny_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "models"
    # the fixtures all come from the shipped model's validation speakers (hash < 15%),
    # so a 7% split puts about half of them on each side
    # adversarial training from the second epoch on (the first model is noise)
    result = train_tiny(out, "--epochs", "2", "--fgsm-augment", "0.5")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    for name in (
        "commands.tflite",
        "commands_float.tflite",
        "commands.json",
        "commands_float.json",
        "commands_float.weights.npz",
        "README.md",
    ):
        assert name in manifest
        verified_bytes(out / name)
    card = (out / "README.md").read_text()
    assert "Warden 2018, CC BY 4.0" in card and "Confusion matrix" in card
    clf = CommandClassifier(out / "commands.tflite")
    assert clf.quantized and len(clf.labels) == 12
    figures = json.loads((out / "commands.figures.json").read_text())
    assert figures["info"]["train_speakers"] > 0 and figures["info"]["validation_speakers"] > 0
    assert 0.0 <= figures["int8"]["accuracy"] <= 1.0
    assert json.loads(verified_bytes(out / "commands.json"))["training"]["fgsm_augment"] == 0.5
    # the model it wrote runs through the same CLI
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "guard.cli",
            "classify",
            "--model",
            str(out / "commands.tflite"),
            str(WAV_FIXTURES[0]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr


def test_train_tiny_vgg(tmp_path: Path) -> None:
    """The second architecture trains, exports the same outputs, and its twin rebuilds it."""
    out = tmp_path / "models"
    result = train_tiny(
        out,
        "--name",
        "tiny_vgg",
        "--architecture",
        "vgg",
        "--channels",
        "8",
        "--epochs",
        "1",
        "--tone-augment",
        "0.5",
        "--sign-noise-augment",
        "0.5",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads(verified_bytes(out / "tiny_vgg.json"))
    assert meta["architecture"]["kind"] == "vgg"
    assert meta["architecture"]["channels"] == 8 and meta["architecture"]["blocks"] == 3
    assert meta["training"]["tone_augment"] == 0.5
    assert meta["training"]["sign_noise_augment"] == 0.5
    assert "VGG-style CNN" in (out / "tiny_vgg.md").read_text()
    clips = np.zeros((4, CLIP_SAMPLES), dtype=np.float32)
    for i, path in enumerate(WAV_FIXTURES[:4]):
        samples = read_audio(path)[:CLIP_SAMPLES]
        clips[i, : samples.size] = samples
    feats = log_mel_from_samples(clips)
    clf = CommandClassifier(out / "tiny_vgg.tflite")
    assert clf.quantized and len(clf.labels) == 12
    outputs = clf.predict(feats)
    assert outputs.probabilities.shape == (4, 12)
    assert outputs.embedding.shape == (4, 8 * 4)  # widths 8, 16, 32
    assert outputs.early.shape == (4, 2 * 8)  # mean + max of the first stage

    pytest.importorskip("tensorflow")
    from guard.redteam.twin import load_twin

    float_probs = CommandClassifier(out / "tiny_vgg_float.tflite").predict(feats).probabilities
    twin_probs = np.asarray(load_twin(out / "tiny_vgg_float.tflite")(clips))
    np.testing.assert_allclose(twin_probs, float_probs, atol=1e-3)
    logits = np.asarray(load_twin(out / "tiny_vgg_float.tflite", logits=True)(clips))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), float_probs, atol=1e-3)


@pytest.mark.parametrize("flag", ["--tone-augment", "--sign-noise-augment", "--fgsm-augment"])
def test_train_refuses_an_augmentation_share_outside_0_1(tmp_path: Path, flag: str) -> None:
    result = train_tiny(tmp_path / "models", flag, "1.5")
    assert result.returncode != 0
    assert f"{flag} 1.5: must be a share in [0, 1]" in result.stderr
    assert not (tmp_path / "models").exists()


def test_speaker_folds_are_stable_disjoint_and_cut_across_the_validation_split() -> None:
    from guard.training import dataset

    speakers = [f"{i:08x}" for i in range(2000)]
    folds = [dataset.speaker_fold(s, 2) for s in speakers]
    assert folds == [dataset.speaker_fold(s, 2) for s in speakers]  # stable
    assert 0.45 < np.mean(folds) < 0.55
    # salted: not the validation hash again (both halves hold validation speakers)
    val = np.array([dataset.is_validation_speaker(s, 15.0) for s in speakers])
    assert 0.3 < np.mean(np.asarray(folds)[val]) < 0.7
    with pytest.raises(ValueError, match="folds must be at least 1"):
        dataset.speaker_fold("a", 0)


def test_split_clips_is_the_order_of_the_training_split() -> None:
    """bench/eval_retrain.py reads each training clip's speaker from ``split_clips``: index i
    of the prepared training split must be clip i."""
    from guard.training.train import TrainConfig, prepare_data, split_clips

    cfg = TrainConfig(data_dir=DATA / "commands", out_dir=Path("unused"), validation_percent=7)
    train_clips, val_clips = split_clips(cfg)
    data = prepare_data(cfg, np.random.default_rng(0))
    assert len(train_clips) == len(data.train.y) and train_clips and val_clips
    assert {c.speaker for c in train_clips}.isdisjoint(c.speaker for c in val_clips)
    for i in (0, len(train_clips) // 2, len(train_clips) - 1):
        samples = read_audio(train_clips[i].path)
        n = min(len(samples), CLIP_SAMPLES)
        assert np.allclose(data.train.x[i][:n], samples[:n], atol=1e-6)


def test_relabel_sets_words_before_drop_and_clean_labels_keep_the_originals() -> None:
    """bench/eval_retrain.py ``--relabel`` keeps an audit's flagged clips under the word its
    reference hears: indices are into the split as poisoned, applied before ``drop``."""
    from guard.training import dataset
    from guard.training.train import TrainConfig, prepare_data

    cfg = TrainConfig(data_dir=DATA / "commands", out_dir=Path("unused"), validation_percent=7)
    plain = prepare_data(cfg, np.random.default_rng(0))
    assert np.array_equal(plain.clean_labels, plain.train.y)
    go = dataset.LABELS.index("go")
    first_not_go = int(np.flatnonzero(plain.train.y != go)[0])
    changed = dataclasses.replace(cfg, relabel=((first_not_go, "go"),), drop=(first_not_go + 1,))
    data = prepare_data(changed, np.random.default_rng(0))
    assert len(data.train.y) == len(plain.train.y) - 1
    assert data.train.y[first_not_go] == go  # relabelled, and the drop came after it
    assert np.array_equal(data.train.y[first_not_go + 1 :], plain.train.y[first_not_go + 2 :])
    assert np.array_equal(data.clean_labels, plain.train.y)
    assert data.info["relabelled_clips"] == 1
