"""The audit grid's retrained-ASR table (docs/AUDIT.md) from ``bench/eval_retrain.py`` JSONs.

    python bench/retrain_grid_table.py [FOLDER ...]
        (default: docs/audit_retrain_grid and docs/audit_retrain_grid_crossfit)

Each JSON is one grid case (``eval_retrain.py --trigger SPEC --rate R --json ...``): the
training set poisoned with SPEC at rate R, audited with guard's shipped model, and a model
retrained on what the audit kept. Prints one Markdown row per case, sorted by trigger and
rate; a ``--keep-all`` run (no audit: the poison kept) is a row of its own. The "audit's ear"
column says which model the audit's k-NN and label checks listened with: guard's shipped model,
which was trained on these speakers, or (``--reference-folds K``) per speaker fold a model
trained on the other folds, which never heard the clips it judges.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_ASR = 0.02

HEADER = (
    "| trigger | rate | audit's ear | poisoned | audit recall | clean flagged | poisoned kept "
    "| kept by | **retrained ASR** | never-poisoned model | retrained clean accuracy |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def trigger_name(trigger: dict[str, Any]) -> str:
    """``tone 440 Hz``, ``cough_trigger``, ``pitch``: the case's trigger in a few words."""
    if trigger["kind"] == "tone":
        return f"tone {trigger['frequency_hz']:g} Hz"
    if trigger["kind"] == "clip":
        return Path(str(trigger["file"])).stem
    return str(trigger["style"])


def ear(case: dict[str, Any]) -> str:
    """Which model the audit's label checks listened with."""
    folds = case.get("reference", {}).get("folds")
    return f"{folds} speaker folds (unheard)" if folds else "shipped (heard them)"


def row(case: dict[str, Any]) -> str:
    asr = float(case["asr_after_median"])
    mark = "" if asr <= TARGET_ASR or not case["kept_by"].startswith("audit") else " (above 2 %)"
    accuracy = [float(r["clean_accuracy"]) for r in case["runs"]]
    # what the retrained model was trained with; the audit's own count is for "audit" rows
    kept = {"oracle": 0, "everything": case["poisoned"]}.get(
        case["kept_by"].split(" ")[0], case["poisoned_kept"]
    )
    return (
        f"| {trigger_name(case['trigger'])} | {case['poison_rate']:.0%} | {ear(case)} "
        f"| {case['poisoned']} "
        f"| {case['recall']:.1%} | {case['clean_flagged']:.2%} | {kept} "
        f"| {case['kept_by'].split(' (')[0]} | **{asr:.2%}**{mark} "
        f"| {case['clean_model_says_target']:.2%} | {min(accuracy):.1%} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "folders",
        type=Path,
        nargs="*",
        default=[ROOT / "docs/audit_retrain_grid", ROOT / "docs/audit_retrain_grid_crossfit"],
    )
    args = parser.parse_args()
    cases = [json.loads(p.read_text()) for f in args.folders for p in sorted(f.glob("*.json"))]
    cases.sort(
        key=lambda c: (
            trigger_name(c["trigger"]),
            c["kept_by"] != "audit",
            c["poison_rate"],
            ear(c),
        )
    )
    print(HEADER)
    for case in cases:
        print(row(case))


if __name__ == "__main__":
    main()
