"""Cost of the spectral detector's sub-features per utterance, and of ``tone_phase`` alone.

    python bench/bench_spectral.py [--repeats 9] [--against REV]

Times ``raw_features`` (every sub-feature of the spectral detector, from the shared
``Features``) over the 20 fixture clips, one thread, and ``tone_phase`` alone. With
``--against REV`` the spectral module of git revision REV is timed in the same process,
alternating with the current one, so a loaded machine slows both alike: quote the ratio.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from _revision import alternate_ms, comparison_args, module_at

from guard.audio import fit_window, read_audio
from guard.detectors import spectral
from guard.features import CLIP_SAMPLES, Features

ROOT = Path(__file__).resolve().parent.parent


def _each(fn: Callable[[Features], object], clips: list[Features]) -> list[object]:
    return [fn(f) for f in clips]


def main() -> None:
    args = comparison_args(__doc__)
    paths = sorted((ROOT / "tests/data/wav").glob("*.wav"))
    clips = [Features(fit_window(read_audio(p), CLIP_SAMPLES)) for p in paths]
    per_clip: dict[str, Callable[[Features], object]] = {"raw_features": spectral.raw_features}
    if args.against:
        old = module_at(args.against, "guard/detectors/spectral.py")
        per_clip[f"raw_features at {args.against}"] = old.raw_features
    per_clip["tone_phase"] = lambda f: spectral.tone_phase(f.spectrum, f.power)
    timed = {name: partial(_each, fn, clips) for name, fn in per_clip.items()}
    results = alternate_ms(timed, len(clips), args.repeats)
    for name, ms in results.items():
        print(f"{name}: median {ms:.3f} ms per utterance ({len(clips)} clips)")
    if args.against:
        old_ms = results[f"raw_features at {args.against}"]
        print(f"ratio now / {args.against}: {results['raw_features'] / old_ms:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
