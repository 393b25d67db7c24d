"""Detector states side by side on the dev set, as saved, before one replaces the shipped state.

    python bench/compare_states.py --state models/detectors --state /tmp/other
        [--cache /tmp/dev_sets.npz] [--tts] [--json PATH]

The dev set is bench/try_perturbation_net.py's, from the "calibrate" half of the validation
speakers only (the "evaluate" half of docs/DETECTION.md's tables stays untouched): ART's FGSM,
PGD, universal perturbation and DeepFool on 120 clips (kept: those that fool the int8 model at
SNR >= 25 dB), tones, aliased tones and whistles on 400 clips, and the 857 calibrate clips
(half in noise), on which every state built by tools/build_detectors.py set its thresholds.
``--tts`` adds bench/eval_tts_voices.py's synthetic voices (as synthesized, and in noise):
clean commands, so what is blocked there is a false block. Each state decides with its own
detectors and thresholds, as `guard scan` would; reported per family: the fused blocked
share and each detector's alone at its threshold.

Build trial states with ``tools/build_detectors.py --out DIR [--option DETECTOR.PARAM=JSON]``.
Needs ``../shared/data`` and the ``redteam`` extra for the attacks (~4 min, once with
``--cache``); ~1 min per state after that.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from try_perturbation_net import dev_analyses

from guard.detectors import registry
from guard.fusion import union_fired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state", type=Path, action="append", required=True)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--tts", action="store_true", help="also the synthetic voices")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    analyses = dev_analyses(args.cache, args.tts)
    report: dict[str, Any] = {"n": {f: len(a) for f, a in analyses.items()}}
    for state in args.state:
        detectors = registry.load_state(state)
        thresholds = {d.name: d.threshold() for d in detectors}
        rows: dict[str, dict[str, Any]] = {}
        for family, batch in analyses.items():
            scores = {d.name: d.anomaly_score(batch) for d in detectors}
            rows[family] = {
                "blocked": round(float(union_fired(scores, thresholds).mean()), 4),
                "per_detector": {
                    n: round(float(np.mean(s > thresholds[n])), 4) for n, s in scores.items()
                },
            }
        report[str(state)] = {"thresholds": thresholds, "families": rows}
        print(f"\n{state}")
        for family, row in rows.items():
            fired = {n: f"{v:.1%}" for n, v in row["per_detector"].items() if v}
            print(f"  {family:13s} {row['blocked']:6.1%}  {fired}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
