"""Cost of the consistency detector per utterance, against another revision in the same process.

    python bench/bench_consistency.py [--repeats 9] [--against REV]

Times ``ConsistencyDetector.anomaly_score`` (the transforms, one batched interpreter call of
the shipped int8 model, the divergence) on the 20 fixture clips, one thread. With
``--against REV`` the consistency module of git revision REV is timed in the same process,
alternating with the current one, so a loaded machine slows both alike: quote the ratio.
"""

from __future__ import annotations

import argparse
import os
import timeit
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from _revision import module_at

from guard.analysis import analyse_batch
from guard.audio import fit_window, read_audio
from guard.classifier import CommandClassifier
from guard.detectors import consistency
from guard.features import CLIP_SAMPLES

ROOT = Path(__file__).resolve().parent.parent


def per_utterance_ms(detector: Any, clips: list[Any], number: int = 3) -> float:
    seconds = timeit.timeit(lambda: detector.anomaly_score(clips), number=number)
    return seconds / (number * len(clips)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--against", default=None, help="git revision to compare with")
    args = parser.parse_args()
    model = CommandClassifier(ROOT / "models/commands.tflite", num_threads=1)
    paths = sorted((ROOT / "tests/data/wav").glob("*.wav"))
    clips = analyse_batch(np.stack([fit_window(read_audio(p), CLIP_SAMPLES) for p in paths]), model)
    detectors: dict[str, Any] = {"now": consistency.ConsistencyDetector().fit(clips)}
    if args.against:
        detectors[args.against] = (
            module_at(args.against, "guard/detectors/consistency.py")
            .ConsistencyDetector()
            .fit(clips)
        )
    results: dict[str, list[float]] = {name: [] for name in detectors}
    for d in detectors.values():
        d.anomaly_score(clips)  # allocate the batch interpreter first
    for _ in range(args.repeats):
        for name, d in detectors.items():
            results[name].append(per_utterance_ms(d, clips))
    for name, values in results.items():
        print(f"consistency {name}: median {np.median(values):.3f} ms per utterance")
    if args.against:
        ratio = np.median(results["now"]) / np.median(results[args.against])
        print(f"ratio now / {args.against}: {ratio:.2f}")


if __name__ == "__main__":
    main()
