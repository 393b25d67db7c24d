"""Per-utterance decision latency of ``Guard.check`` (all detectors, one core).

    python bench/bench_guard.py [--config config.yaml] [--runs 30]
        [--model models/eval/backdoor_cough.tflite --detectors models/eval/backdoor_cough.detectors]

Runs every fixture clip (tests/data/wav, 1 s each) ``--runs`` times through the full decision
and prints p50/p99 of the total and of each stage, plus the real-time factor of ``guard scan``
(seconds of audio per second of compute), the process's peak resident size and its minor
page faults per decision. ``--model`` /
``--detectors``: a vendor's model with its own state (where ``second_ear`` is active). The
allocator is tuned as the ``guard`` command tunes it (guard/allocator.py);
``--default-allocator`` measures glibc's defaults. One interpreter thread; numpy's BLAS pinned to one
thread by the environment variables below, so "one core" is what is measured. Quote medians.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from guard.allocator import tune_allocator  # noqa: E402
from guard.analysis import Utterance, analyse  # noqa: E402
from guard.audio import read_audio  # noqa: E402
from guard.config import load_settings  # noqa: E402
from guard.guard import Guard  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--detectors", type=Path, default=None)
    parser.add_argument("--default-allocator", action="store_true", help="glibc's thresholds")
    args = parser.parse_args()
    tuned = False if args.default_allocator else tune_allocator()
    settings = load_settings(args.config)
    if args.detectors is not None:
        detectors = dataclasses.replace(settings.detectors, state_dir=args.detectors)
        settings = dataclasses.replace(settings, detectors=detectors)
    guard = Guard.from_settings(settings, args.model)
    clips = [read_audio(p) for p in sorted((ROOT / "tests/data/wav").glob("*.wav"))]
    for x in clips[:3]:
        guard.check(x)
    total: list[float] = []
    stages: dict[str, list[float]] = {"features+model": [], **{d.name: [] for d in guard.detectors}}
    heard_go: list[bool] = []
    audio_s = 0.0
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(args.runs):
        for x in clips:
            t0 = time.perf_counter()
            guard.check(x)
            total.append((time.perf_counter() - t0) * 1000)
            audio_s += len(x) / 16_000
            t0 = time.perf_counter()
            a = analyse(Utterance(x), guard.model)
            stages["features+model"].append((time.perf_counter() - t0) * 1000)
            heard_go.append(a.label == "go")
            for d in guard.detectors:
                t0 = time.perf_counter()
                d.anomaly_score([a])
                stages[d.name].append((time.perf_counter() - t0) * 1000)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before
    t = np.array(total)
    print(
        json.dumps(
            {
                "utterances": len(t),
                "check_ms_p50": round(float(np.median(t)), 2),
                "check_ms_p99": round(float(np.percentile(t, 99)), 2),
                "stage_ms_p50": {k: round(float(np.median(v)), 3) for k, v in stages.items()},
                "stage_ms_p99": {
                    k: round(float(np.percentile(v, 99)), 3) for k, v in stages.items()
                },
                # the second ears only work on what the model hears as "go"
                "stage_ms_p50_when_go": {
                    k: round(float(np.median(np.asarray(v)[heard_go])), 3)
                    for k, v in stages.items()
                    if any(heard_go)
                },
                "utterances_heard_as_go": int(sum(heard_go)),
                "check_ms_p50_when_go": round(float(np.median(t[heard_go])), 2)
                if any(heard_go)
                else None,
                "real_time_factor": round(audio_s / (t.sum() / 1000), 1),
                "runtime": guard.model.runtime_name,
                "allocator_tuned": tuned,
                "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                # each decision is timed twice over (whole, then by stage)
                "minor_page_faults_per_decision": round(faults / len(t), 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
