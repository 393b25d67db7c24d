"""Where guard looks for its shipped models when no path is given."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL_NAME = "commands.tflite"


def default_models_dir() -> Path:
    """``$GUARD_MODELS_DIR``, else ``./models`` if it holds a model, else the source tree's ``models/``."""
    env = os.environ.get("GUARD_MODELS_DIR")
    if env:
        return Path(env)
    here = Path.cwd() / "models"
    if (here / DEFAULT_MODEL_NAME).is_file():
        return here
    return Path(__file__).resolve().parent.parent / "models"


def default_model_path() -> Path:
    return default_models_dir() / DEFAULT_MODEL_NAME


def default_config_path() -> Path | None:
    """``$GUARD_CONFIG``, else ``./config.yaml``, else the source tree's ``config.yaml``."""
    env = os.environ.get("GUARD_CONFIG")
    if env:
        return Path(env)
    for candidate in (
        Path.cwd() / "config.yaml",
        Path(__file__).resolve().parent.parent / "config.yaml",
    ):
        if candidate.is_file():
            return candidate
    return None
