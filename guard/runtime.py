"""The one TFLite loader: ai-edge-litert, else tflite-runtime, else TensorFlow's own.

ai-edge-litert is the maintained successor of tflite-runtime with the same Interpreter
API (numpy 2, Python 3.11-3.13). tflite-runtime 2.14, its last release, needs numpy < 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from guard.errors import RuntimeMissingError

INSTALL_HINT = (
    "pip install ai-edge-litert  (or: pip install tflite-runtime 'numpy<2' on Python <= 3.11)"
)


def interpreter_class() -> tuple[Any, str]:
    """Return ``(Interpreter class, runtime name)`` for the first runtime that imports."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf

        return tf.lite.Interpreter, "tensorflow"
    except ImportError:
        pass
    raise RuntimeMissingError(f"no TFLite runtime is installed: {INSTALL_HINT}")


def make_interpreter(model_content: bytes, num_threads: int = 1) -> tuple[Any, str]:
    """Build an Interpreter from verified model bytes; a runtime/numpy mismatch is one clear line."""
    cls, name = interpreter_class()
    try:
        return cls(model_content=model_content, num_threads=num_threads), name
    except (ImportError, AttributeError, TypeError) as exc:
        # tflite-runtime built against numpy 1.x fails here under numpy 2.
        raise RuntimeMissingError(
            f"{name} cannot run here ({str(exc).splitlines()[0]}): {INSTALL_HINT}"
        ) from exc


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what native code writes to file descriptor 2 (LiteRT's delegate banner)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
