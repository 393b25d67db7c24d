from __future__ import annotations

import numpy as np

from guard.audio import fit_window, read_audio
from guard.classifier import CommandClassifier
from guard.features import CLIP_SAMPLES, Features, log_mel_from_samples

from .conftest import MODELS, WAV_FIXTURES, expected_word


def _features() -> np.ndarray:
    clips = np.stack([fit_window(read_audio(p), CLIP_SAMPLES) for p in WAV_FIXTURES])
    return log_mel_from_samples(clips)


def test_model_is_int8_with_detector_outputs(classifier: CommandClassifier) -> None:
    assert classifier.quantized
    out = classifier.predict(_features()[:3])
    assert out.probabilities.shape == (3, 12)
    np.testing.assert_allclose(out.probabilities.sum(axis=1), 1.0, atol=0.03)
    assert out.embedding.shape[0] == 3 and out.embedding.shape[1] >= 16
    assert out.early.shape[0] == 3 and out.early.shape[1] >= 16
    assert classifier.labels[-2:] == ("_unknown_", "_silence_")


def test_fixtures_from_unseen_speakers_mostly_right(classifier: CommandClassifier) -> None:
    """20 clips of validation speakers, 2 per word: the int8 model gets at least 16 right."""
    probs = classifier.predict(_features()).probabilities
    predicted = [classifier.labels[i] for i in probs.argmax(axis=1)]
    expected = [expected_word(p) for p in WAV_FIXTURES]
    correct = sum(p == e for p, e in zip(predicted, expected, strict=True))
    assert len(expected) == 20
    assert correct >= 16, list(zip(expected, predicted, strict=True))


def test_batch_equals_one_by_one(classifier: CommandClassifier) -> None:
    feats = _features()[:5]
    batched = classifier.predict(feats).probabilities
    single = np.concatenate([classifier.predict(f).probabilities for f in feats])
    np.testing.assert_allclose(batched, single, atol=1e-6)


def test_int8_agrees_with_float_twin(classifier: CommandClassifier) -> None:
    float_model = CommandClassifier(MODELS / "commands_float.tflite")
    assert not float_model.quantized
    feats = _features()
    q = classifier.predict(feats).probabilities.argmax(axis=1)
    f = float_model.predict(feats).probabilities.argmax(axis=1)
    assert (q == f).mean() >= 0.9


def test_silence_is_silence(classifier: CommandClassifier) -> None:
    f = Features(np.zeros(CLIP_SAMPLES, dtype=np.float32))
    probs = classifier.predict(f.log_mel).probabilities[0]
    assert classifier.labels[int(probs.argmax())] == "_silence_"
