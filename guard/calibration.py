"""Fitting detectors on clean speech and calibrating the fused rule to a false-block target.

Used by ``guard calibrate`` (the owner's own recordings) and by ``tools/build_detectors.py``
(the shipped state in ``models/detectors``). Never touches the shipped ``models/`` unless
asked to write there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guard.analysis import Analysis, Utterance, analyse
from guard.audio import iter_audio_paths, read_audio
from guard.classifier import CommandClassifier
from guard.config import Settings
from guard.detectors import registry
from guard.detectors.base import Detector
from guard.errors import GuardError
from guard.fusion import calibrate_union, union_false_block

log = logging.getLogger(__name__)


def analyse_files(
    paths: Sequence[Path], model: CommandClassifier
) -> tuple[list[Analysis], list[str]]:
    """Analyse every readable file; return the analyses and one error line per unreadable file."""
    out, errors = [], []
    for path in paths:
        try:
            out.append(analyse(Utterance(read_audio(path), source=str(path)), model))
        except GuardError as exc:
            errors.append(str(exc))
    return out, errors


def list_audio(directories: Sequence[Path]) -> list[Path]:
    """Every audio file under ``directories``; a folder that is missing or holds no audio is
    an error naming it (a mistyped second folder must not pass unnoticed)."""
    out = []
    for path, err in iter_audio_paths(directories):
        if err is not None:
            raise err
        out.append(path)
    return out


def split_fit_calibrate(
    paths: Sequence[Path], calibrate_fraction: float, seed: int = 0
) -> tuple[list[Path], list[Path]]:
    """Split files into fit and calibration sets; Speech Commands names split by speaker."""
    groups: dict[str, list[Path]] = {}
    for p in paths:
        key = p.name.split("_nohash_")[0] if "_nohash_" in p.name else p.name
        groups.setdefault(key, []).append(p)
    keys = sorted(groups)
    rng = np.random.default_rng(seed)
    rng.shuffle(keys)
    n_cal = max(1, round(len(keys) * calibrate_fraction))
    cal = [p for k in keys[:n_cal] for p in groups[k]]
    fit = [p for k in keys[n_cal:] for p in groups[k]]
    return fit, cal


def union_rule(
    detectors: Sequence[Detector], kept: dict[str, Detector] | None = None
) -> tuple[dict[str, float], dict[str, int]]:
    """What ``guard.fusion.calibrate_union`` needs besides the scores: the thresholds that are
    stated rules or kept as configured (counted first), and each detector's budget weight."""
    fixed = {d.name: t for d in detectors if (t := d.fixed_threshold()) is not None}
    fixed.update({name: detector.threshold() for name, detector in (kept or {}).items()})
    return fixed, {d.name: d.budget_weight for d in detectors}


def fit_and_calibrate(
    fit_set: Sequence[Analysis],
    calibration_set: Sequence[Analysis],
    names: Sequence[str],
    target_false_block: float,
    options: dict[str, dict[str, Any]] | None = None,
    kept: dict[str, Detector] | None = None,
) -> tuple[list[Detector], dict[str, Any]]:
    """Fit each named detector on ``fit_set``; set the union thresholds on ``calibration_set``.

    ``options`` maps a detector name to its constructor arguments (see ``detector_options``).
    ``kept`` detectors (``guard calibrate --keep-threshold``: the configured state's, fitted)
    are neither refitted nor recalibrated; what they block counts first, as a stated rule's
    does.
    """
    kept = kept or {}
    detectors: list[Detector] = []
    scores = {}
    timings = {}
    names = registry.in_running_order(names)
    for name in names:
        t0 = time.perf_counter()
        if name in kept:
            detector = kept[name]
        else:
            detector = registry.make(name, **(options or {}).get(name, {}))
        registry.wire([*detectors, detector])  # agreement: the parts fitted before it
        if name not in kept:
            detector.fit(fit_set)
        scores[name] = detector.anomaly_score(calibration_set)
        timings[name] = round(time.perf_counter() - t0, 2)
        detectors.append(detector)
        log.info("fitted %s in %.1f s", name, timings[name])
    fixed, weights = union_rule(detectors, kept)
    thresholds = calibrate_union(scores, target_false_block, fixed, weights)
    for detector in detectors:
        detector.threshold_ = thresholds[detector.name]
    report = {
        "model_sha256": fit_set[0].model.sha256,
        "target_false_block": target_false_block,
        "calibration_false_block": union_false_block(scores, thresholds),
        "per_detector_false_block": {n: float(np.mean(scores[n] > thresholds[n])) for n in names},
        "thresholds": thresholds,
        "params": {d.name: d.get_params() for d in detectors},
        "budget_weights": {n: w for n, w in weights.items() if w != 1},
        # at the top of their clean scores: each passes a new clean recording with odds
        # N / (N + 1) (not counting detectors that score every recording alike: inactive)
        "at_highest_clean_score": [
            n
            for n in names
            if n not in fixed and not np.any(scores[n] > thresholds[n]) and np.ptp(scores[n]) > 0
        ],
        "kept_thresholds": sorted(kept),
        "fit_utterances": len(fit_set),
        "calibration_utterances": len(calibration_set),
        "fit_seconds": timings,
    }
    return detectors, report


