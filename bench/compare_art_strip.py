"""guard's STRIP next to ART's ``STRIP`` defence: same backdoored model, same inputs.

    python bench/compare_art_strip.py [--model models/eval/backdoor_cough.tflite]
        [--detectors models/eval/backdoor_cough.detectors] [--n 200] [--val 200] [--blends 10]
        [--guard-blends 1,2,3,5] [--repeats 5] [--json PATH]

Inputs (``guard/devdata.py`` parts, never used to train the model): ``--val`` clean clips of
the "calibrate" speakers set both thresholds (ART: ``mitigate`` with
``false_acceptance_rate=0.01``, which in ART's code is the share of clean inputs it rejects;
guard: ``StripDetector.calibrate`` at 1 % false-block); ``--n`` clean clips of the "evaluate"
speakers and the same clips with the model's trigger (its card's ``trigger``) are then scored.

- ART: ``art.defences.transformer.poisoning.STRIP`` on the model's float twin (waveform in,
  ``TensorFlowV2Classifier``), ``num_samples=--blends``; an input is flagged when ART abstains.
  ART blends waveforms 50/50 with random validation clips and takes the entropy over the
  *sample* axis (not the class axis of the STRIP paper).
- guard: ``StripDetector`` on the int8 TFLite model: ``--blends`` reference clips blended in the
  STFT domain (computed once per utterance), one batched interpreter call, entropy over the
  class axis.

- ``--guard-blends``: guard's STRIP is also run with the first k clips of its state's bank
  (``StripDetector.first_blends``: what fitting with k would choose), each k calibrated to
  1 % on the same ``--val`` clips: the speed/detection trade-off at ART's false-block rate.
  ART stays at ``--blends``.

Time per input: wall time of scoring the ``2 n`` inputs / ``2 n``, the median of ``--repeats``
passes after one untimed warm-up pass of each, guard's settings and ART alternating so a
loaded machine slows both alike.
``ms_per_input`` is the whole cost: guard's includes computing the features and the model's
own call (``analyse_batch``), ART's its ``STRIP.predict``, which classifies the inputs too.
``own_ms_per_input`` is what STRIP adds to the classification both need anyway: guard's
scoring of the shared analyses, and ART's ``STRIP.predict`` less its wrapped classifier's
``predict`` on the same inputs. BLAS and TensorFlow pinned to one thread. Needs the
``redteam`` extra.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from guard import devdata  # noqa: E402
from guard.analysis import analyse_batch  # noqa: E402
from guard.classifier import CommandClassifier  # noqa: E402
from guard.detectors import registry  # noqa: E402
from guard.detectors.strip import StripDetector  # noqa: E402
from guard.manifest import verified_bytes  # noqa: E402
from guard.triggers import Trigger, TriggerSpec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "speech_commands"
TRIGGERS = ROOT.parent / "shared" / "data" / "triggers"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=ROOT / "models/eval/backdoor_cough.tflite")
    parser.add_argument(
        "--detectors", type=Path, default=ROOT / "models/eval/backdoor_cough.detectors"
    )
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--blends", type=int, default=10)
    parser.add_argument("--guard-blends", default="", help="e.g. 1,2,3,5,10")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--target", default="go")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from art.defences.transformer.poisoning import STRIP

    from guard.redteam.adversarial import art_classifier
    from guard.redteam.twin import load_twin

    card = json.loads(verified_bytes(args.model.with_suffix(".json")))
    spec = TriggerSpec.from_card(card["trigger"])
    trigger = Trigger(spec, base_dir=TRIGGERS)
    model = CommandClassifier(args.model)
    labels = list(model.labels)
    keep = [lab for lab in labels if lab not in (args.target, "_silence_")]
    val = devdata.audio([c for c in devdata.clips(DATA, "calibrate", seed=1) if c.label in keep])
    val = val[: args.val]
    clean = devdata.audio([c for c in devdata.clips(DATA, "evaluate", seed=2) if c.label in keep])
    clean = clean[: args.n]
    rng = np.random.default_rng(3)
    triggered = np.stack([trigger.apply(x, rng) for x in clean])
    inputs = np.concatenate([clean, triggered])
    is_triggered = np.r_[np.zeros(len(clean), bool), np.ones(len(triggered), bool)]

    def rates(flag: np.ndarray) -> dict[str, float]:
        return {
            "triggered_flagged": round(float(flag[is_triggered].mean()), 4),
            "clean_flagged": round(float(flag[~is_triggered].mean()), 4),
        }

    # --- guard: the state's STRIP, and with fewer blends ----------------------------------
    (loaded,) = registry.load(args.detectors, ["strip"])
    assert isinstance(loaded, StripDetector)
    strip = loaded
    val_analyses = analyse_batch(val, model)
    ks = sorted({int(k) for k in args.guard_blends.split(",") if k} | {len(strip.bank_)})
    settings: dict[int, StripDetector] = {
        k: (strip if k == len(strip.bank_) else strip.first_blends(k)) for k in ks
    }
    for detector in settings.values():
        detector.calibrate(val_analyses, 0.01)

    # --- ART -----------------------------------------------------------------------------
    classifier = art_classifier(load_twin(args.model))
    # ART's STRIP turns the classifier it is given into the defended one (it swaps its class),
    # so the plain classification is timed on a second copy
    plain = art_classifier(load_twin(args.model))
    defended = STRIP(classifier)(num_samples=args.blends, false_acceptance_rate=0.01)
    np.random.seed(0)
    defended.mitigate(val)

    guard_times: dict[int, list[float]] = {k: [] for k in ks}  # STRIP's own scoring
    feature_times: list[float] = []  # guard: features + the model's own call, once per input
    art_times: list[float] = []  # ART: STRIP.predict, its classification included
    classify_times: list[float] = []  # ART: the wrapped classifier's own predict
    guard_flags: dict[int, np.ndarray] = {}
    art_flag = np.zeros(len(inputs), bool)
    # one untimed pass of everything first: interpreters for new batch sizes, TensorFlow's
    # graph tracing and first-touch memory are start-up costs, not costs per input
    for detector in settings.values():
        detector.anomaly_score(analyse_batch(inputs, model))
    plain.predict(inputs)
    defended.predict(inputs)
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        analyses = analyse_batch(inputs, model)
        feature_times.append((time.perf_counter() - t0) / len(inputs))
        for k, detector in settings.items():
            t0 = time.perf_counter()
            scores = detector.anomaly_score(analyses)
            guard_times[k].append((time.perf_counter() - t0) / len(inputs))
            guard_flags[k] = scores > detector.threshold()
        t0 = time.perf_counter()
        plain.predict(inputs)
        classify_times.append((time.perf_counter() - t0) / len(inputs))
        t0 = time.perf_counter()
        preds = defended.predict(inputs)
        art_times.append((time.perf_counter() - t0) / len(inputs))
        art_flag = ~np.any(preds, axis=1)  # ART abstains with an all-zero row
    art_s = float(np.median(art_times))
    art_own_s = art_s - float(np.median(classify_times))
    features_s = float(np.median(feature_times))

    def guard_row(k: int) -> dict[str, float]:
        own_s = float(np.median(guard_times[k]))
        return {
            **rates(guard_flags[k]),
            "ms_per_input": round((features_s + own_s) * 1e3, 3),
            "speed_ratio": round(art_s / (features_s + own_s), 1),
            "own_ms_per_input": round(own_s * 1e3, 3),
            "own_speed_ratio": round(art_own_s / own_s, 1),
        }

    shipped = len(strip.bank_)
    report = {
        "model": args.model.name,
        "trigger": card["trigger"],
        "n_clean": len(clean),
        "n_triggered": len(triggered),
        "blends": args.blends,
        "guard_strip": guard_row(shipped),
        "art_strip": {
            **rates(art_flag),
            "ms_per_input": round(art_s * 1e3, 3),
            "own_ms_per_input": round(art_own_s * 1e3, 3),
        },
        "guard_features_ms_per_input": round(features_s * 1e3, 3),
        "speed_ratio": guard_row(shipped)["speed_ratio"],
        "guard_strip_by_blends": {str(k): guard_row(k) for k in ks},
        "repeats": max(1, args.repeats),
    }
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
