"""The trainer end to end on the committed tiny dataset: a broken trainer fails CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from guard.classifier import CommandClassifier
from guard.manifest import verified_bytes

from .conftest import DATA, WAV_FIXTURES


def test_train_tiny_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "models"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "guard.cli",
            "train",
            "--data",
            str(DATA / "commands"),
            "--out",
            str(out),
            "--epochs",
            "2",
            # the fixtures all come from the shipped model's validation speakers (hash < 15%),
            # so a 7% split puts about half of them on each side
            "--validation-percent",
            "7",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
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