def against_state(
    state_dir: Path, held_out: Sequence[Analysis], names: Sequence[str]
) -> dict[str, Any] | None:
    """How the state at ``state_dir`` (the one the config points at) does on the held-out
    recordings of a calibration: the share its fused rule blocks, per detector, and its
    thresholds. None when it was fitted for another model or cannot be read (then there is
    nothing to compare with)."""
    try:
        if registry.read_report(state_dir).get("model_sha256") != held_out[0].model.sha256:
            return None
        detectors = registry.load(state_dir, names)
    except (GuardError, OSError, ValueError) as exc:
        log.info("no comparison with %s: %s", state_dir, exc)
        return None
    scores = {d.name: d.anomaly_score(held_out) for d in detectors}
    thresholds = {d.name: d.threshold() for d in detectors}
    return {
        "state_dir": str(state_dir),
        "false_block": union_false_block(scores, thresholds),
        "per_detector_false_block": {
            n: float(np.mean(s > thresholds[n])) for n, s in scores.items()
        },
        "thresholds": thresholds,
        "params": {d.name: d.get_params() for d in detectors},
    }


def comparison_lines(report: dict[str, Any]) -> list[str]:
    """Two lines for the owner: what the configured state blocked of these recordings, and
    each threshold beside the configured one (a higher threshold fires on less; a detector
    whose parameters differ scores something else, and the pair says so)."""
    old = report.get("configured_state")
    if not old:
        return []
    fired = ", ".join(
        f"{n} {share:.1%}" for n, share in old["per_detector_false_block"].items() if share > 0
    )
    new_params, old_params = report.get("params", {}), old.get("params", {})

    def other_score(name: str) -> str:
        differs = new_params.get(name) != old_params.get(name)
        return ", another score: other parameters" if differs else ""

    pairs = ", ".join(
        f"{n} {t:.3g} ({old['thresholds'][n]:.3g}{other_score(n)})"
        for n, t in report["thresholds"].items()
        if n in old["thresholds"] and t != old["thresholds"][n]
    )
    return [
        f"the configured state {old['state_dir']} blocks {old['false_block']:.2%} of the same "
        f"held-out recordings" + (f" ({fired})" if fired else ""),
        f"thresholds, new (configured): {pairs or 'unchanged'}",
    ]


def small_set_lines(report: dict[str, Any]) -> list[str]:
    """One line when detectors were left at their highest score on the held-out recordings:
    with N of them, each such threshold passes a new recording of the same kind with odds
    N / (N + 1), so it blocks about 1 / (N + 1) of them; more recordings, tighter thresholds."""
    top = report.get("at_highest_clean_score") or []
    n = int(report["calibration_utterances"])
    if not top:
        return []
    return [
        f"{', '.join(top)}: block none of the {n} held-out recordings (at their highest score "
        f"on them), so each may block about {1 / (n + 1):.2%} of new recordings like them; "
        "more recordings give tighter thresholds"
    ]


def detector_options(settings: Settings) -> dict[str, dict[str, Any]]:
    """Constructor arguments the configuration gives detectors: the second ears get guard's
    own model (``model.reference_path``) and the commands it checks
    (``detectors.second_ear_labels``); STRIP gets the same model, to stay inactive when it is
    the one guarded (guard.detectors.strip), and its blend count (``detectors.strip_blends``);
    the learned perturbation detector gets its network (``detectors.perturbation_net``)."""
    enabled = settings.detectors.enabled
    ears = [n for n in ("second_ear", "second_ear_consistency") if n in enabled]
    net: dict[str, dict[str, Any]] = {}
    if "perturbation_net" in enabled:
        net["perturbation_net"] = {"net_path": settings.detectors.perturbation_net}
    if not ears and "strip" not in enabled:
        return net
    reference = CommandClassifier(settings.model.reference_path)
    labels = list(settings.detectors.second_ear_labels)
    options: dict[str, dict[str, Any]] = {
        name: {"reference": reference, "labels": labels} for name in ears
    }
    if "strip" in enabled:
        options["strip"] = {"reference": reference, "n_blends": settings.detectors.strip_blends}
    return options | net
