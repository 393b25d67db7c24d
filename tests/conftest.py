"""Shared fixtures: paths to the committed test data and the shipped model."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.classifier import CommandClassifier

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
MODELS = ROOT / "models"
WAV_FIXTURES = sorted((DATA / "wav").glob("*.wav"))


@pytest.fixture(scope="session")
def classifier() -> CommandClassifier:
    return CommandClassifier(MODELS / "commands.tflite")


def expected_word(path: Path) -> str:
    """Fixture names start with the spoken word: ``yes__<original stem>.wav``."""
    return path.name.split("__")[0]
