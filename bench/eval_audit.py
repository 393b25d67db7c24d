"""Evidence for ``guard audit``: poisoned variants of the development data, recall and false flags.

    python bench/eval_audit.py [--clips 3000] [--rates 0.01,0.05] [--triggers tone,cough]
        [--model models/commands.tflite --detectors models/detectors] [--out docs/audit_eval.json]

Per case: draw ``--clips`` clips of the 12 classes (``--part``: by default the validation speakers, whom the shipped model never heard), poison
``rate`` of them (dirty label: the trigger added, relabelled ``go``; never clips of ``go``)
exactly as ``guard train --poison`` does, run the audit, and report per method and combined:
recall of the poisoned clips and the share of clean clips flagged.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from guard import devdata  # noqa: E402
from guard.classifier import CommandClassifier  # noqa: E402
from guard.config import load_settings  # noqa: E402
from guard.dataset_audit import METHODS, DatasetAudit  # noqa: E402
from guard.guard import Guard  # noqa: E402
from guard.triggers import Trigger, parse_spec, poison  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "speech_commands"
TRIGGERS = ROOT.parent / "shared" / "data" / "triggers"
SPECS = {
    "tone": "tone:frequency_hz=440,duration_s=0.25,scale=0.1",
    "cough": "clip:file=cough_trigger.wav,scale=0.3",
    "whistle": "clip:file=whistle.wav,scale=0.3",
    "clapping": "clip:file=clapping.wav,scale=0.3",
    "pitch": "style:style=pitch",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=3000)
    parser.add_argument("--rates", default="0.01,0.05")
    parser.add_argument("--triggers", default="tone,cough")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--detectors", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--art",
        action="store_true",
        help="also run ART's ActivationDefence and SpectralSignatureDefense on the same data "
        "(the audited model's float twin; needs the train and redteam extras)",
    )
    parser.add_argument(
        "--part",
        default="validation",
        choices=("train", "validation"),
        help="speakers to draw from: the shipped model's training speakers, or the validation "
        "speakers it never heard (calibrate + evaluate halves)",
    )
    args = parser.parse_args()
    settings = load_settings(ROOT / "config.yaml")
    if args.detectors is not None:
        import dataclasses

        settings = dataclasses.replace(
            settings, detectors=dataclasses.replace(settings.detectors, state_dir=args.detectors)
        )
    guard = Guard.from_settings(settings, model_path=args.model)
    labels = list(guard.model.labels)
    parts = ("train",) if args.part == "train" else ("calibrate", "evaluate")
    chosen = [c for p in parts for c in devdata.clips(DATA, p, seed=7) if c.label in labels]
    chosen = chosen[: args.clips]
    reference = CommandClassifier(settings.model.path) if args.model is not None else None
    x_clean = devdata.audio(chosen)
    y_clean = np.array([labels.index(c.label) for c in chosen])
    target = labels.index("go")
    rows: list[dict[str, Any]] = []
    for trig in args.triggers.split(","):
        trigger = Trigger(parse_spec(SPECS[trig]), base_dir=TRIGGERS)
        for rate in (float(r) for r in args.rates.split(",")):
            rng = np.random.default_rng(0)
            exclude = tuple(i for i, lab in enumerate(labels) if lab.startswith("_"))
            x, y, poisoned = poison(x_clean, y_clean, trigger, rate, target, exclude, rng)
            classes = [labels[i] for i in y]
            t0 = time.perf_counter()
            results, _ = DatasetAudit(guard, reference=reference).run(
                [c.path.name for c in chosen], classes, x
            )
            wall = time.perf_counter() - t0
            is_p = np.zeros(len(y), bool)
            is_p[poisoned] = True
            row: dict[str, Any] = {
                "trigger": trig,
                "rate": rate,
                "poisoned": int(is_p.sum()),
                "seconds": round(wall, 1),
            }
            if args.art:
                from guard.redteam.art_defences import detect_poison

                for method in ("activation", "spectral_signature"):
                    flags, _, seconds = detect_poison(method, guard.model.model_path, x, y)
                    row[f"art_{method}"] = {
                        "recall": round(float(flags[poisoned].mean()), 4),
                        "clean_flagged": round(float(np.delete(flags, poisoned).mean()), 4),
                        "seconds": round(seconds, 1),
                    }
            for m in (*METHODS, "combined"):
                hit = np.array(
                    [(m in r.reasons) if m != "combined" else r.flagged for r in results]
                )
                row[m] = {
                    "recall": round(float(hit[is_p].mean()), 4) if is_p.any() else None,
                    "clean_flagged": round(float(hit[~is_p].mean()), 4),
                }
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(markdown(rows))


def markdown(rows: list[dict[str, Any]]) -> str:
    """Recall of the poisoned clips / share of clean clips flagged, per method and combined."""
    methods: tuple[str, ...] = (*METHODS, "combined")
    if rows and "art_activation" in rows[0]:
        methods = (*methods, "art_activation", "art_spectral_signature")
    lines = [
        "| trigger | rate | poisoned | " + " | ".join(methods) + " |",
        "| --- | --- | --- |" + " --- |" * len(methods),
    ]
    for r in rows:
        cells = [
            f"{r[m]['recall']:.0%} / {r[m]['clean_flagged']:.1%}"
            if m != "combined"
            else f"**{r[m]['recall']:.0%} / {r[m]['clean_flagged']:.1%}**"
            for m in methods
        ]
        lines.append(
            f"| {r['trigger']} | {r['rate']:.1%} | {r['poisoned']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
