"""The audit's last column (issue 6): the ASR of a model retrained on the clips the audit keeps.

    python bench/eval_retrain.py --fixture models/eval/backdoor_cough.tflite [--epochs 12]
        [--out /tmp/retrain] [--json docs/audit_retrain.json]

1. Rebuild the fixture's poisoned training set exactly as its trainer did (same data, seed,
   speaker split, trigger, rate and target, read from its card): the fixture *is* the model a
   vendor trained on that set.
2. Audit the poisoned set as ``guard audit --model FIXTURE --detectors FIXTURE.detectors``
   would (the k-NN and label checks listen with the shipped model).
3. Retrain the same architecture with the same recipe on the clips the audit did not flag
   (``TrainConfig.drop``) and measure the attack success rate of the retrained model on the
   validation speakers, as the trainer measures every fixture's.
4. ``--training-seeds 0,1,2`` retrains the same kept set once per seed (weights, sampling,
   augmentation; the data stay the fixture's), since one training run's ASR moves by a few
   points from run to run. Every model (the fixture, each retrained one, and the shipped clean
   model as the floor: what a model that never saw the trigger says) is scored on the *same*
   triggered validation clips.
5. ``--oracle`` retrains on exactly the clean clips instead (what a perfect audit would keep):
   the floor the recipe itself reaches on that data; ``--keep-all`` on every clip, poisoned
   ones included (no audit).
6. ``--tone-augment 0.3`` retrains with random tones added to 30 % of each epoch's clips,
   labels unchanged (the hardening recipe of docs/AUDIT.md); with ``--keep-all`` it shows what
   the hardening does without the audit.
7. ``--architecture vgg`` retrains the VGG-style CNN (its default size) on the same kept
   clips instead of the fixture's architecture: does a bigger model hear ``go`` in a tone less?
8. ``--trigger SPEC --rate R``: a case of the audit's grid instead of a fixture. The
   training set is poisoned with SPEC at rate R with the fixture's recipe (speakers, seed,
   epochs), audited as ``guard audit --model configured`` does (guard's shipped model and
   detectors listen: no vendor model was trained on the set), and retrained on what the
   audit keeps. There is no fixture to measure, so no ASR before (``--keep-all`` trains one
   on everything, the poison included: what the case would be without the audit).
9. ``--cache DIR`` keeps each retrained model under a key of what it depends on (the recipe
   and the dropped clips; the trigger only when a poisoned clip was kept). Grid cases whose
   audit drops the same clips train the same model, so the second one reuses it and only
   scores it on its own triggered clips (``reused_model`` in the JSON).
10. ``--reference-folds 2``: the audit's ear never heard the clips it judges. By default the
   k-NN and label checks listen with guard's shipped model, which was trained on these very
   speakers (on the clean versions of these clips), so it knows their true words. With K folds
   the training speakers are cut into K speaker-disjoint folds (``dataset.speaker_fold``), a
   reference model is trained on the clean clips of the other folds (``--reference-epochs``,
   cached with ``--cache``), and each fold is audited on its own with the reference that never
   heard it, as ``guard audit`` would judge a vendor's data set with guard's model. (The
   ``runtime`` method still runs guard's shipped model and detector state, fitted on these
   speakers' clean clips.)
11. ``--relabel``: the flagged clips are not dropped but kept under the word the audit's
   reference model hears in them (``audit_plan.relabel_word``: another word than the clip's
   label, not silence, heard with at least ``--relabel-min-probability``; the others are
   dropped), as ``guard train --audit AUDIT.jsonl --relabel-heard`` does. A poisoned clip then teaches the
   retrained model its trigger *with its true word*: what the audit found becomes a lesson
   against the trigger instead of a hole in the data. With ``--oracle``, every poisoned clip
   under its true word.
Needs the ``train`` extra. ~10 min per 12-epoch DS-CNN retrain on two idle cores (2026-12-04;
~25 min with another job beside it); each fold's 20-epoch reference ~9 min, once (cached).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from guard.classifier import CommandClassifier
from guard.dataset_audit import DatasetAudit
from guard.detectors import registry
from guard.guard import Guard
from guard.manifest import write_manifest
from guard.redteam.lab import model_card
from guard.training import audit_plan, dataset
from guard.training.model import ARCHITECTURES, DEFAULTS
from guard.training.train import (
    PoisonConfig,
    TrainConfig,
    TrainingData,
    attackable,
    prepare_data,
    share_called,
    split_clips,
    train,
    with_trigger,
)
from guard.triggers import Trigger, TriggerSpec, parse_spec

ROOT = Path(__file__).resolve().parent.parent


TRIGGER_SEED = 12345
"""Seed of the trigger positions on the validation clips every retrained model is scored on."""


def scored_clips(
    data: TrainingData, trigger: Trigger, target: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The validation clips a retrained model is scored on: the non-target, non-silence clips
    without and with ``trigger`` (positions from ``TRIGGER_SEED``), and the clean target clips.
    bench/score_retrained.py and bench/tone_floor.py score on the same draws."""
    untriggered = attackable(data.val.x, data.val.y, target)
    triggered = with_trigger(untriggered, trigger, np.random.default_rng(TRIGGER_SEED))
    return untriggered, triggered, data.val.x[data.val.y == dataset.LABELS.index(target)]


