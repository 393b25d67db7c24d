"""Cost of the consistency detector per utterance, against another revision in the same process.

    python bench/bench_consistency.py [--repeats 9] [--against REV]

Times the consistency detector's scoring (the transforms, one batched interpreter call of
the shipped int8 model, the divergence and the retreat) on the 20 fixture clips, one thread. With
``--against REV`` the consistency module of git revision REV is timed in the same process,
alternating with the current one, so a loaded machine slows both alike: quote the ratio.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from _revision import alternate_ms, comparison_args, module_at

from guard.analysis import analyse_batch
from guard.audio import fit_window, read_audio
from guard.classifier import CommandClassifier
from guard.detectors import consistency
from guard.features import CLIP_SAMPLES

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    args = comparison_args(__doc__)
    model = CommandClassifier(ROOT / "models/commands.tflite", num_threads=1)
    paths = sorted((ROOT / "tests/data/wav").glob("*.wav"))
    clips = analyse_batch(np.stack([fit_window(read_audio(p), CLIP_SAMPLES) for p in paths]), model)
    detectors: dict[str, Any] = {"now": consistency.ConsistencyDetector().fit(clips)}
    if args.against:
        old = module_at(args.against, "guard/detectors/consistency.py")
        detectors[args.against] = old.ConsistencyDetector().fit(clips)
    for d in detectors.values():
        d.anomaly_score(clips)  # allocate the batch interpreter first
    # ``_score`` where it exists: ``anomaly_score`` hands back the scores it just gave the same
    # analyses (Detector._scores_once), which would time a memo lookup
    timed = {
        name: partial(getattr(d, "_score", d.anomaly_score), clips) for name, d in detectors.items()
    }
    results = alternate_ms(timed, len(clips), args.repeats)
    for name, ms in results.items():
        print(f"consistency {name}: median {ms:.3f} ms per utterance")
    if args.against:
        print(f"ratio now / {args.against}: {results['now'] / results[args.against]:.2f}")


if __name__ == "__main__":
    main()
