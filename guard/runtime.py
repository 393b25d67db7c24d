"""The one TFLite loader: ai-edge-litert, else tflite-runtime, else TensorFlow's own.

ai-edge-litert is the maintained successor of tflite-runtime with the same Interpreter
API (numpy 2, Python 3.11-3.13). tflite-runtime 2.14, its last release, needs numpy < 2.
"""

from __future__ import annotations

import os
import sys
from collections import OrderedDict
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


class BatchInterpreters:
    """One allocated interpreter per batch size, built from the same model bytes.

    Resizing an interpreter's input and allocating its tensors on every call would cost more
    than the call (STRIP's blends, the consistency transforms, batched fitting); few sizes are
    used, so each is allocated once and the least recently used is dropped past ``max_sizes``.
    ``item_shape`` is the input's shape without the batch axis; ``first`` is an interpreter
    for batch 1 already made from ``content`` (its tensors not yet allocated).
    """

    def __init__(
        self,
        content: bytes,
        input_index: int,
        item_shape: tuple[int, ...],
        num_threads: int = 1,
        max_sizes: int = 6,
        first: Any = None,
    ) -> None:
        self.content = content
        self.input_index = input_index
        self.item_shape = item_shape
        self.num_threads = num_threads
        self.max_sizes = max_sizes
        self._by_batch: OrderedDict[int, Any] = OrderedDict()
        self.get(1, first)

    def get(self, batch: int, interpreter: Any = None) -> Any:
        """The interpreter for ``batch`` examples, allocated."""
        cached = self._by_batch.get(batch)
        if cached is not None:
            self._by_batch.move_to_end(batch)
            return cached
        if interpreter is None:
            interpreter, _ = make_interpreter(self.content, num_threads=self.num_threads)
        if batch != 1:
            interpreter.resize_tensor_input(self.input_index, [batch, *self.item_shape])
        with quiet_native_stderr():  # LiteRT prints "INFO: Created ... XNNPACK delegate"
            interpreter.allocate_tensors()
        self._by_batch[batch] = interpreter
        if len(self._by_batch) > self.max_sizes:
            self._by_batch.popitem(last=False)
        return interpreter
