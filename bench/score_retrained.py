"""Every model bench/eval_retrain.py cached, scored on the same validation clips: how often it
says the target with one trigger added, without it, and on the target's own clean clips.

    python bench/score_retrained.py --cache /tmp/retrain_cache \
        [--trigger tone:frequency_hz=440,duration_s=0.25,scale=0.1] [--json docs/eval/retrained_models.json]

A retrained model's ASR moves with how readily it says the target at all: a model that hears
``go`` less (a lower target recall) also says it less to triggered clips. Reading the ASR next
to the same clips *untriggered* and to the target recall tells a lesson against the trigger
from a deafer target. The clips and the trigger draws are eval_retrain's (the fixture's
validation speakers, ``eval_retrain.scored_clips``), so the triggered column repeats its ASR for
models poisoned with ``--trigger``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from eval_retrain import scored_clips
from scipy.stats import spearmanr

from guard.classifier import CommandClassifier
from guard.redteam.lab import model_card
from guard.training.train import TrainConfig, prepare_data, share_called
from guard.triggers import make_trigger, parse_spec

ROOT = Path(__file__).resolve().parent.parent


def describe(figures: dict[str, Any]) -> dict[str, Any]:
    """What a cached model was trained on, from its trainer's figures."""
    poison = figures.get("poison") or {}
    trigger = poison.get("trigger") or {}
    name = trigger.get("file") or trigger.get("style") or trigger.get("frequency_hz")
    info = figures["info"]
    return {
        "poison": f"{name} {poison['poison_rate']:.0%}" if poison else "none (reference)",
        "trigger": trigger or None,
        "dropped": info.get("dropped_clips", 0),
        "relabelled": info.get("relabelled_clips", 0),
        "poisoned_kept": (poison.get("poisoned_clips_kept") or 0)
        - (poison.get("poisoned_clips_relabelled") or 0)
        if poison
        else None,
        "accuracy": figures["int8"]["accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/retrain_cache"))
    parser.add_argument("--trigger", default="tone:frequency_hz=440,duration_s=0.25,scale=0.1")
    parser.add_argument("--fixture", type=Path, default=ROOT / "models/eval/backdoor_cough.tflite")
    parser.add_argument("--target", default="go")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    training = model_card(args.fixture)["training"]
    cfg = TrainConfig(
        data_dir=Path(training["data_dir"]),
        out_dir=Path("/tmp/unused"),
        max_per_class=int(training["max_per_class"]),
        seed=int(training["seed"]),
        validation_percent=float(training["validation_percent"]),
    )
    data = prepare_data(cfg, np.random.default_rng(cfg.seed))
    trigger = make_trigger(parse_spec(args.trigger), cfg.data_dir.parent / "triggers", "guard")
    clean, triggered, target_clips = scored_clips(data, trigger, args.target)
    models = [("shipped", ROOT / "models/commands.tflite", None)]
    for figures_path in sorted(args.cache.glob("*/figures.json")):
        found = sorted(figures_path.parent.glob("*.tflite"))
        if found:
            models.append((figures_path.parent.name, found[0], figures_path))
    rows = []
    for key, path, figures_path in models:
        clf = CommandClassifier(path)
        row: dict[str, Any] = {"model": key}
        if figures_path is not None:
            row.update(describe(json.loads(figures_path.read_text())))
        row.update(
            says_target_triggered=share_called(clf, triggered, args.target),
            says_target_untriggered=share_called(clf, clean, args.target),
            target_recall=share_called(clf, target_clips, args.target),
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        f"\n{len(clean)} clips, {len(target_clips)} clean {args.target} clips; trigger {args.trigger}"
    )
    print(
        "| model | trained on (poison) | dropped | relabelled | poisoned kept as target | accuracy "
        f"| says {args.target}, triggered | untriggered | {args.target} recall |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['model']} | {r.get('poison', 'shipped')} | {r.get('dropped', '-')} "
            f"| {r.get('relabelled', '-')} | {r.get('poisoned_kept', '-')} "
            f"| {r.get('accuracy', float('nan')):.1%} | {r['says_target_triggered']:.2%} "
            f"| {r['says_target_untriggered']:.2%} | {r['target_recall']:.1%} |"
        )
    # Models that never trained on a clip carrying this trigger: how the share saying the
    # target to the triggered clips follows the target recall without any lesson either way.
    spec = parse_spec(args.trigger).card()
    unseen = [
        r
        for r in rows
        if r["model"] != "shipped"
        and not (r.get("trigger") == spec and (r["poisoned_kept"] or r["relabelled"]))
    ]
    rho = spearmanr(
        [r["target_recall"] for r in unseen], [r["says_target_triggered"] for r in unseen]
    )
    print(
        f"\nmodels that never trained on a clip with this trigger: {len(unseen)}; Spearman "
        f"correlation of {args.target} recall and the triggered share {rho.statistic:.2f} "
        f"(p = {rho.pvalue:.4f})"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"trigger": args.trigger, "clips": len(clean), "rows": rows}, indent=1)
            + "\n"
        )


if __name__ == "__main__":
    main()
