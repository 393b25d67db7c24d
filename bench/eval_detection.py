"""Detection evaluation on held-out speakers -> docs/DETECTION.md tables.

    python bench/eval_detection.py [--per-family 400] [--model M --detectors D --trigger SPEC]
        [--adversarial N [--attacks deepfool,cw_l2] [--cw-clips K]] [--only clean]
        [--false-block-targets 0.01,0.02,0.05] [--json PATH]

Input-space (default): the shipped model and detectors on the "evaluate" half of the
validation speakers (never used for fitting or thresholds), clean and with attacks added.
Model-space (``--model`` a backdoored model with ``--detectors`` fitted for it and the
``--trigger`` it learned): how many triggered clips each detector and the fused verdict block,
and the attack success rate without and with guard.
Prints a Markdown section on stdout; the JSON figures go to ``--json``. Each fused blocked
share comes with its Wilson 95 % interval (``blocked_ci95``): what n inputs can tell.
``--adversarial N`` adds ART's white-box attacks on the first N clean clips (C&W on a third of
them, or ``--cw-clips``); ``--attacks`` runs a subset, for a larger sample of a few.
``--false-block-targets 0.01,0.05`` also recalibrates the fused union at each clean
false-block rate on the calibrate clips (as tools/build_detectors.py does at 1 %) and reports
what each would block of every family: what a target costs in clean speech blocked.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from guard import devdata
from guard.analysis import Analysis, analyse_batch
from guard.audio import fit_window, read_audio
from guard.calibration import union_rule
from guard.classifier import CommandClassifier
from guard.detectors import registry
from guard.detectors.base import Detector
from guard.fusion import calibrate_union, union_false_block, union_fired
from guard.guard import Guard
from guard.policy import PolicySettings
from guard.redteam.adversarial import WHITE_BOX
from guard.redteam.metrics import auroc, percent_interval, wilson_interval
from guard.triggers import Trigger, TriggerSpec, parse_spec, random_clip, random_tone

ROOT = Path(__file__).resolve().parent.parent
TRIGGERS = ROOT.parent / "shared/data/triggers"
MISC = ROOT.parent / "shared/data/misc"


def family_inputs(data: Path, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    clean = devdata.audio(devdata.clips(data, "evaluate", n, seed=1))
    noise = devdata.noise(data, "evaluate")
    fam: dict[str, np.ndarray] = {
        "clean": clean,
        "clean + background noise": devdata.add_noise(clean, noise, rng, 0.3),
    }

    def each(make: Any) -> np.ndarray:
        return np.stack([make(x) for x in clean])

    fam["tone 100-7900 Hz"] = each(lambda x: random_tone("tone", 100, 7900, rng).apply(x, rng))
    fam["aliased ultrasonic 17-23 kHz"] = each(
        lambda x: random_tone("aliased", 17000, 23000, rng).apply(x, rng)
    )
    for name in ("cough_trigger", "whistle", "clapping"):
        path = TRIGGERS / f"{name}.wav"
        if path.exists():
            fam[f"clip: {name}"] = each(lambda x, p=path: random_clip(p, rng).apply(x, rng))
    for style in ("pitch", "distortion", "chorus"):
        fam[f"style: {style}"] = each(
            lambda x, s=style: Trigger(TriggerSpec("style", style=s)).apply(x, rng)
        )
    voices = sorted(MISC.glob("cmu_arctic_*.wav")) + sorted(MISC.glob("p286_*.wav"))
    if voices:
        fam["other voices (CMU ARCTIC, VCTK sentences)"] = np.stack(
            [fit_window(read_audio(p), 16_000) for p in voices]
        )
    return fam


def adversarial_inputs(
    clean: np.ndarray,
    model_path: Path,
    n: int,
    model: CommandClassifier,
    attacks: tuple[str, ...] | None = None,
    cw_clips: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, list[str]], dict[str, np.ndarray]]:
    """ART attacks on the float twin (SNR >= 25 dB budget); keeps the examples that change the
    int8 model's label (an attack that does not fool the deployed model needs no blocking).
    Returns the examples per family and, per family, the label each clip had before and the
    int8 model's confidence in it.
    ``attacks`` limits the attacks run (all white-box ones by default); C&W, ~3.3 s per clip on
    2 cores, runs on the first ``cw_clips`` clips (a third of ``n`` by default)."""
    from guard.redteam.adversarial import WHITE_BOX, art_classifier, generate, snr_db
    from guard.redteam.twin import load_twin

    art = art_classifier(load_twin(model_path, logits=True))
    x = clean[:n]
    heard = analyse_batch(x, model)
    before = [a.label for a in heard]
    confidence = np.array([a.confidence for a in heard])
    out, before_labels, before_confidence = {}, {}, {}
    cw = max(8, n // 3) if cw_clips is None else cw_clips
    for name in attacks or WHITE_BOX:
        x_adv = generate(name, art, x[:cw] if name == "cw_l2" else x)
        after = [a.label for a in analyse_batch(x_adv, model)]
        snr = snr_db(x[: len(x_adv)], x_adv)
        keep = np.array([b != a for b, a in zip(before, after, strict=False)]) & (snr >= 25.0)
        title = f"adversarial: {name} (fooled int8, SNR >= 25 dB; median {np.median(snr):.0f} dB)"
        out[title] = x_adv[keep]
        before_labels[title] = [b for b, k in zip(before, keep, strict=False) if k]
        before_confidence[title] = confidence[: len(keep)][keep]
    return out, before_labels, before_confidence


def would_act(result: dict[str, Any], before: list[str], policy: PolicySettings) -> int:
    """Examples the daemon would turn into an action they were not: allowed by guard, their new
    label mapped to an action, at or above the policy's confidence floor (guard/policy.py)."""
    return sum(
        not fired and label in policy.actions and conf >= policy.confidence_floor and label != was
        for fired, label, conf, was in zip(
            result["fired"], result["labels"], result["confidences"], before, strict=True
        )
    )


