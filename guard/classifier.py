"""The command classifier: a verified TFLite model and its metadata, run on log-mel features."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from guard.errors import ModelError
from guard.features import FEATURE_SPEC, N_FRAMES, N_MELS
from guard.manifest import verified_bytes
from guard.runtime import BatchInterpreters, make_interpreter

FloatArray = npt.NDArray[np.float32]
OUTPUT_NAMES = ("probabilities", "embedding", "early")


@dataclass(frozen=True)
class ModelOutputs:
    """What one interpreter call returns for a batch."""

    probabilities: FloatArray
    """(batch, n_classes), rows sum to ~1."""
    embedding: FloatArray
    """(batch, d) pooled penultimate-layer activations."""
    early: FloatArray
    """(batch, d_early) mean and max pooling of the first convolution's activations."""


def metadata_path(model_path: Path) -> Path:
    """``commands.tflite`` -> ``commands.json`` (labels, feature spec, outputs)."""
    return model_path.with_suffix(".json")


class CommandClassifier:
    """A TFLite command model, checked against its directory's SHA-256 manifest.

    ``predict`` takes log-mel batches (batch, 49, 40) float32 and returns ``ModelOutputs``.
    float32 and full-integer int8 models are both accepted; quantisation is handled here.
    """

    def __init__(self, model_path: str | Path, num_threads: int = 1) -> None:
        model_path = Path(model_path)
        meta_file = metadata_path(model_path)
        try:
            meta = json.loads(verified_bytes(meta_file))
        except ModelError:
            raise
        except json.JSONDecodeError as exc:
            raise ModelError(f"{meta_file}: not valid model metadata ({exc})") from exc
        self._setup(model_path, verified_bytes(model_path), meta, str(meta_file), num_threads)

    @classmethod
    def from_content(
        cls, content: bytes, metadata: dict[str, Any], name: str, num_threads: int = 1
    ) -> CommandClassifier:
        """A model from bytes already verified elsewhere (a detector's manifest-checked state);
        ``name`` stands for the file in error messages."""
        model = cls.__new__(cls)
        model._setup(Path(name), content, metadata, name, num_threads)
        return model

    def _setup(
        self, model_path: Path, content: bytes, meta: Any, meta_file: str, num_threads: int
    ) -> None:
        self.model_path = model_path
        try:
            self.labels: tuple[str, ...] = tuple(meta["labels"])
            spec = meta["features"]
        except (KeyError, TypeError) as exc:
            raise ModelError(f"{meta_file}: not valid model metadata ({exc})") from exc
        if spec != FEATURE_SPEC:
            raise ModelError(
                f"{meta_file}: model was trained on other features than this guard computes "
                f"({spec} != {FEATURE_SPEC})"
            )
        self.metadata: dict[str, Any] = meta
        self.sha256 = hashlib.sha256(content).hexdigest()
        """SHA-256 of the model file (fitted detector state records which model it fits)."""
        interpreter, self.runtime_name = make_interpreter(content, num_threads=num_threads)
        try:
            runner = interpreter.get_signature_runner()
            outputs = runner.get_output_details()
            inputs = runner.get_input_details()
            del runner  # it holds tensor views that would block resize_tensor_input
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.model_path}: model has no serving signature ({exc})") from exc
        missing = [n for n in OUTPUT_NAMES if n not in outputs]
        if missing or len(inputs) != 1:
            raise ModelError(
                f"{self.model_path}: expected one input and outputs {OUTPUT_NAMES}, "
                f"missing {missing}"
            )
        (self._input,) = inputs.values()
        self._outputs = {n: outputs[n] for n in OUTPUT_NAMES}
        if tuple(self._input["shape"][1:]) != (N_FRAMES, N_MELS):
            raise ModelError(
                f"{self.model_path}: input shape {self._input['shape']} is not (n, 49, 40)"
            )
        n_classes = int(self._outputs["probabilities"]["shape"][-1])
        if n_classes != len(self.labels):
            raise ModelError(
                f"{meta_file}: {len(self.labels)} labels for {n_classes} model outputs"
            )
        self.quantized = self._input["dtype"] == np.int8
        self._content = content
        # one interpreter per batch size (1, STRIP's blend count, the transforms, ...)
        self._interpreters = BatchInterpreters(
            content, self._input["index"], (N_FRAMES, N_MELS), num_threads, first=interpreter
        )

    def predict(self, log_mel: FloatArray) -> ModelOutputs:
        """Run the model on (batch, 49, 40) log-mel features in one interpreter call.

        Not thread-safe: give each thread its own ``CommandClassifier``.
        """
        if log_mel.ndim == 2:
            log_mel = log_mel[None]
        interpreter = self._interpreters.get(int(log_mel.shape[0]))
        interpreter.set_tensor(self._input["index"], _quantize(log_mel, self._input))
        interpreter.invoke()
        values = {
            name: _dequantize(interpreter.get_tensor(d["index"]), d)
            for name, d in self._outputs.items()
        }
        return ModelOutputs(**values)


def _quantize(x: FloatArray, detail: dict[str, Any]) -> npt.NDArray[Any]:
    if detail["dtype"] != np.int8:
        return x.astype(np.float32, copy=False)
    scale, zero_point = detail["quantization"]
    q = np.round(x / float(scale)) + int(zero_point)
    return np.asarray(np.clip(q, -128, 127), dtype=np.int8)


def _dequantize(x: npt.NDArray[Any], detail: dict[str, Any]) -> FloatArray:
    if detail["dtype"] != np.int8:
        return np.array(x, dtype=np.float32)
    scale, zero_point = detail["quantization"]
    return np.asarray((x.astype(np.float32) - int(zero_point)) * float(scale), dtype=np.float32)
