"""Classifier latency: median and p99 of one ``predict`` (quantise, invoke, dequantise).

Run: ``python bench/bench_classifier.py [--model models/commands.tflite] [--runs 2000]
[--batch 10]``. ``--batch N`` times one call on N copies of the clip's features (STRIP's
blends and the consistency transforms run as one such call).
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


def measure(model: Path, runs: int, batch: int = 1) -> dict[str, float | str]:
    clf = CommandClassifier(model, num_threads=1)
    clip = sorted((ROOT / "tests" / "data" / "wav").glob("*.wav"))[0]
    features = Features(fit_window(read_audio(clip), CLIP_SAMPLES))
    inputs = np.repeat(features.log_mel[None], batch, axis=0)
    for _ in range(50):
        clf.predict(inputs)
    predict_ns, feature_ns = [], []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        clf.predict(inputs)
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
        "batch": batch,
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
    parser.add_argument("--batch", type=int, default=1, help="examples per predict call")
    args = parser.parse_args()
    if args.batch < 1:
        parser.error(f"--batch must be at least 1, got {args.batch}")
    for model in args.model:
        print(json.dumps(measure(model, args.runs, args.batch)))


if __name__ == "__main__":
    main()
