"""Cost of the spectral detector's sub-features per utterance, and of ``tone_phase`` alone.

    python bench/bench_spectral.py [--repeats 9] [--against REV]

Times ``raw_features`` (every sub-feature of the spectral detector, from the shared
``Features``) over the 20 fixture clips, one thread, and ``tone_phase`` alone. With
``--against REV`` the spectral module of git revision REV is timed in the same process,
alternating with the current one, so a loaded machine slows both alike: quote the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from _revision import module_at

from guard.audio import fit_window, read_audio
from guard.detectors import spectral
from guard.features import CLIP_SAMPLES, Features

ROOT = Path(__file__).resolve().parent.parent


def per_utterance_ms(
    fn: Callable[[Features], object], clips: list[Features], number: int = 3
) -> float:
    seconds = timeit.timeit(lambda: [fn(f) for f in clips], number=number)
    return seconds / (number * len(clips)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--against", default=None, help="git revision to compare with")
    args = parser.parse_args()
    paths = sorted((ROOT / "tests/data/wav").glob("*.wav"))
    clips = [Features(fit_window(read_audio(p), CLIP_SAMPLES)) for p in paths]
    timed: dict[str, Callable[[Features], object]] = {"raw_features": spectral.raw_features}
    if args.against:
        timed[f"raw_features at {args.against}"] = module_at(
            args.against, "guard/detectors/spectral.py"
        ).raw_features
    timed["tone_phase"] = lambda f: spectral.tone_phase(f.spectrum, f.power)
    results: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(args.repeats):
        for name, fn in timed.items():
            results[name].append(per_utterance_ms(fn, clips))
    for name, values in results.items():
        print(f"{name}: median {np.median(values):.3f} ms per utterance ({len(clips)} clips)")
    if args.against:
        old = np.median(results[f"raw_features at {args.against}"])
        print(f"ratio now / {args.against}: {np.median(results['raw_features']) / old:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
