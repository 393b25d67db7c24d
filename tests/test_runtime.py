from __future__ import annotations

import sys

import pytest

from guard.errors import RuntimeMissingError
from guard.runtime import interpreter_class


def test_prefers_ai_edge_litert() -> None:
    _, name = interpreter_class()
    assert name == "ai-edge-litert"


def test_falls_back_then_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes that import raise ImportError: "not installed".
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    if "tensorflow" in sys.modules or _importable("tensorflow"):
        _, name = interpreter_class()
        assert name == "tensorflow"
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(RuntimeMissingError, match="pip install ai-edge-litert"):
        interpreter_class()


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
