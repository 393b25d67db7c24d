"""Evidence for ``guard audit``: poisoned variants of the development data, recall and false flags.

    python bench/eval_audit.py [--clips 3000] [--rates 0.01,0.05] [--triggers tone,cough]
        [--model models/commands.tflite --detectors models/detectors | --train [--train-epochs N]]
        [--out docs/audit_eval.json]

Per case: draw ``--clips`` clips of the 12 classes (``--part``: by default the validation
speakers, whom the shipped model never heard), poison ``rate`` of them (dirty label: the
trigger added, relabelled ``go``; never clips of ``go``) exactly as ``guard train --poison``
does, run the audit, and report per method and combined: recall of the poisoned clips and the
share of clean clips flagged.

``--train`` audits as ``guard audit`` does without ``--model``: the poisoned set is
written out as a Speech Commands folder (float WAV, lossless; the poisoned clips filed under
``go/``, the file names keep the speaker and nothing else), a model is trained on it with
guard/audit_training.py and read by ``activation`` and ``spectral_signature``; ``knn``,
``label`` and ``runtime`` use the configured model and detectors. Each row then also carries
the trained model's figures, among them ``backdoor_go``: the share of the clean non-``go``
clips of the set, with the trigger added, that it calls ``go`` (did it learn the backdoor?).
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
from scipy.io import wavfile  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from guard import devdata  # noqa: E402
from guard.audit_training import train_on_dataset  # noqa: E402
from guard.classifier import CommandClassifier  # noqa: E402
from guard.config import load_settings  # noqa: E402
from guard.dataset_audit import METHODS, DatasetAudit  # noqa: E402
from guard.features import log_mel_from_samples  # noqa: E402
from guard.guard import Guard  # noqa: E402
from guard.training.dataset import NOISE_DIR, Clip  # noqa: E402
from guard.triggers import Trigger, parse_spec, poison  # noqa: E402

FloatArray = npt.NDArray[np.float32]

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
        "--seed",
        type=int,
        default=0,
        help="which clips are poisoned and where the trigger sits (another seed: a fresh draw)",
    )
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
    parser.add_argument(
        "--train",
        action="store_true",
        help="train a model on each poisoned set for the activation-based methods, as guard "
        "audit does without --model (needs the train extra)",
    )
    parser.add_argument(
        "--train-epochs", type=int, default=None, help="with --train: guard audit's --train-epochs"
    )
    args = parser.parse_args()
    if args.train_epochs is not None and not args.train:
        parser.error("--train-epochs needs --train")
    if args.train and args.model is not None:
        parser.error("--train trains the model the audit reads: leave out --model")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
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
            rng = np.random.default_rng(args.seed)
            exclude = tuple(i for i, lab in enumerate(labels) if lab.startswith("_"))
            x, y, poisoned = poison(x_clean, y_clean, trigger, rate, target, exclude, rng)
            classes = [labels[i] for i in y]
            is_p = np.zeros(len(y), bool)
            is_p[poisoned] = True
            row: dict[str, Any] = {"trigger": trig, "rate": rate, "poisoned": int(is_p.sum())}
            with tempfile.TemporaryDirectory() as tmp:
                activations = None
                if args.train:
                    folders = [
                        c.word if labels[k] == "_unknown_" else labels[k]
                        for c, k in zip(chosen, y, strict=True)
                    ]
                    data_dir = write_dataset(Path(tmp) / "data", chosen, folders, x)
                    trained = train_on_dataset(data_dir, Path(tmp) / "model", args.train_epochs)
                    activations = CommandClassifier(trained.path)
                    row["trained"] = {
                        "epochs": trained.epochs,
                        "seconds": round(trained.train_seconds, 1),
                        "validation_accuracy": round(trained.validation_accuracy, 4),
                        "held_out_speakers": trained.held_out_speakers,
                        "backdoor_go": round(
                            go_rate(activations, x_clean, y_clean, trigger, target), 4
                        ),
                    }
                t0 = time.perf_counter()
                results, _ = DatasetAudit(guard, reference=reference, activations=activations).run(
                    [c.path.name for c in chosen], classes, x
                )
                row["seconds"] = round(time.perf_counter() - t0, 1)
            if args.art:
                from guard.redteam.art_defences import detect_poison

                for method in ("activation", "spectral_signature"):
                    flags, _, seconds = detect_poison(method, guard.model.model_path, x, y)
                    row[f"art_{method}"] = {
                        "recall": round(float(flags[poisoned].mean()), 4) if is_p.any() else None,
                        "clean_flagged": round(float(np.delete(flags, poisoned).mean()), 4),
                        "seconds": round(seconds, 1),
                    }
            # Does a method's score rank the poison above the clean clips of its class (go),
            # whether or not its threshold fires? AUROC within the target class.
            in_go = np.asarray(classes) == "go"
            go_rows = [r for r, g in zip(results, in_go, strict=True) if g]
            if is_p.any():
                row["go_auroc"] = {
                    m: round(float(roc_auc_score(is_p[in_go], [r.scores[m] for r in go_rows])), 3)
                    for m in METHODS
                }
            row["suspect_classes"] = sorted({r.cls for r in results if r.class_suspect})
            for m in (*METHODS, "candidate", "combined"):
                hit = np.array(
                    [
                        r.flagged if m == "combined" else r.candidate if m == "candidate"
                        else m in r.reasons
                        for r in results
                    ]
                )  # fmt: skip
                row[m] = {
                    "recall": round(float(hit[is_p].mean()), 4) if is_p.any() else None,
                    "clean_flagged": round(float(hit[~is_p].mean()), 4),
                }
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(markdown(rows))


def write_dataset(root: Path, chosen: list[Clip], folders: list[str], x: FloatArray) -> Path:
    """The clips ``x`` as a Speech Commands folder: ``root/FOLDER/<speaker>_nohash_<i>.wav``
    (float WAV, read back bit for bit), with the background noise for the silence class."""
    for i, (clip, folder, samples) in enumerate(zip(chosen, folders, x, strict=True)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        wavfile.write(root / folder / f"{clip.speaker}_nohash_{i}.wav", 16000, samples)
    (root / NOISE_DIR).symlink_to(DATA / NOISE_DIR)
    return root


def go_rate(
    model: CommandClassifier,
    x: FloatArray,
    y: npt.NDArray[np.int64],
    trigger: Trigger,
    target: int,
) -> float:
    """Share of the clean clips of the word classes other than ``target``, with the trigger
    added, that ``model`` calls ``target``."""
    rng = np.random.default_rng(1)
    keep = np.flatnonzero((y != target) & (y < model.labels.index("_unknown_")))
    triggered = np.stack([trigger.apply(x[i], rng) for i in keep])
    feats = log_mel_from_samples(triggered)
    pred = np.concatenate(
        [
            model.predict(feats[i : i + 256]).probabilities.argmax(1)
            for i in range(0, len(feats), 256)
        ]
    )
    return float(np.mean(pred == target))


def markdown(rows: list[dict[str, Any]]) -> str:
    """Recall of the poisoned clips / share of clean clips flagged, per method, as candidates
    (before the class test) and combined; and the classes the test found suspect."""
    methods: tuple[str, ...] = (*METHODS, "candidate", "combined")
    if rows and "art_activation" in rows[0]:
        methods = (*methods, "art_activation", "art_spectral_signature")
    lines = [
        "| trigger | rate | poisoned | " + " | ".join(methods) + " | suspect classes |",
        "| --- | --- | --- |" + " --- |" * (len(methods) + 1),
    ]
    trained = bool(rows) and "trained" in rows[0]
    if trained:  # the model trained on the poisoned set: did it learn words, and the backdoor?
        lines[0] += " trained model: val. accuracy | triggered clips called go |"
        lines[1] += " --- | --- |"
    for r in rows:
        cells = []
        for m in methods:
            recall = "-" if r[m]["recall"] is None else f"{r[m]['recall']:.0%}"
            cell = f"{recall} / {r[m]['clean_flagged']:.1%}"
            cells.append(f"**{cell}**" if m == "combined" else cell)
        cells.append(", ".join(r.get("suspect_classes", [])) or "none")
        if trained:
            t = r["trained"]
            cells += [f"{t['validation_accuracy']:.1%}", f"{t['backdoor_go']:.1%}"]
        lines.append(
            f"| {r['trigger']} | {r['rate']:.1%} | {r['poisoned']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
