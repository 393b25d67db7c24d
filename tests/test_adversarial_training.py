"""Adversarial training's FGSM examples (guard/training/adversarial.py): on a small untrained
DS-CNN, each chosen clip moves by exactly +-eps at an SNR in range, and the move raises the
model's loss more than random signs of the same size would (a flipped gradient sign would
lower it)."""

from __future__ import annotations

import numpy as np
import pytest

from guard.audio import read_audio
from guard.features import CLIP_SAMPLES, log_mel_from_samples

from .conftest import WAV_FIXTURES

pytest.importorskip("tensorflow")


def _clips() -> np.ndarray:
    clips = np.zeros((12, CLIP_SAMPLES), dtype=np.float32)
    for i, path in enumerate(WAV_FIXTURES[:12]):
        samples = read_audio(path)[:CLIP_SAMPLES]
        clips[i, : samples.size] = samples
    return clips


def _loss(model: object, clips: np.ndarray, labels: np.ndarray) -> np.ndarray:
    probabilities = np.asarray(model(log_mel_from_samples(clips), training=False))  # type: ignore[operator]
    return np.asarray(-np.log(probabilities[np.arange(len(labels)), labels] + 1e-12))


def test_fgsm_examples_are_plus_minus_eps_and_raise_the_loss() -> None:
    import keras

    from guard.training import model as model_lib
    from guard.training.adversarial import FgsmAugmenter

    keras.utils.set_random_seed(0)
    train_model, _ = model_lib.build(12, channels=8, blocks=1)
    clips = _clips()
    assert len(clips) == 12 and np.all(np.abs(clips).max(axis=1) > 0)
    labels = np.arange(12, dtype=np.int64)
    rng = np.random.default_rng(0)
    fgsm = FgsmAugmenter(train_model, share=1.0, snr_db=(25.0, 35.0), batch_size=5)
    out = fgsm(clips, labels, rng)
    assert out.dtype == np.float32 and out.shape == clips.shape
    added = (out - clips).astype(np.float64)
    rms = np.sqrt(np.mean(clips.astype(np.float64) ** 2, axis=1))
    for delta, level, clip in zip(added, rms, clips, strict=True):
        size = np.abs(delta)
        eps = size.max()
        inside = np.abs(clip) + eps < 1.0  # not clipped at full scale
        moved, size = size[inside] > 0.5 * eps, size[inside]
        # one eps on every sample with a gradient; none where the features do not read the
        # sample (the Hann window's zero, the last 160 samples: in no 30 ms frame) or where
        # its frames are all zeros (a fixture's padding: power is flat at zero)
        np.testing.assert_allclose(size[moved], eps, rtol=1e-3)
        assert np.all(size[~moved] == 0) and moved.mean() > 0.5
        snr_db = 20 * np.log10(level / eps)
        assert 25.0 - 1e-3 <= snr_db <= 35.0 + 1e-3
    signs = rng.choice([-1.0, 1.0], size=clips.shape)
    random = (clips + np.abs(added) * signs).astype(np.float32)
    before = _loss(train_model, clips, labels)
    rise = _loss(train_model, out, labels) - before
    random_rise = _loss(train_model, random, labels) - before
    assert (rise > 0).sum() >= 10, rise
    assert np.median(rise) > np.median(random_rise) + 1e-6, (rise, random_rise)


def test_fgsm_leaves_clips_alone_at_share_zero_and_refuses_a_bad_share() -> None:
    from guard.training import model as model_lib
    from guard.training.adversarial import FgsmAugmenter

    train_model, _ = model_lib.build(12, channels=8, blocks=1)
    clips = _clips()
    rng = np.random.default_rng(1)
    none = FgsmAugmenter(train_model, share=0.0)(clips, np.zeros(12, np.int64), rng)
    np.testing.assert_array_equal(none, clips)
    with pytest.raises(ValueError, match=r"FGSM share 1\.5"):
        FgsmAugmenter(train_model, share=1.5)
    with pytest.raises(ValueError, match="SNR range"):
        FgsmAugmenter(train_model, share=0.5, snr_db=(30.0, 20.0))
    with pytest.raises(ValueError, match="batch size 0"):
        FgsmAugmenter(train_model, share=0.5, batch_size=0)