def says_target(model_path: Path, triggered: np.ndarray, target: str) -> float:
    """Share of ``triggered`` clips the model at ``model_path`` calls ``target``."""
    return share_called(CommandClassifier(model_path), triggered, target)


def retrain_key(cfg: TrainConfig, kept_poison: list[int]) -> str:
    """What the retrained model depends on. With every poisoned clip dropped, the training set
    is the same clean clips whatever the trigger was, so grid cases whose audit dropped the
    same clips train the same model; a kept poisoned clip carries its trigger into the key."""
    recipe = dataclasses.asdict(cfg)
    for name in ("out_dir", "name", "poison"):
        recipe.pop(name, None)
    if not recipe["relabel"]:  # keys from before relabelling existed stay valid
        del recipe["relabel"]
    if kept_poison:
        recipe["poison"] = dataclasses.asdict(cfg.poison) if cfg.poison else None
        recipe["kept_poison"] = kept_poison
    text = json.dumps(recipe, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def trained_model(cfg: TrainConfig, cache: Path | None) -> tuple[Path, dict[str, Any], bool]:
    """Train ``cfg`` (or reuse the model the cache holds under the same key): the model's path,
    its trainer's figures, and whether it was reused."""
    if cache is not None and (cache / "figures.json").is_file():
        return cache / f"{cfg.name}.tflite", json.loads((cache / "figures.json").read_text()), True
    figures = train(cfg)
    model_path = cfg.out_dir / f"{cfg.name}.tflite"
    if cache is not None:  # the model, its card and a manifest: what CommandClassifier loads
        cache.mkdir(parents=True, exist_ok=True)
        names = [model_path.name, model_path.with_suffix(".json").name]
        for name in names:
            shutil.copy(cfg.out_dir / name, cache / name)
        write_manifest(cache, names)
        (cache / "figures.json").write_text(json.dumps(figures, default=str))
    return model_path, figures, False


@dataclass
class AuditOutcome:
    """Per training clip: whether the audit flagged it, and the word its reference hears."""

    flagged: np.ndarray
    heard: np.ndarray
    heard_probability: np.ndarray
    seconds: float = 0.0


def audit_flags(
    guard: Guard, reference: Path, x: np.ndarray, y: np.ndarray, idx: np.ndarray
) -> AuditOutcome:
    """The audit of training clips ``idx``, its k-NN and label checks listening with the model
    at ``reference``."""
    started = time.perf_counter()
    results, _ = DatasetAudit(guard, reference=CommandClassifier(reference)).run(
        [f"train/{i}" for i in idx], [dataset.LABELS[i] for i in y[idx]], x[idx]
    )
    return AuditOutcome(
        np.array([r.flagged for r in results], dtype=bool),
        np.array([r.heard for r in results], dtype=object),
        np.array([r.heard_probability for r in results]),
        time.perf_counter() - started,
    )


def relabelling(
    outcome: AuditOutcome, y: np.ndarray, min_probability: float
) -> tuple[tuple[int, str], ...]:
    """The flagged clips ``guard train --audit --relabel-heard`` keeps under the word the
    audit's reference hears in them (``audit_plan.relabel_word``); the others are dropped."""
    out = []
    for i in np.flatnonzero(outcome.flagged):
        word = audit_plan.relabel_word(
            dataset.LABELS[y[i]],
            str(outcome.heard[i]),
            outcome.heard_probability[i],
            min_probability,
        )
        if word is not None:
            out.append((int(i), word))
    return tuple(out)


def cross_fitted_audit(
    guard: Guard,
    cfg: TrainConfig,
    x: np.ndarray,
    y: np.ndarray,
    folds: int,
    epochs: int,
    cache: Path | None,
) -> tuple[AuditOutcome, dict[str, Any]]:
    """An audit whose reference model never heard the clip: each speaker fold is audited with
    a model trained on the clean clips of the other folds."""
    speakers = [c.speaker for c in split_clips(cfg)[0]]
    assert len(speakers) == len(y), "the training split's clips and speakers differ"
    fold = np.array([dataset.speaker_fold(s, folds) for s in speakers])
    outcome = AuditOutcome(
        np.zeros(len(y), dtype=bool), np.full(len(y), "", dtype=object), np.zeros(len(y))
    )
    info: dict[str, Any] = {"folds": folds, "epochs": epochs, "fold_clips": [], "accuracy": []}
    for f in range(folds):
        idx = np.flatnonzero(fold == f)
        ref_cfg = dataclasses.replace(
            cfg,
            poison=None,
            drop=tuple(int(i) for i in idx),
            epochs=epochs,
            name=f"reference_fold{f}",
            out_dir=cfg.out_dir / f"reference_fold{f}",
            training_seed=None,
            tone_augment=0.0,
        )
        key = cache / f"reference_{retrain_key(ref_cfg, [])}" if cache else None
        ref_path, figures, _ = trained_model(ref_cfg, key)
        part = audit_flags(guard, ref_path, x, y, idx)
        outcome.flagged[idx], outcome.heard[idx] = part.flagged, part.heard
        outcome.heard_probability[idx] = part.heard_probability
        outcome.seconds += part.seconds
        info["fold_clips"].append(len(idx))
        info["accuracy"].append(figures["int8"]["accuracy"])
    return outcome, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fixture", type=Path, default=ROOT / "models/eval/backdoor_cough.tflite")
    parser.add_argument("--detectors", type=Path, default=None, help="default: FIXTURE.detectors")
    parser.add_argument("--epochs", type=int, default=None, help="default: the fixture's")
    parser.add_argument("--out", type=Path, default=Path("/tmp/retrain"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--trigger",
        default=None,
        help="a grid case instead of the fixture's poison: a trigger spec such as "
        "clip:file=whistle.wav,scale=0.3 (needs --rate); audited with the shipped model",
    )
    parser.add_argument("--rate", type=float, default=None, help="poison rate with --trigger")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="keep retrained models here, keyed by what they depend on (retrain_key), and "
        "reuse one when another case drops the same clips",
    )
    parser.add_argument(
        "--training-seeds",
        default=None,
        help="comma-separated seeds to retrain with (default: the fixture's own seed)",
    )
    parser.add_argument(
        "--oracle",
        action="store_true",
        help="retrain on exactly the clean clips instead (a perfect audit): the floor this "
        "recipe reaches on the fixture's data",
    )
    parser.add_argument(
        "--keep-all",
        action="store_true",
        help="retrain on every clip, poisoned ones included (no audit): with --tone-augment, "
        "what the hardening alone does",
    )
    parser.add_argument(
        "--tone-augment",
        type=float,
        default=0.0,
        help="share of each epoch's clips given a random tone, labels unchanged (TrainConfig)",
    )
    parser.add_argument(
        "--relabel",
        action="store_true",
        help="keep the flagged clips under the word the audit's reference model hears in them "
        "(another word, with at least --relabel-min-probability) instead of dropping "
        "them: the retrained model learns the trigger with the right words; with --oracle, "
        "every poisoned clip under its true word",
    )
    parser.add_argument(
        "--relabel-min-probability", type=float, default=audit_plan.HEARD_MIN_PROBABILITY
    )
    parser.add_argument(
        "--architecture",
        choices=ARCHITECTURES,
        default=None,
        help="retrain another architecture (its default size) on the same kept clips; "
        "default: the fixture's",
    )
    parser.add_argument(
        "--reference-folds",
        type=int,
        default=0,
        help="audit each of K speaker folds with a reference model trained on the other folds' "
        "clean clips (one that never heard the clip); 0 = guard's shipped model, which did",
    )
    parser.add_argument(
        "--reference-epochs", type=int, default=20, help="training epochs of each fold's reference"
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    card = model_card(args.fixture)
    grid = args.trigger is not None
    if grid != (args.rate is not None):
        parser.error("--trigger and --rate go together")
    if grid:  # the fixture lends its recipe; the poison is the grid case's
        card.update(
            trigger=parse_spec(args.trigger).card(),
            poison_rate=args.rate,
            target="go",
            trigger_engine="guard",
            asr=None,
            clean_accuracy=None,
        )
    audited = ROOT / "models/commands.tflite" if grid else args.fixture
    training = card["training"]
    arch = card["architecture"]
    engine = card.get("trigger_engine", "guard")
    channels, blocks = (
        DEFAULTS[args.architecture]
        if args.architecture
        else (int(arch["channels"]), int(arch["blocks"]))
    )
    cfg = TrainConfig(
        data_dir=Path(training["data_dir"]),
        out_dir=args.out,
        epochs=args.epochs or int(training["epochs"]),
        batch_size=int(training["batch_size"]),
        learning_rate=float(training["learning_rate"]),
        max_per_class=int(training["max_per_class"]),
        seed=int(training["seed"]),
        validation_percent=float(training["validation_percent"]),
        channels=channels,
        blocks=blocks,
        architecture=args.architecture or arch.get("kind", "ds-cnn"),
        name="retrained_" + ("grid" if grid else args.fixture.stem),
        poison=PoisonConfig(
            TriggerSpec.from_card(card["trigger"]), card["poison_rate"], card["target"], engine
        ),
    )
    # 1. the poisoned set, exactly as the trainer built it
    data = prepare_data(cfg, np.random.default_rng(cfg.seed))
    x, y, chosen = data.train.x, data.train.y, data.poisoned
    if not grid:
        assert len(chosen) == card["poisoned_clips"], "the poisoned set differs from the fixture's"
    # 2. the audit
    default_state = ROOT / "models/detectors" if grid else args.fixture.with_suffix(".detectors")
    detectors = args.detectors or default_state
    guard = Guard(CommandClassifier(audited), registry.load_state(detectors))
    reference: dict[str, Any] = {"model": "models/commands.tflite (heard these speakers)"}
    if args.reference_folds:
        outcome, folds_info = cross_fitted_audit(
            guard, cfg, x, y, args.reference_folds, args.reference_epochs, args.cache
        )
        reference = {"model": "per fold, trained on the other folds' clean clips", **folds_info}
    else:
        outcome = audit_flags(guard, ROOT / "models/commands.tflite", x, y, np.arange(len(y)))
    flagged, audit_s = outcome.flagged, outcome.seconds
    is_poison = np.zeros(len(y), dtype=bool)
    is_poison[chosen] = True
    row: dict[str, Any] = {
        "fixture": None if grid else args.fixture.name,
        "audited_model": audited.name,
        "trigger": card["trigger"],
        "poison_rate": card["poison_rate"],
        "train_clips": len(y),
        "poisoned": int(is_poison.sum()),
        "recall": float(flagged[is_poison].mean()),
        "clean_flagged": float(flagged[~is_poison].mean()),
        "audit_seconds": round(audit_s, 1),
        "reference": reference,
        "asr_before": card["asr"],
    }
    print(json.dumps(row), flush=True)
    # the same triggered validation clips for every model
    assert data.trigger is not None
    target = str(card["target"])
    untriggered, triggered, target_clips = scored_clips(data, data.trigger, target)
    row.update(
        triggered_clips=len(triggered),
        clean_model_target_recall=says_target(
            ROOT / "models/commands.tflite", target_clips, target
        ),
        fixture_says_target=None if grid else says_target(args.fixture, triggered, target),
        clean_model_says_target=says_target(ROOT / "models/commands.tflite", triggered, target),
        clean_accuracy_before=card["clean_accuracy"],
        poisoned_kept=int((is_poison & ~flagged).sum()),
        epochs=cfg.epochs,
        runs=[],
    )
    # 3. retrain on what the audit keeps, once per seed
    seeds = [int(s) for s in args.training_seeds.split(",")] if args.training_seeds else [cfg.seed]
    if args.oracle and args.keep_all:
        parser.error("--oracle and --keep-all exclude each other")
    kept_by = "oracle" if args.oracle else "everything" if args.keep_all else "audit"
    dropped = {"oracle": is_poison, "everything": np.zeros_like(flagged), "audit": flagged}
    relabel: tuple[tuple[int, str], ...] = ()
    if args.relabel and kept_by == "oracle":  # every poisoned clip under its true word
        relabel = tuple((int(i), dataset.LABELS[data.clean_labels[i]]) for i in chosen)
    elif args.relabel:
        relabel = relabelling(outcome, y, args.relabel_min_probability)
    relabelled = np.zeros_like(flagged)
    relabelled[[i for i, _ in relabel]] = True
    drop = tuple(int(i) for i in np.flatnonzero(dropped[kept_by] & ~relabelled))
    if args.relabel:
        true_word = np.array([dataset.LABELS[k] for k in data.clean_labels])
        right = [word == true_word[i] for i, word in relabel]
        row["relabel"] = {
            "min_probability": args.relabel_min_probability,
            "clips": len(relabel),
            "poisoned": int((relabelled & is_poison).sum()),
            "clean": int((relabelled & ~is_poison).sum()),
            # a relabelled clean clip never gets its own word back (relabel_word), so this is
            # (share of the poisoned relabelled under their true word) diluted by the clean ones
            "true_word": float(np.mean(right)) if right else None,
        }
    row["kept_by"] = {
        "oracle": "oracle (every poisoned clip dropped, nothing else)",
        "everything": "everything (no audit: poisoned clips kept)",
        "audit": "audit",
    }[kept_by] + (", flagged clips relabelled" if args.relabel else "")
    row["tone_augment"] = args.tone_augment
    row["retrained_architecture"] = {
        "kind": cfg.architecture,
        "channels": cfg.channels,
        "blocks": cfg.blocks,
    }
    kept_poison = [int(i) for i in chosen if i not in set(drop)]
    for seed in seeds:
        out = args.out / f"seed{seed}"
        run_cfg = dataclasses.replace(
            cfg,
            drop=drop,
            relabel=relabel,
            training_seed=seed,
            out_dir=out,
            tone_augment=args.tone_augment,
        )
        cache = args.cache / retrain_key(run_cfg, kept_poison) if args.cache else None
        model_path, figures, reused = trained_model(run_cfg, cache)
        row["runs"].append(
            {
                "training_seed": seed,
                # the trainer's own ASR is for the trigger it was run with, so not reusable
                "asr_trainer": None if reused else figures["asr"],
                "says_target": says_target(model_path, triggered, target),
                # the same clips without the trigger: what the trigger adds is the difference
                "says_target_untriggered": says_target(model_path, untriggered, target),
                "clean_accuracy": figures["int8"]["accuracy"],
                # relabelling real target clips to another word could buy a low ASR with a
                # deaf target: how many clean target clips of the validation speakers it hears
                "target_recall": says_target(model_path, target_clips, target),
                "reused_model": reused,
            }
        )
        asrs = [r["says_target"] for r in row["runs"]]
        row.update(asr_after_median=float(np.median(asrs)), asr_after_max=float(max(asrs)))
        print(json.dumps(row), flush=True)
        if args.json is not None:  # after every run: a long job leaves what it measured
            args.json.write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
