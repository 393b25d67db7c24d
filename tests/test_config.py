from __future__ import annotations

from pathlib import Path

import pytest

from guard.config import load_settings
from guard.errors import ConfigError

from .conftest import ROOT


def test_shipped_config_loads_and_resolves_paths() -> None:
    s = load_settings(ROOT / "config.yaml")
    assert s.model.path == ROOT / "models" / "commands.tflite"
    assert s.model.path.is_file()
    assert "spectral" in s.detectors.enabled


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model:\n  pth: x.tflite\n", r"model\.pth: unknown key"),
        ("model:\n  threads: two\n", r"model\.threads: expected an integer, got 'two'"),
        ("detectors:\n  enabled: spectral\n", r"detectors\.enabled: expected a list"),
        ("model: [1, 2]\n", r"model: expected a mapping"),
        ("model:\n  path: [\n", r"not valid YAML at line"),
        ("bogus: 1\n", r"bogus: unknown key"),
        ("detectors:\n  strip_blends: 0\n", r"detectors\.strip_blends: must be 1\.\.64, got 0"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(tmp_path / "nope.yaml")


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("")
    s = load_settings(path)
    assert s.model.threads == 1
