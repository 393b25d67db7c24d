"""How fragile each model is to noise of FGSM's size, and how accurate it stays.

    python bench/noise_fragility.py --model models/commands.tflite [--model OTHER.tflite ...]
        [--clips 400] [--draws 3] [--snr-db 25] [--json PATH]

Were FGSM's successes at a 25 dB budget clips that *any* noise that loud flips, a model
less fragile to noise would leave it fewer (docs/DETECTION.md, "A model hardened against
noise": it does not). Per model: the share of the first ``--clips`` clean clips of the
"evaluate" speakers (the clips bench/eval_detection.py attacks, in the same order) whose int8
label changes when random-sign noise (+-eps on every sample, eps = rms * 10^(-snr/20): FGSM's
budget with coin flips for the gradient's signs) is added, per draw and its median; the int8
accuracy on those clean clips and on the model's validation split (its figures card).
Runtime dependencies only; ~10 s per model.

``--fgsm N`` (needs the ``redteam`` extra) also runs ART's FGSM at the same budget through
each model's float twin on the first N clips, as bench/eval_detection.py does: the share it
fools (int8 label changed, SNR >= the budget) and how many of those clips any of the random
draws flips too. Were FGSM's successes the fragile clips, most would be.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from guard import devdata
from guard.classifier import CommandClassifier
from guard.training import augment, dataset
from guard.training.train import predicted_indices

ROOT = Path(__file__).resolve().parent.parent


def noisy(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Every clip with random-sign noise at exactly ``snr_db`` (the training augmentation)."""
    return augment.sign_noise(x, rng, p=1.0, snr_db=(snr_db, snr_db))


def fgsm_fooled(
    path: Path, model: CommandClassifier, x: np.ndarray, clean: np.ndarray, snr_db: float
) -> np.ndarray:
    """Which clips ART's FGSM through ``path``'s float twin moves off their int8 label."""
    from guard.redteam.adversarial import art_classifier, generate
    from guard.redteam.adversarial import snr_db as snr_of
    from guard.redteam.twin import load_twin

    x_adv = generate("fgsm", art_classifier(load_twin(path, logits=True)), x, snr_db)
    return np.asarray((predicted_indices(model, x_adv) != clean) & (snr_of(x, x_adv) >= snr_db))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/speech_commands")
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--snr-db", type=float, default=25.0)
    parser.add_argument("--fgsm", type=int, default=0, help="clips to attack with FGSM (0: no)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    chosen = devdata.clips(args.data, "evaluate", args.clips, seed=1)
    x = devdata.audio(chosen)
    truth = np.array([dataset.LABELS.index(c.label) for c in chosen])
    report: dict[str, Any] = {"clips": len(x), "snr_db": args.snr_db, "models": {}}
    print(f"{len(x)} evaluate clips, random-sign noise at {args.snr_db:g} dB SNR\n")
    print(
        "| model | int8 validation accuracy | accuracy on these clips | label flipped by the noise (median of draws) |"
    )
    print("| --- | --- | --- | --- |")
    for path in args.model:
        model = CommandClassifier(path)
        clean = predicted_indices(model, x)
        flipped = np.stack(
            [
                predicted_indices(model, noisy(x, args.snr_db, np.random.default_rng(d))) != clean
                for d in range(args.draws)
            ]
        )
        flips = [float(f) for f in flipped.mean(axis=1)]
        figures = path.with_name(path.stem + ".figures.json")
        val = json.loads(figures.read_text())["int8"]["accuracy"] if figures.exists() else None
        accuracy = float(np.mean(clean == truth))
        median = float(np.median(flips))
        report["models"][str(path)] = {
            "validation_accuracy": val,
            "accuracy": accuracy,
            "flipped": flips,
            "flipped_median": median,
        }
        if args.fgsm:
            fooled = fgsm_fooled(path, model, x[: args.fgsm], clean[: args.fgsm], args.snr_db)
            fragile = flipped[:, : args.fgsm].any(axis=0)
            report["models"][str(path)]["fgsm"] = {
                "clips": min(args.fgsm, len(x)),
                "fooled": int(fooled.sum()),
                "fooled_and_flipped_by_noise": int((fooled & fragile).sum()),
                "flipped_by_noise": int(fragile.sum()),
            }
        shown = "–" if val is None else f"{100 * val:.1f} %"
        draws = ", ".join(f"{100 * f:.1f}" for f in flips)
        print(
            f"| {path.name} | {shown} | {100 * accuracy:.1f} % | "
            f"**{100 * median:.1f} %** ({draws}) |"
        )
    for path, row in report["models"].items():
        if "fgsm" in row:
            f = row["fgsm"]
            print(
                f"\n{Path(path).name}: FGSM fools {f['fooled']} of {f['clips']} clips; "
                f"{f['fooled_and_flipped_by_noise']} of those are among the "
                f"{f['flipped_by_noise']} that a random draw flips"
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
