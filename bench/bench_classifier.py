"""Classifier latency: median and p99 of one batch-1 ``predict`` (quantise, invoke, dequantise).

Run: ``python bench/bench_classifier.py [--model models/commands.tflite] [--runs 2000]``.
One interpreter thread. Machines here are shared and noisy: quote medians, compare ratios.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from guard.audio import fit_window, read_audio
from guard.classifier import CommandClassifier
from guard.features import CLIP_SAMPLES, Features

ROOT = Path(__file__).resolve().parent.parent


def measure(model: Path, runs: int) -> dict[str, float | str]:
    clf = CommandClassifier(model, num_threads=1)
    clip = sorted((ROOT / "tests" / "data" / "wav").glob("*.wav"))[0]
    features = Features(fit_window(read_audio(clip), CLIP_SAMPLES))
    for _ in range(50):
        clf.predict(features.log_mel)
    predict_ns, feature_ns = [], []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        clf.predict(features.log_mel)
        t1 = time.perf_counter_ns()
        Features(features.samples)
        t2 = time.perf_counter_ns()
        predict_ns.append(t1 - t0)
        feature_ns.append(t2 - t1)
    p = np.array(predict_ns) / 1000.0
    f = np.array(feature_ns) / 1000.0
    return {
        "model": str(model),
        "runtime": clf.runtime_name,
        "size_kb": round(model.stat().st_size / 1000, 1),
        "predict_us_p50": round(float(np.median(p)), 1),
        "predict_us_p99": round(float(np.percentile(p, 99)), 1),
        "features_us_p50": round(float(np.median(f)), 1),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--model",
        type=Path,
        nargs="*",
        default=[ROOT / "models" / "commands.tflite", ROOT / "models" / "commands_float.tflite"],
    )
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    for model in args.model:
        print(json.dumps(measure(model, args.runs)))


if __name__ == "__main__":
    main()
