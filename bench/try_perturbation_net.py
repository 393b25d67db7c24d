"""The learned perturbation detector on a dev set, alone and in the fused rule, before a refit.

    python bench/try_perturbation_net.py [--net models/perturbation_net.tflite ...]
        [--weights 1,2,3,4,6] [--cache /tmp/dev_sets.npz] [--json PATH]

The dev set is bench/try_adversarial_ideas.py's, from the "calibrate" half of the validation
speakers only (the "evaluate" half of docs/DETECTION.md's tables stays untouched): ART's FGSM,
PGD, universal perturbation and DeepFool on 120 clips (kept: those that fool the int8 model at
SNR >= 25 dB), tones, aliased tones and whistles on 400 clips, and the 857 calibrate clips
(half in noise) as the clean side. The shipped state's detectors score them as they are; each
``--net`` is added as one more score, and the union recalibrated to 1 % of the clean clips
with the network given each of ``--weights`` turns per round of the budget
(``guard.fusion.calibrate_union``). Also: the network alone at 1 % and its AUROC per family.

``--agreement`` also reports each weight with one more score in the union: the sum of the
network's and the consistency detector's scores, each scaled by its clean tail
(``guard.detectors.base.tail_model`` on the clean side), so that two detectors that are each
just under their thresholds block together (a prototype: guard's runtime has no such score).
``--tts`` adds bench/eval_tts_voices.py's synthetic voices (as synthesized, and in noise) as
two more families: clean commands, so what is blocked there is a false block.

Needs ``../shared/data`` and the ``redteam`` extra (the attacks: ~4 min on 2 cores, once;
``--cache`` keeps the audio).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from guard.analysis import Analysis, analyse_batch
from guard.classifier import CommandClassifier
from guard.detectors import registry
from guard.detectors.base import tail_model, threshold_allowing
from guard.detectors.perturbation_net import PerturbationNetDetector
from guard.fusion import calibrate_union, union_fired
from guard.manifest import write_manifest
from guard.redteam.metrics import auroc

ROOT = Path(__file__).resolve().parent.parent
NAME = PerturbationNetDetector.name


def dev_sets(cache: Path | None, model: CommandClassifier) -> dict[str, np.ndarray]:
    if cache is not None and cache.is_file():
        with np.load(cache) as data:
            return {k: data[k] for k in data.files}
    sys.path.insert(0, str(ROOT / "bench"))
    import try_adversarial_ideas as ideas

    audio = {"clean": ideas.calibrate_set(), **ideas.attacks(model, 120), **ideas.triggered(400)}
    if cache is not None:
        savez: Any = np.savez  # numpy's stub types **kwds against allow_pickle
        savez(cache, **audio)
    return audio


def tts_sets() -> dict[str, np.ndarray]:
    sys.path.insert(0, str(ROOT / "bench"))
    from eval_tts_voices import spoken, voices

    clips = list(spoken(voices(), np.random.default_rng(0)))
    return {
        "tts": np.stack([c[3] for c in clips]),
        "tts in noise": np.stack([c[4] for c in clips]),
    }


def dev_analyses(cache: Path | None, tts: bool) -> dict[str, list[Analysis]]:
    """The shipped model's analyses of the dev set (and of the synthetic voices with ``tts``),
    per family."""
    model = CommandClassifier(ROOT / "models/commands.tflite")
    audio = dev_sets(cache, model)
    if tts:
        audio.update(tts_sets())
    return {f: analyse_batch(x, model) for f, x in audio.items()}


def net_detector(path: Path, tmp: Path, clean: list[Analysis]) -> PerturbationNetDetector:
    """A fitted detector for a candidate file that may not sit under a manifest yet."""
    copy = tmp / path.name
    copy.write_bytes(path.read_bytes())
    write_manifest(tmp, [copy.name])
    return PerturbationNetDetector(net_path=copy).fit(clean)


def agreement(scores: dict[str, np.ndarray], clean: dict[str, np.ndarray]) -> np.ndarray:
    """The network's and the consistency detector's scores in units of their clean tails,
    summed."""
    total = np.zeros(len(scores[NAME]))
    for name in (NAME, "consistency"):
        median, scale = tail_model(clean[name], 1e-12)
        total += (scores[name] - median) / scale
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--net", type=Path, action="append", default=None)
    parser.add_argument("--weights", default="1,2,3,4,6")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--agreement", action="store_true", help="also with the network + consistency sum"
    )
    parser.add_argument("--tts", action="store_true", help="also the synthetic voices")
    args = parser.parse_args()
    import tempfile

    analyses = dev_analyses(args.cache, args.tts)
    # the state without its network and the agreement built on it: each candidate replaces them
    shipped = registry.load_state(ROOT / "models/detectors")
    detectors = [d for d in shipped if d.name not in (NAME, "agreement")]
    scores = {f: {d.name: d.anomaly_score(a) for d in detectors} for f, a in analyses.items()}
    fixed = {d.name: d.threshold() for d in detectors if d.fixed_threshold() is not None}
    n = {f: len(a) for f, a in analyses.items()}

    def fused(names: list[str], weights: dict[str, int]) -> dict[str, Any]:
        clean = {k: scores["clean"][k] for k in names}
        th = calibrate_union(clean, 0.01, fixed, weights)
        blocked = {
            f: round(float(union_fired({k: scores[f][k] for k in names}, th).mean()), 4)
            for f in analyses
        }
        share = {k: int(np.sum(clean[k] > th[k])) for k in names if np.any(clean[k])}
        return {"blocked": blocked, "clean_blocks_by_detector": share}

    report: dict[str, Any] = {"n": n, "without": fused([d.name for d in detectors], {})}
    print(f"n: {n}\nwithout the network: {report['without']}")
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.net or [ROOT / "models/perturbation_net.tflite"]:
            net = net_detector(path, Path(tmp), analyses["clean"])
            for f, a in analyses.items():
                scores[f][NAME] = net.anomaly_score(a)
            clean = scores["clean"][NAME]
            alone_th = threshold_allowing(clean, int(0.01 * len(clean)))
            row: dict[str, Any] = {
                "alone_at_1pct": {
                    f: round(float(np.mean(scores[f][NAME] > alone_th)), 4) for f in analyses
                },
                "auroc": {
                    f: round(auroc(clean, scores[f][NAME]), 4) for f in analyses if f != "clean"
                },
                "fused": {},
            }
            print(f"\n{path}\n  alone at 1 %: {row['alone_at_1pct']}\n  AUROC: {row['auroc']}")
            names = [*(d.name for d in detectors), NAME]
            if args.agreement:
                row["fused_with_agreement"] = {}
                for f in analyses:
                    scores[f]["agreement"] = agreement(scores[f], scores["clean"])
            for w in (int(v) for v in args.weights.split(",")):
                row["fused"][str(w)] = fused(names, {NAME: w})
                print(f"  fused, weight {w}: {row['fused'][str(w)]}")
                if args.agreement:
                    row["fused_with_agreement"][str(w)] = fused([*names, "agreement"], {NAME: w})
                    print(f"  + agreement, weight {w}: {row['fused_with_agreement'][str(w)]}")
            report[str(path)] = row
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