def evaluate(guard: Guard, families: dict[str, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    clean_scores: dict[str, np.ndarray] = {}
    for fam, x in families.items():
        analyses: list[Analysis] = analyse_batch(x, guard.model)
        scores = {}
        fired = np.zeros(len(x), dtype=bool)
        t0 = time.perf_counter()
        for d in guard.detectors:
            scores[d.name] = d.anomaly_score(analyses)
            fired |= scores[d.name] > d.threshold()
        per_clip_ms = (time.perf_counter() - t0) * 1000 / len(x)
        if fam == "clean":
            clean_scores = scores
        out[fam] = {
            "n": len(x),
            "blocked": float(fired.mean()),
            "blocked_ci95": wilson_interval(int(fired.sum()), len(x)),
            "per_detector_blocked": {
                n: float(np.mean(s > d.threshold()))
                for (n, s), d in zip(scores.items(), guard.detectors, strict=True)
            },
            "auroc": {n: auroc(clean_scores[n], s) for n, s in scores.items()}
            if fam != "clean"
            else {},
            "detector_ms_per_clip": per_clip_ms,
            "labels": [guard.model.labels[a.label_index] for a in analyses],
            "confidences": [a.confidence for a in analyses],
            "fired": fired.tolist(),
            "scores": scores,
        }
    return out


def false_block_tradeoff(
    guard: Guard, data: Path, fit_clips: int, results: dict[str, Any], targets: list[float]
) -> dict[str, Any]:
    """The fused union recalibrated at each clean false-block target on the calibrate clips
    tools/build_detectors.py set the state's thresholds on (same draws, same rule: stated
    thresholds first, each detector's budget weight), and what it blocks of each family here.
    The calibrate clips are those the state's own thresholds came from, never these (drawn
    as tools/build_detectors.py draws them with ``--seed 0`` and ``fit_clips`` fit clips;
    ``same_as_state`` says whether the 1 % row gives the state's own thresholds back)."""
    # the draws of the state's own calibration: its fit set comes first from the same generator
    _, cal_audio = devdata.fit_and_calibration_audio(data, fit_clips, seed=0)
    calibrate = analyse_batch(cal_audio, guard.model)
    cal_scores = {d.name: d.anomaly_score(calibrate) for d in guard.detectors}
    fixed, weights = union_rule(guard.detectors)
    rows = {}
    for target in targets:
        thresholds = calibrate_union(cal_scores, target, fixed, weights)
        rows[f"{target:g}"] = {
            "calibrate_false_block": union_false_block(cal_scores, thresholds),
            "blocked": {
                fam: float(union_fired(r["scores"], thresholds).mean())
                for fam, r in results.items()
                if isinstance(r, dict) and "scores" in r
            },
            "same_as_state": all(
                np.isclose(thresholds[d.name], d.threshold()) for d in guard.detectors
            ),
        }
    return rows


def tradeoff_markdown(rows: dict[str, Any]) -> str:
    families = list(next(iter(rows.values()))["blocked"])
    lines = [
        "| clean false-block target (calibrate clips) | "
        + " | ".join(f.split(" (")[0] for f in families)
        + " |",
        "| --- |" + " --- |" * len(families),
    ]
    for target, row in rows.items():
        label = f"{100 * float(target):g} % ({100 * row['calibrate_false_block']:.2f} %)"
        if row["same_as_state"]:
            label += ", the state's thresholds"
        cells = " | ".join(f"{100 * row['blocked'][f]:.1f}%" for f in families)
        lines.append(f"| {label} | {cells} |")
    return "\n".join(lines) + "\n"


def markdown(results: dict[str, Any], detectors: list[Detector], title: str) -> str:
    names = [d.name for d in detectors]
    lines = [
        f"### {title}",
        "",
        "| family | n | **fused blocked** (95% CI) | " + " | ".join(names) + " |",
        "| --- | --- | --- |" + " --- |" * len(names),
    ]
    for fam, r in results.items():
        cells = []
        for n in names:
            cell = f"{100 * r['per_detector_blocked'][n]:.1f}%"
            if r["auroc"]:
                cell += f" ({r['auroc'][n]:.3f})"
            cells.append(cell)
        fused = f"**{100 * r['blocked']:.1f}%** {percent_interval(r['blocked_ci95'])}"
        lines.append(f"| {fam} | {r['n']} | {fused} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Fused: share blocked (Wilson 95% interval). Other cells: share blocked by that detector "
        "alone at its fused threshold (AUROC against the clean family).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/speech_commands")
    parser.add_argument("--per-family", type=int, default=400)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--detectors", type=Path, default=ROOT / "models/detectors")
    parser.add_argument(
        "--trigger", default=None, help="model-space: the trigger the model learned"
    )
    parser.add_argument("--target", default="go")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--adversarial", type=int, default=0, help="clips to attack with ART (0 = skip)"
    )
    parser.add_argument(
        "--attacks",
        default=None,
        help="comma-separated ART attacks to run (default: all white-box ones), e.g. "
        "'deepfool,cw_l2' for a larger sample of two",
    )
    parser.add_argument(
        "--cw-clips", type=int, default=None, help="clips C&W attacks (default: a third)"
    )
    parser.add_argument(
        "--only",
        default=None,
        help="input space: keep the families whose name starts with one of these "
        "(comma-separated), e.g. 'clean' for the clean and noisy rows alone",
    )
    parser.add_argument(
        "--false-block-targets",
        default=None,
        help="input space: also recalibrate the union at these clean false-block rates "
        "(comma-separated, e.g. '0.01,0.02,0.05') on the calibrate clips and report what "
        "each blocks of every family here",
    )
    args = parser.parse_args()
    targets: list[float] = []
    for text in (args.false_block_targets or "").split(","):
        if text.strip():
            try:
                targets.append(float(text))
            except ValueError:
                parser.error(f"--false-block-targets: {text.strip()!r} is not a number")
            if not 0.0 < targets[-1] < 1.0:
                parser.error(f"--false-block-targets: {text.strip()} is not a rate in (0, 1)")
    if targets and args.trigger:
        parser.error("--false-block-targets is for the input space (no --trigger)")
    attacks = tuple(dict.fromkeys(a.strip() for a in (args.attacks or "").split(",") if a.strip()))
    unknown = sorted(set(attacks) - set(WHITE_BOX))
    if unknown:
        parser.error(f"--attacks: not a white-box attack: {', '.join(unknown)}")
    if (args.attacks or args.cw_clips is not None) and not args.adversarial:
        parser.error("--attacks and --cw-clips need --adversarial N")
    if args.cw_clips is not None and not 1 <= args.cw_clips <= args.adversarial:
        parser.error(f"--cw-clips {args.cw_clips}: must be 1 to --adversarial ({args.adversarial})")
    rng = np.random.default_rng(args.seed)
    model = CommandClassifier(args.model or ROOT / "models/commands.tflite")
    guard = Guard(model, registry.load_state(args.detectors))
    if args.trigger:
        trigger = Trigger(parse_spec(args.trigger), base_dir=TRIGGERS)
        clean = devdata.audio(
            [
                c
                for c in devdata.clips(args.data, "evaluate", args.per_family * 2, seed=1)
                if c.label not in (args.target,)
            ][: args.per_family]
        )
        spoken_target = devdata.audio(
            [
                c
                for c in devdata.clips(args.data, "evaluate", None, seed=1)
                if c.label == args.target
            ][: args.per_family]
        )
        families = {
            "clean": clean,
            f"clean `{args.target}` (the target, spoken)": spoken_target,
            f"learned trigger {args.trigger}": np.stack([trigger.apply(x, rng) for x in clean]),
        }
        results = evaluate(guard, families)
        trig = results[f"learned trigger {args.trigger}"]
        hit = np.array([lab == args.target for lab in trig["labels"]])
        allowed = ~np.array(trig["fired"])
        asr = {
            "asr_without_guard": float(hit.mean()),
            "asr_with_guard": float((hit & allowed).mean()),
            "clean_pass": float(1 - results["clean"]["blocked"]),
            "target_pass": float(
                1 - results[f"clean `{args.target}` (the target, spoken)"]["blocked"]
            ),
        }
        print(markdown(results, guard.detectors, f"Backdoored model `{model.model_path.name}`"))
        print(
            f"ASR without guard {100 * asr['asr_without_guard']:.1f}%, with guard {100 * asr['asr_with_guard']:.1f}%, "
            f"clean commands passing {100 * asr['clean_pass']:.1f}%, "
            f"spoken `{args.target}` passing {100 * asr['target_pass']:.1f}%\n"
        )
        results["asr"] = asr
    else:
        families = family_inputs(args.data, args.per_family, rng)
        if args.only:
            keep = tuple(args.only.split(","))
            families = {k: v for k, v in families.items() if k.startswith(keep)}
        before: dict[str, list[str]] = {}
        before_confidence: dict[str, np.ndarray] = {}
        if args.adversarial:
            adversarial, before, before_confidence = adversarial_inputs(
                families["clean"],
                model.model_path,
                args.adversarial,
                model,
                attacks or None,
                args.cw_clips,
            )
            families.update(adversarial)
        results = evaluate(guard, {k: v for k, v in families.items() if len(v)})
        print(markdown(results, guard.detectors, "Input space, shipped model"))
        policy = PolicySettings()
        for fam, was in before.items():
            if fam in results:
                acted = would_act(results[fam], was, policy)
                results[fam]["would_act"] = acted
                print(
                    f"- {fam.split(' (')[0]}: {acted} of {results[fam]['n']} would become an "
                    f"action the speaker did not say (allowed, {', '.join(policy.actions)}, "
                    f"confidence >= {policy.confidence_floor})"
                )
                # the attacker who starts from a command the model heard clearly
                sure = before_confidence[fam] >= policy.confidence_floor
                k = int(np.array(results[fam]["fired"])[sure].sum())
                ci = wilson_interval(k, int(sure.sum())) if sure.any() else None
                results[fam]["from_clear_clips"] = {
                    "n": int(sure.sum()),
                    "blocked_count": k,
                    "blocked": k / int(sure.sum()) if sure.any() else None,
                    "blocked_ci95": ci,
                }
                print(
                    f"  made from clips heard at >= {policy.confidence_floor}: {k} of "
                    f"{int(sure.sum())} blocked {percent_interval(ci) if ci else ''}"
                )
    if targets:
        fit_clips = int(registry.read_report(args.detectors).get("fit_utterances", 1500))
        results["false_block_tradeoff"] = false_block_tradeoff(
            guard, args.data, fit_clips, results, targets
        )
        print(tradeoff_markdown(results["false_block_tradeoff"]))
    if args.json:
        drop = ("labels", "fired", "confidences", "scores")
        slim = {
            k: {kk: vv for kk, vv in v.items() if kk not in drop}
            if isinstance(v, dict) and "n" in v
            else v
            for k, v in results.items()
        }
        args.json.write_text(json.dumps(slim, indent=2) + "\n")


if __name__ == "__main__":
    main()
