"""The audit grid's retrained-ASR table (docs/AUDIT.md) from ``bench/eval_retrain.py`` JSONs.

    python bench/retrain_grid_table.py [FOLDER ...]
        (default: docs/audit_retrain_grid and docs/audit_retrain_grid_crossfit)

First a table of the grid as the cross-fitted audit leaves it (one row per trigger and rate:
the retrained ASR with the flagged clips dropped, and with them relabelled by the word the
reference hears, ``--relabel``; several training seeds side by side), then the relabelled
runs beside the dropped ones, then every run on a row of its own. Each JSON is one grid case
(``eval_retrain.py --trigger SPEC --rate R --json ...``): the training set poisoned with SPEC at rate R, audited with guard's shipped model, and a model
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
    "| kept by | training seed | **retrained ASR** | never-poisoned model "
    "| retrained clean accuracy |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
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
        f"| {case['kept_by'].split(' (')[0]} "
        f"| {', '.join(str(r['training_seed']) for r in case['runs'])} | **{asr:.2%}**{mark} "
        f"| {case['clean_model_says_target']:.2%} | {min(accuracy):.1%} |"
    )


GRID_HEADER = (
    "| trigger | rate | poisoned | audit recall | clean flagged | poisoned kept "
    "| **retrained ASR**, flagged dropped | **retrained ASR**, flagged relabelled "
    "| never-poisoned model |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def asr_cell(cases: list[dict[str, Any]]) -> str:
    """The retrained ASR of one or more runs of a grid case (one per training seed)."""
    if not cases:
        return "not run"
    asrs = [float(r["says_target"]) for c in cases for r in c["runs"]]
    text = " / ".join(f"{a:.2%}" for a in asrs)
    return f"**{text}**" + (" (above 2 %)" if max(asrs) > TARGET_ASR else "")


def grid(cases: list[dict[str, Any]]) -> list[str]:
    """One row per (trigger, rate) audited by the cross-fitted ear: its ASR when the retrain
    drops the flagged clips and when it keeps them under the word the reference hears."""
    by_case: dict[tuple[str, float], dict[str, list[dict[str, Any]]]] = {}
    for c in cases:
        if not c.get("reference", {}).get("folds") or not c["kept_by"].startswith("audit"):
            continue
        how = "relabel" if "relabelled" in c["kept_by"] else "drop"
        key = (trigger_name(c["trigger"]), float(c["poison_rate"]))
        by_case.setdefault(key, {"drop": [], "relabel": []})[how].append(c)
    rows = []
    for (name, rate), runs in sorted(by_case.items()):
        first = (runs["drop"] or runs["relabel"])[0]
        rows.append(
            f"| {name} | {rate:.0%} | {first['poisoned']} | {first['recall']:.1%} "
            f"| {first['clean_flagged']:.2%} | {first['poisoned_kept']} "
            f"| {asr_cell(runs['drop'])} | {asr_cell(runs['relabel'])} "
            f"| {first['clean_model_says_target']:.2%} |"
        )
    return rows


RELABEL_HEADER = (
    "| case | relabelled: poisoned / clean | poisoned relabelled to their true word "
    "| **retrained ASR**, dropped | **retrained ASR**, relabelled | relabelled, untriggered "
    "| relabelled: `go` recall | relabelled: clean accuracy |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- |"
)


def relabelled(cases: list[dict[str, Any]]) -> list[str]:
    """Each cross-fitted case run with ``--relabel``: what was relabelled and how right, and the
    retrained models beside the same case with the flagged clips dropped."""
    out = []
    for c in cases:
        if "relabelled" not in c["kept_by"] or not c.get("reference", {}).get("folds"):
            continue
        name = f"{trigger_name(c['trigger'])} {c['poison_rate']:.0%}"
        if c.get("fixture"):
            name = f"fixture {Path(c['fixture']).stem} ({name})"
        name += f", seed {', '.join(str(x['training_seed']) for x in c['runs'])}"
        same = [
            d
            for d in cases
            if d["kept_by"] == "audit"
            and d.get("reference", {}).get("folds")
            and d["trigger"] == c["trigger"]
            and d["poison_rate"] == c["poison_rate"]
            and d.get("fixture") == c.get("fixture")
        ]
        r = c["relabel"]
        # a relabelled clean clip never gets its own word back: the right ones are poisoned
        right = r["true_word"] * r["clips"] / max(r["poisoned"], 1)
        runs = c["runs"]
        out.append(
            f"| {name} | {r['poisoned']} / {r['clean']} | {right:.1%} "
            f"| {asr_cell(same)} | {asr_cell([c])} "
            f"| {' / '.join(_pct(x.get('says_target_untriggered')) for x in runs)} "
            f"| {' / '.join(_pct(x.get('target_recall'), 1) for x in runs)} "
            f"| {' / '.join(_pct(x['clean_accuracy'], 1) for x in runs)} |"
        )
    return out


def _pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


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
    print("The grid, audited by an ear that never heard the clips (2 speaker folds):\n")
    print(GRID_HEADER)
    print("\n".join(grid(cases)))
    cases.sort(
        key=lambda c: (
            trigger_name(c["trigger"]),
            c["kept_by"] != "audit",
            c["poison_rate"],
            ear(c),
            c["kept_by"],
            [r["training_seed"] for r in c["runs"]],
        )
    )
    folders = {p.parent for f in args.folders for p in f.glob("*.json")}
    fixtures = [
        json.loads(p.read_text())
        for p in sorted((ROOT / "docs").glob("audit_retrain_*_relabel*.json"))
        if p.parent not in folders
    ]
    print("\nRelabelled (--relabel) beside dropped, same cases:\n")
    print(RELABEL_HEADER)
    print("\n".join(relabelled(cases + fixtures)))
    print("\nEvery run, one row each:\n")
    print(HEADER)
    for case in cases:
        print(row(case))


if __name__ == "__main__":
    main()
