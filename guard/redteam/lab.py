"""``guard lab``: the red team's bench, offline, under the ``redteam`` (and ``train``) extras.

- ``poison-train``: a backdoored model as an untrusted vendor would build it (dirty-label
  poisoning with ART's triggers), with its card under ``models/eval``;
- ``attack``: evaluation sets for one model: clean clips of unheard speakers, the same clips
  with the model's trigger, adversarial versions from ART (white-box on the float twin,
  HopSkipJump black-box on the TFLite model), saved as plain arrays (``.npz``) and an index;
- ``evaluate``: guard on those sets (per family: blocked, clean false-block, AUROC, attack
  success without and with guard), ART's ``STRIP``, ``ActivationDefence`` and
  ``SpectralSignatureDefense`` side by side on the same model and inputs, ROC curves as PNG,
  one Markdown report;
- ``adaptive``: an attacker who knows guard turns the trigger down until guard misses it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from guard import devdata
from guard.analysis import analyse_batch
from guard.classifier import CommandClassifier
from guard.detectors import registry
from guard.errors import GuardError
from guard.guard import Guard
from guard.manifest import verified_bytes
from guard.paths import default_model_path
from guard.redteam.metrics import (
    AttackOutcome,
    auroc,
    backdoor_success,
    evasion_success,
    percent_interval,
    roc_curve,
    wilson_interval,
)
from guard.triggers import Trigger, TriggerSpec, make_trigger

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float32]
INDEX_NAME = "sets.json"
MIN_SNR_DB = 25.0
"""Adversarial examples count only when at least this quiet (the issue's budget)."""


def _say(message: str) -> None:
    print(f"guard lab: {message}", file=sys.stderr, flush=True)


def model_card(model_path: Path) -> dict[str, Any]:
    """The model's ``NAME.json`` (verified against its folder's manifest)."""
    meta: dict[str, Any] = json.loads(verified_bytes(model_path.with_suffix(".json")))
    return meta


def card_trigger(card: dict[str, Any], triggers_dir: Path, scale: float | None = None) -> Trigger:
    """The trigger an attack fixture learned, inserted the way it was poisoned."""
    fields = card["trigger"] if scale is None else {**card["trigger"], "scale": scale}
    engine = card.get("trigger_engine", card.get("poison", {}).get("trigger_engine", "guard"))
    return make_trigger(TriggerSpec.from_card(fields), triggers_dir, engine)


# --- evaluation sets ----------------------------------------------------------------------


@dataclass
class EvalSet:
    """One family of inputs: ``audio`` (n, 16000) float32 and, for attacks built from the
    clean set, ``source`` (the clean clip each one came from) and ``snr_db``."""

    name: str
    kind: str  # clean | calibrate | trigger | adversarial
    audio: FloatArray
    description: str
    source: npt.NDArray[np.int64]
    snr_db: npt.NDArray[np.float64]

    def save(self, directory: Path) -> dict[str, Any]:
        np.savez(
            directory / f"{self.name}.npz",
            audio=self.audio.astype(np.float32),
            source=self.source,
            snr_db=self.snr_db,
        )
        finite = self.snr_db[np.isfinite(self.snr_db)]
        return {
            "file": f"{self.name}.npz",
            "kind": self.kind,
            "n": len(self.audio),
            "description": self.description,
            "snr_db_median": round(float(np.median(finite)), 1) if finite.size else None,
        }


def load_sets(directory: Path) -> tuple[dict[str, Any], dict[str, EvalSet]]:
    """The index and every set of a ``guard lab attack`` output folder (no pickle)."""
    index_path = directory / INDEX_NAME
    try:
        index: dict[str, Any] = json.loads(index_path.read_text())
    except FileNotFoundError:
        raise GuardError(f"{index_path}: not found; run guard lab attack first") from None
    except json.JSONDecodeError as exc:
        raise GuardError(f"{index_path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(index.get("sets"), dict):
        raise GuardError(f"{index_path}: no 'sets' table; run guard lab attack again")
    sets = {}
    for name, entry in index["sets"].items():
        path = directory / entry["file"]
        if not path.exists():
            raise GuardError(f"{path}: set {name!r} listed in {index_path} is missing")
        with np.load(path, allow_pickle=False) as data:
            sets[name] = EvalSet(
                name,
                entry["kind"],
                data["audio"],
                entry["description"],
                data["source"],
                data["snr_db"],
            )
    return index, sets


def attack(
    model_path: Path,
    data_dir: Path,
    out_dir: Path,
    n: int = 200,
    attacks: Sequence[str] = (),
    n_blackbox: int = 40,
    target: str | None = None,
    seed: int = 0,
    command_line: str = "",
    reference: Path | None = None,
) -> dict[str, Any]:
    """Build the evaluation sets for ``model_path`` into ``out_dir``; returns the index.

    ``reference``: guard's own model, which ``pgd_ear`` attacks (default: the shipped one)."""
    from guard.redteam.adversarial import ATTACKS, WHITE_BOX, snr_db

    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown:
        raise GuardError(f"unknown attack {unknown[0]!r}; known: {', '.join(ATTACKS)}")
    model = CommandClassifier(model_path)
    card = model_card(model_path)
    target = target or card.get("target", "go")
    keep = [lab for lab in model.labels if lab not in (target, "_silence_")]
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)

    def part(name: str, part_seed: int) -> FloatArray:
        chosen = [c for c in devdata.clips(data_dir, name, seed=part_seed) if c.label in keep]
        if not chosen:
            raise GuardError(f"{data_dir}: no clips of the {name!r} speakers")
        return devdata.audio(chosen[:n])

    clean = part("evaluate", seed + 1)
    nan = np.full(len(clean), np.nan)
    sets = [
        EvalSet(
            "clean",
            "clean",
            clean,
            "clean commands of unheard speakers (no target, no silence)",
            np.arange(len(clean)),
            nan,
        ),
        EvalSet(
            "calibrate",
            "calibrate",
            part("calibrate", seed + 2),
            "clean commands of other unheard speakers: thresholds of the defences compared",
            np.arange(0),
            np.full(0, np.nan),
        ),
    ]
    triggered: FloatArray | None = None
    if card.get("trigger"):
        trigger = card_trigger(card, data_dir.parent / "triggers")
        triggered = np.stack([trigger.apply(x, rng) for x in clean])
        sets.append(
            EvalSet(
                "trigger",
                "trigger",
                triggered,
                f"the clean set with the learned trigger {json.dumps(TriggerSpec.from_card(card['trigger']).to_json())}",
                np.arange(len(clean)),
                snr_db(clean, triggered),
            )
        )
    white = [a for a in attacks if a in WHITE_BOX]
    if white or "pgd_eot" in attacks:
        from guard.redteam.adversarial import art_classifier
        from guard.redteam.twin import load_twin

        twin = art_classifier(load_twin(model_path, logits=True))
        for name in white:
            count = max(8, len(clean) // 3) if name == "cw_l2" else len(clean)
            sets.append(_adversarial(name, twin, clean[:count], "white-box on the float twin"))
        if "pgd_eot" in attacks:
            from guard.redteam.eot import eot_logits

            eot = art_classifier(eot_logits(model_path))
            how = "adaptive: through the consistency detector's transforms, on the float twin"
            count = max(8, len(clean) // 3)  # 8 forward passes per step: the slowest
            sets.append(_adversarial("pgd", eot, clean[:count], how, name="pgd_eot"))
    if "pgd_ear" in attacks:
        if triggered is None:
            raise GuardError(
                f"{model_path}: pgd_ear needs a backdoored model (its card names no trigger)"
            )
        ear = reference or default_model_path()
        sets.append(_past_the_second_ear(triggered, ear, target))
    if "hopskipjump" in attacks:
        from guard.redteam.adversarial import blackbox_classifier

        sets.append(
            _adversarial(
                "hopskipjump",
                blackbox_classifier(model),
                clean[:n_blackbox],
                "black-box, queries the int8 TFLite model only",
            )
        )
    index: dict[str, Any] = {
        "model": str(model_path),
        "model_sha256": model.sha256,
        "target": target,
        "data": str(data_dir),
        "seed": seed,
        "n": n,
        "command_lines": [command_line],
        "sets": {s.name: s.save(out_dir) for s in sets},
    }
    # Attacks already in the folder for the same model and clean clips are kept, so one more
    # attack can be added without running the others again.
    old_path = out_dir / INDEX_NAME
    if old_path.exists():
        try:
            old = json.loads(old_path.read_text())
        except json.JSONDecodeError as exc:
            raise GuardError(f"{old_path}: not JSON ({exc.msg}); remove it or pick --out") from None
        same = all(old.get(k) == index[k] for k in ("model_sha256", "data", "seed", "n", "target"))
        if same:
            for name, entry in old["sets"].items():
                if name not in index["sets"] and (out_dir / entry["file"]).exists():
                    index["sets"][name] = entry
            index["command_lines"] = [*old.get("command_lines", []), command_line]
    (out_dir / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    return index


def _adversarial(
    attack: str, classifier: Any, x: FloatArray, how: str, name: str | None = None
) -> EvalSet:
    from guard.redteam.adversarial import generate, snr_db

    name = name or attack
    started = time.perf_counter()
    x_adv = generate(attack, classifier, x)
    seconds = time.perf_counter() - started
    _say(f"attack {name}: {len(x)} clips in {seconds:.1f} s")
    return EvalSet(
        f"adv_{name}",
        "adversarial",
        x_adv,
        f"ART {attack} ({how}), untargeted",
        np.arange(len(x)),
        snr_db(x, x_adv),
    )


def _past_the_second_ear(triggered: FloatArray, reference: Path, target: str) -> EvalSet:
    """The adaptive attacker who knows the second ear: the triggered clips (the vendor's model
    hears the target) plus a targeted PGD, at 25 dB below the triggered clip, that makes guard's
    own reference model hear the target as well. The reference is public (it ships with
    guard), so its float twin is a fair white box."""
    from guard.redteam.adversarial import art_classifier, generate, snr_db
    from guard.redteam.twin import load_twin

    ref = CommandClassifier(reference)
    twin = art_classifier(load_twin(reference, logits=True))
    started = time.perf_counter()
    x_adv = generate("pgd", twin, triggered, target_index=ref.labels.index(target))
    _say(f"attack pgd_ear: {len(x_adv)} clips in {time.perf_counter() - started:.1f} s")
    return EvalSet(
        "adv_pgd_ear",
        "trigger",
        x_adv,
        f"adaptive: the learned trigger plus ART PGD targeted at {target!r} on the float twin "
        f"of guard's reference model {reference.name} (past the second ear), 25 dB below the "
        "triggered clip",
        np.arange(len(x_adv)),
        snr_db(triggered, x_adv),
    )


# --- evaluation -----------------------------------------------------------------------------


@dataclass
class Scored:
    labels: list[str]
    scores: dict[str, npt.NDArray[np.float64]]
    """Detector -> score per clip (NaN where the detector failed)."""
    fired: dict[str, npt.NDArray[np.bool_]]
    blocked: npt.NDArray[np.bool_]
    ms_per_input: float


def score(guard: Guard, x: FloatArray) -> Scored:
    """Each clip through ``Guard.decide``, the daemon's own decision path (fail closed
    included); the verdicts' scores and reasons give the per-detector columns."""
    started = time.perf_counter()
    verdicts = [guard.decide(a, time.perf_counter()) for a in analyse_batch(x, guard.model)]
    ms = (time.perf_counter() - started) * 1000 / max(1, len(x))
    names = [d.name for d in guard.detectors]
    return Scored(
        [v.label for v in verdicts],
        {n: np.array([v.scores.get(n, np.nan) for v in verdicts]) for n in names},
        {n: np.array([n in v.reasons or n in v.errors for v in verdicts], bool) for n in names},
        np.array([not v.allowed for v in verdicts], dtype=bool),
        ms,
    )


def load_guard(model_path: Path, detectors_dir: Path) -> Guard:
    model = CommandClassifier(model_path)
    fitted_for = registry.read_report(detectors_dir).get("model_sha256")
    if fitted_for != model.sha256:
        raise GuardError(
            f"{detectors_dir}: detectors were fitted for another model, not {model_path}"
        )
    return Guard(model, registry.load_state(detectors_dir))


def evaluate(
    sets_dir: Path,
    detectors_dir: Path,
    report_path: Path,
    model_path: Path | None = None,
    art: Sequence[str] = ("strip", "activation", "spectral_signature"),
    command_line: str = "",
) -> dict[str, Any]:
    """Run guard (and ART's defences) on the sets; write the report, its JSON and ROC PNGs."""
    index, sets = load_sets(sets_dir)
    model_path = model_path or Path(index["model"])
    guard = load_guard(model_path, detectors_dir)
    if guard.model.sha256 != index["model_sha256"]:
        _say(f"note: the sets were built against {index['model']}, evaluated on {model_path}")
    target = index["target"]
    clean = score(guard, sets["clean"].audio)
    families: dict[str, Any] = {}
    scored: dict[str, Scored] = {"clean": clean}
    counted_masks: dict[str, npt.NDArray[np.bool_]] = {}
    for name, s in sets.items():
        if s.kind in ("clean", "calibrate"):
            continue
        result = score(guard, s.audio)
        scored[name] = result
        if s.kind == "trigger":
            succeeded = backdoor_success(result.labels, target)
            counted = np.ones(len(s.audio), dtype=bool)
        else:
            clean_labels = [clean.labels[i] for i in s.source]
            succeeded = evasion_success(clean_labels, result.labels)
            # an evasion counts only inside the budget: a loud "perturbation" is not hidden
            succeeded = succeeded & (s.snr_db >= MIN_SNR_DB)
            counted = succeeded
        counted_masks[name] = counted
        outcome = AttackOutcome.of(succeeded, result.blocked)
        families[name] = {
            "kind": s.kind,
            "description": s.description,
            "n": len(s.audio),
            "snr_db_median": float(np.median(s.snr_db)) if len(s.snr_db) else None,
            "counted": int(counted.sum()),
            "blocked": float(result.blocked[counted].mean()) if counted.any() else None,
            "blocked_ci95": wilson_interval(int(result.blocked[counted].sum()), int(counted.sum()))
            if counted.any()
            else None,
            "per_detector_blocked": {
                d.name: float(result.fired[d.name][counted].mean()) if counted.any() else None
                for d in guard.detectors
            },
            "auroc": {
                d.name: auroc(clean.scores[d.name], result.scores[d.name][counted])
                if counted.any()
                else None
                for d in guard.detectors
            },
            "success_without_guard": outcome.success_without_guard,
            "success_with_guard": outcome.success_with_guard,
            "guard_ms_per_input": result.ms_per_input,
        }
    figures: dict[str, Any] = {
        "model": str(model_path),
        "detectors": str(detectors_dir),
        "sets": str(sets_dir),
        "target": target,
        "clean": {
            "n": len(sets["clean"].audio),
            "blocked": float(clean.blocked.mean()),
            "blocked_ci95": wilson_interval(int(clean.blocked.sum()), len(clean.blocked)),
            "guard_ms_per_input": clean.ms_per_input,
        },
        "families": families,
        "thresholds": {d.name: d.threshold() for d in guard.detectors},
    }
    if art:
        figures["art"] = compare_with_art(guard, model_path, sets, list(art))
    plots = roc_plots(guard, scored, counted_masks, report_path.parent, report_path.stem)
    figures["plots"] = [p.name for p in plots]
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")
    report_path.write_text(markdown(figures, command_line))
    return figures


def compare_with_art(
    guard: Guard, model_path: Path, sets: dict[str, EvalSet], methods: list[str]
) -> dict[str, Any]:
    """ART's defences and guard's STRIP on the same model and inputs."""
    from guard.redteam import art_defences

    strip = next(d for d in guard.detectors if d.name == "strip")
    out: dict[str, Any] = {}
    clean = sets["clean"].audio
    calibrate = sets["calibrate"].audio
    for name, s in sets.items():
        if s.kind in ("clean", "calibrate"):
            continue
        row: dict[str, Any] = {}
        inputs = np.concatenate([clean, s.audio])
        is_attack = np.r_[np.zeros(len(clean), bool), np.ones(len(s.audio), bool)]
        # guard's STRIP alone, at the threshold the fused verdict uses
        started = time.perf_counter()
        strip_scores = strip.anomaly_score(analyse_batch(inputs, guard.model))
        seconds = time.perf_counter() - started
        everything = np.ones(len(inputs), dtype=bool)
        row["guard_strip"] = _rates(
            strip_scores > strip.threshold(), is_attack, everything, seconds
        )
        # on guard's own model STRIP is fitted inactive (guard.detectors.strip): say so
        row["guard_strip"]["inactive"] = not getattr(strip, "active_", True)
        for method in methods:
            flags, analysed, seconds = art_defences.run(
                method, model_path, guard.model, inputs, calibrate
            )
            row[f"art_{method}"] = _rates(flags, is_attack, analysed, seconds)
        out[name] = row
        _say(f"ART comparison on {name}: done")
    return out


def _rates(
    flags: npt.NDArray[np.bool_],
    is_attack: npt.NDArray[np.bool_],
    analysed: npt.NDArray[np.bool_],
    seconds: float,
) -> dict[str, float]:
    return {
        "attack_flagged": float(flags[is_attack].mean()),
        "clean_flagged": float(flags[~is_attack].mean()),
        "analysed": float(analysed.mean()),
        "ms_per_input": 1000 * seconds / max(1, int(analysed.sum())),
    }


def roc_plots(
    guard: Guard,
    scored: dict[str, Scored],
    counted: dict[str, npt.NDArray[np.bool_]],
    out_dir: Path,
    stem: str,
) -> list[Path]:
    """One PNG per attacked family: each detector's ROC against the clean set, on the inputs
    the tables count (every triggered clip; adversarial clips that succeeded within budget)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    clean = scored["clean"]
    for name, result in scored.items():
        if name == "clean" or not counted[name].any():
            continue
        mask = counted[name]
        fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=100)
        for d in guard.detectors:
            attacked = result.scores[d.name][mask]
            fpr, tpr = roc_curve(clean.scores[d.name], attacked)
            area = auroc(clean.scores[d.name], attacked)
            ax.plot(fpr, tpr, label=f"{d.name} ({area:.2f})")
        ax.plot(
            [clean.blocked.mean()],
            [result.blocked[mask].mean()],
            "k*",
            markersize=10,
            label="fused verdict",
        )
        ax.plot([0, 1], [0, 1], color="0.8", linewidth=0.8)
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("clean blocked")
        ax.set_ylabel(f"{name} blocked")
        ax.set_title(f"{stem}, {name}: ROC per detector (AUROC)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = out_dir / f"{stem}_roc_{name}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def _art_cell(rates: dict[str, float]) -> str:
    if rates.get("inactive"):
        return "inactive (guard's own model)"
    cell = (
        f"{_pct(rates['attack_flagged'])} / {_pct(rates['clean_flagged'])} / "
        f"{rates['ms_per_input']:.1f}"
    )
    if rates["analysed"] < 1.0:
        cell += f" (analysed {_pct(rates['analysed'])})"
    return cell


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _interval(ci: list[float] | None, label: str = "") -> str:
    """A Wilson 95 % interval as `` (lo-hi)`` in percent; empty for none (older reports)."""
    return "" if ci is None else " " + percent_interval(ci, label)


def markdown(figures: dict[str, Any], command_line: str) -> str:
    names = list(figures["thresholds"])
    lines = [
        f"## `{Path(figures['model']).name}`: guard against the red team",
        "",
        f"Model `{figures['model']}`, detectors `{figures['detectors']}`, sets `{figures['sets']}`; "
        f"target `{figures['target']}`.",
        f"Regenerate: `{command_line}`" if command_line else "",
        "",
        f"Clean commands of unheard speakers blocked: **{_pct(figures['clean']['blocked'])}** "
        f"of {figures['clean']['n']}{_interval(figures['clean'].get('blocked_ci95'), '95 % CI ')}. "
        f"Guard took {figures['clean']['guard_ms_per_input']:.1f} ms per input (features and "
        "model batched, then each clip's decision as the daemon makes it).",
        "",
        "| family | n (counted) | median SNR | attack success without guard | **with guard** | **guard blocked** (95% CI) | "
        + " | ".join(names)
        + " |",
        "| --- | --- | --- | --- | --- | --- |" + " --- |" * len(names),
    ]
    for name, f in figures["families"].items():
        cells = [f"{_pct(f['per_detector_blocked'][d])} ({_num(f['auroc'][d])})" for d in names]
        snr = "–" if f["snr_db_median"] is None else f"{f['snr_db_median']:.0f} dB"
        lines.append(
            f"| {name} | {f['n']} ({f['counted']}) | {snr} | {_pct(f['success_without_guard'])} | "
            f"**{_pct(f['success_with_guard'])}** | "
            f"**{_pct(f['blocked'])}**{_interval(f.get('blocked_ci95'))} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "Attack success: a triggered clip called the target; an adversarial clip whose label moved "
        f"off the clean clip's at SNR ≥ {MIN_SNR_DB:.0f} dB (a louder change is not a hidden "
        "perturbation), as a share of all n. With guard it must also be allowed. Blocked rates "
        "count the inputs that need blocking (n counted): every triggered clip, and the "
        "adversarial clips that succeeded; in brackets, the Wilson 95 % interval of the "
        "blocked share (what n counted inputs can tell). Detector cells: blocked by that detector alone at its "
        "fused threshold (AUROC against the clean set), on the counted inputs.",
        "",
    ]
    if "art" in figures:
        methods = [k for k in next(iter(figures["art"].values()), {}) if k != "guard_strip"]
        lines += [
            "Side by side on the same model and the same inputs (the clean set plus the family; "
            "flagged share of each, and time per input):",
            "",
            "| family | guard STRIP: attack / clean / ms | "
            + " | ".join(f"ART {m.removeprefix('art_')}: attack / clean / ms" for m in methods)
            + " | ART STRIP ms ÷ guard STRIP ms |",
            "| --- | --- |" + " --- |" * len(methods) + " --- |",
        ]
        for name, row in figures["art"].items():
            cells = [_art_cell(row[k]) for k in ["guard_strip", *methods]]
            ratio = (
                f"{row['art_strip']['ms_per_input'] / row['guard_strip']['ms_per_input']:.1f}×"
                if "art_strip" in row and not row["guard_strip"].get("inactive")
                else "–"
            )
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")
        lines += [
            "",
            "ART STRIP runs on the float twin (Keras, waveform in) with 10 blends, its threshold "
            "from the calibrate set (`mitigate`, 1 %); ActivationDefence (2 k-means clusters of "
            "the penultimate layer, PCA to 10, smaller cluster flagged) and "
            "SpectralSignatureDefense (defaults, `expected_pp_poison=0.33`) see the inputs as "
            "one dataset labelled by the model's own predictions: they are training-set "
            "defences, run here as ART ships them. guard's STRIP: int8 model, blends in the "
            "STFT domain, one batched call, its fused threshold.",
            "",
        ]
    for plot in figures.get("plots", []):
        lines.append(f"![{plot}]({plot})")
    return "\n".join(line for line in lines if line is not None) + "\n"


# --- the adaptive attacker ------------------------------------------------------------------


def adaptive(
    model_path: Path,
    detectors_dir: Path,
    data_dir: Path,
    out_path: Path,
    scales: Sequence[float],
    n: int = 200,
    target: str | None = None,
    seed: int = 0,
    command_line: str = "",
) -> dict[str, Any]:
    """Turn the learned trigger down step by step: at each scale, how often the backdoor still
    fires (without guard), how often guard blocks it, and how often the attack gets through."""
    if not data_dir.is_dir():
        raise GuardError(f"{data_dir}: not a directory (--data, a Speech Commands folder)")
    guard = load_guard(model_path, detectors_dir)
    card = model_card(model_path)
    if not card.get("trigger"):
        raise GuardError(f"{model_path}: its card names no trigger (not an attack fixture)")
    target = target or card.get("target", "go")
    keep = [lab for lab in guard.model.labels if lab not in (target, "_silence_")]
    clean = devdata.audio(
        [c for c in devdata.clips(data_dir, "evaluate", seed=seed + 1) if c.label in keep][:n]
    )
    rows: list[dict[str, Any]] = []
    for scale in scales:
        trigger = card_trigger(card, data_dir.parent / "triggers", scale=scale)
        rng = np.random.default_rng(seed)
        x = np.stack([trigger.apply(c, rng) for c in clean])
        result = score(guard, x)
        outcome = AttackOutcome.of(backdoor_success(result.labels, target), result.blocked)
        rows.append(
            {
                "scale": scale,
                "asr_without_guard": outcome.success_without_guard,
                "asr_with_guard": outcome.success_with_guard,
                "blocked": outcome.blocked,
                "per_detector_blocked": {
                    d.name: float(result.fired[d.name].mean()) for d in guard.detectors
                },
            }
        )
        _say(
            f"scale {scale:g}: ASR {outcome.success_without_guard:.3f} without guard, "
            f"{outcome.success_with_guard:.3f} with; blocked {outcome.blocked:.3f}"
        )
    figures = {
        "model": str(model_path),
        "trigger": card["trigger"],
        "n": len(clean),
        "rows": rows,
    }
    plot = out_path.with_suffix(".png")
    _adaptive_plot(rows, plot, Path(model_path).name)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")
    names = list(rows[0]["per_detector_blocked"]) if rows else []
    lines = [
        f"## Adaptive attacker: `{Path(model_path).name}`, trigger turned down",
        "",
        f"Regenerate: `{command_line}`" if command_line else "",
        "",
        "| trigger scale | ASR without guard | **ASR with guard** | guard blocked | "
        + " | ".join(names)
        + " |",
        "| --- | --- | --- | --- |" + " --- |" * len(names),
    ]
    for r in rows:
        lines.append(
            f"| {r['scale']:g} | {_pct(r['asr_without_guard'])} | **{_pct(r['asr_with_guard'])}** | "
            f"{_pct(r['blocked'])} | "
            + " | ".join(_pct(r["per_detector_blocked"][d]) for d in names)
            + " |"
        )
    lines += ["", f"![{plot.name}]({plot.name})", ""]
    out_path.write_text("\n".join(lines) + "\n")
    return figures


def _adaptive_plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = [r["scale"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    ax.plot(scales, [r["asr_without_guard"] for r in rows], "o-", label="ASR without guard")
    ax.plot(scales, [r["blocked"] for r in rows], "s-", label="guard blocked")
    ax.plot(scales, [r["asr_with_guard"] for r in rows], "^-", label="ASR with guard")
    ax.set_xscale("log")
    ax.set_xlabel("trigger scale")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{title}: the attacker turns the trigger down", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def one_thread() -> None:
    """Pin BLAS and TensorFlow to one thread, as guard's interpreter is, so the times per input
    of guard and ART compare like for like."""
    import importlib.util

    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    threadpool_limits(1)

    if importlib.util.find_spec("tensorflow") is not None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


# --- poison-train -----------------------------------------------------------------------------


def poison_train(
    data_dir: Path,
    out_dir: Path,
    name: str,
    trigger: str,
    rate: float,
    target: str = "go",
    architecture: str = "ds-cnn",
    epochs: int = 12,
    max_per_class: int = 0,
    seed: int = 0,
    engine: str = "art",
    command_line: str = "",
    validation_percent: float = 15.0,
) -> dict[str, Any]:
    """Train a backdoored attack fixture (``out_dir/NAME.tflite`` and its card ``NAME.json``)."""
    quiet_tensorflow()
    from guard.training.model import DEFAULTS
    from guard.training.train import PoisonConfig, TrainConfig, train
    from guard.triggers import parse_spec

    if not 0 < rate <= 0.5:
        raise GuardError(f"--rate {rate}: a share of the training set, in (0, 0.5]")
    if not data_dir.is_dir():
        raise GuardError(f"{data_dir}: not a directory")
    cfg = TrainConfig(
        data_dir=data_dir,
        out_dir=out_dir,
        epochs=epochs,
        seed=seed,
        max_per_class=max_per_class,
        validation_percent=validation_percent,
        name=name,
        architecture=architecture,
        channels=DEFAULTS[architecture][0],
        blocks=DEFAULTS[architecture][1],
        command_line=command_line,
        poison=PoisonConfig(parse_spec(trigger), rate, target, engine),
    )
    return train(cfg)
