"""Export the Keras model to float32 and full-integer int8 TFLite with named signature outputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


def export_all(
    export_model: Any, out_dir: Path, name: str, representative: npt.NDArray[np.float32]
) -> list[str]:
    """Write ``NAME_float.tflite`` and ``NAME.tflite`` (int8 in, int8 out); return the file names.

    ``representative`` is a batch of training log-mel features for int8 calibration.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(export_model)
    (out_dir / f"{name}_float.tflite").write_bytes(converter.convert())

    def rep_data() -> Iterator[list[npt.NDArray[np.float32]]]:
        for i in range(len(representative)):
            yield [representative[i : i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(export_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = rep_data
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    (out_dir / f"{name}.tflite").write_bytes(converter.convert())
    return [f"{name}_float.tflite", f"{name}.tflite"]
