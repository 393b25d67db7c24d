from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from guard.classifier import CommandClassifier
from guard.errors import ModelError
from guard.manifest import verified_bytes, write_manifest

from .conftest import MODELS


def _copy_model(tmp_path: Path) -> Path:
    for name in ("commands.tflite", "commands.json", "manifest.json"):
        shutil.copy(MODELS / name, tmp_path / name)
    return tmp_path / "commands.tflite"


def test_shipped_manifest_matches_every_listed_file() -> None:
    files = json.loads((MODELS / "manifest.json").read_text())["files"]
    assert "commands.tflite" in files and "commands.json" in files
    for name in files:
        verified_bytes(MODELS / name)


def test_one_flipped_byte_is_refused(tmp_path: Path) -> None:
    model = _copy_model(tmp_path)
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"commands\.tflite: SHA-256 .* does not match"):
        CommandClassifier(model)


def test_unlisted_file_is_refused(tmp_path: Path) -> None:
    model = _copy_model(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {}}))
    with pytest.raises(ModelError, match="not listed"):
        CommandClassifier(model)


def test_missing_manifest_is_refused(tmp_path: Path) -> None:
    model = _copy_model(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(ModelError, match="no manifest"):
        CommandClassifier(model)


def test_write_manifest_round_trip(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"abc")
    write_manifest(tmp_path, ["a.bin"])
    assert verified_bytes(tmp_path / "a.bin") == b"abc"
    (tmp_path / "a.bin").write_bytes(b"abd")
    with pytest.raises(ModelError):
        verified_bytes(tmp_path / "a.bin")
