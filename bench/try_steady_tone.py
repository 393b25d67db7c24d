"""The steady-tone detector's grid, measured on a dev set before it was shipped.

    python bench/try_steady_tone.py [--json PATH]

The dev set is bench/try_tone_ideas.py's, from the "calibrate" half of the validation speakers
(the "evaluate" half of docs/DETECTION.md's tables stays untouched): the 857 calibrate clips
(half in held-back noise) as the clean side, a random tone drawn as the tables draw them
(100-7900 Hz, 0.05-0.5 s, scale 0.05-0.3) twice on each calibrate clip, and the backdoored
fixture's trigger (440 Hz, 0.25 s, scale 0.1, random position) once on each. The shipped
state without ``steady_tone`` scores them as it is; each grid point's steadiness
(guard.detectors.steady_tone.steadiness_db with other window, hop, runs and top band edge) is
fitted on the 1,500 training-speaker clips tools/build_detectors.py fits on, added to the
fused rule, and the union calibrated again to 1 % of the clean clips with the shipped budget
weights, once with no share of the budget (weight 0, as shipped) and once with one turn per
round, its turn right after ``spectral``'s (its place in the running order). Reported: tones
blocked (all, shorter than 0.1 s, below 900 Hz) and 440 Hz tones blocked, and what the new
score alone flags.

A threshold at the highest of 857 clean scores should pass all but ~0.1 % of other clean
speech; whether it does depends on the score's tail. The *tail* column is the share of 4,500
other training-speaker clips (half in noise; not among the 1,500 fitted on) that the new score
alone flags at its threshold: a clean false-block rate measured on speakers that set neither
the fit nor the threshold. ``--min-spread`` sets the floor under each band's clean spread (dB;
several values give one grid each). Runtime dependencies only; ~4 min per grid on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from try_adversarial_ideas import DATA, ROOT, build_sets
from try_tone_ideas import FIXED, tones_on

from guard import devdata
from guard.analysis import analyse_batch
from guard.classifier import CommandClassifier
from guard.detectors import registry
from guard.detectors.base import tail_model
from guard.detectors.steady_tone import (
    BAND_EDGES_HZ,
    HOP_SAMPLES,
    RUNS,
    WINDOW_SAMPLES,
    SteadyToneDetector,
    steadiness_db,
)
from guard.fusion import calibrate_union, union_false_block, union_fired
from guard.triggers import add_at, tone

FloatArray = npt.NDArray[np.float64]
GRID = [
    (window, hop, runs, top)
    for window in (512, 1024, 2048)
    for hop in (128, 256)
    for runs in ((3, 6), (6, 12))
    for top in (1000, 3000)
]
"""(window samples, hop samples, run lengths, top band edge in Hz)."""
EDGES_HZ = (100, 200, 300, 450, 700, 1000, 1500, 2000, 3000)
SHIPPED = (WINDOW_SAMPLES, HOP_SAMPLES, RUNS, BAND_EDGES_HZ[-1])


def tail_set() -> npt.NDArray[np.float32]:
    """4,500 training-speaker clips the fit set does not hold (half in noise)."""
    rng = np.random.default_rng(9)
    x = devdata.audio(devdata.clips(DATA, "train", 6000, 0)[1500:])
    half = rng.random(len(x)) < 0.5
    x[half] = devdata.add_noise(x[half], devdata.noise(DATA, "train"), rng, 0.3)
    return x


def tones_440(base: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(3)
    w = tone(440.0, 0.25)
    return np.stack([add_at(c, w, 0.1, int(rng.integers(0, len(c) - len(w) + 1))) for c in base])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--min-spread", type=float, action="append", default=None)
    parser.add_argument(
        "--grid", choices=("full", "shipped"), default="full", help="shipped: its own point only"
    )
    args = parser.parse_args()
    spreads = args.min_spread or [SteadyToneDetector().min_spread_db]
    grid_points = GRID if args.grid == "full" else [SHIPPED]
    model = CommandClassifier(ROOT / "models/commands.tflite")
    detectors = [
        d
        for d in registry.load_state(ROOT / "models/detectors")
        if d.name != SteadyToneDetector.name
    ]
    fixed = {d.name: d.threshold() for d in detectors if d.name in FIXED}
    weights = {d.name: d.budget_weight for d in detectors}
    base = devdata.audio(devdata.clips(DATA, "calibrate", None, seed=7))
    toned, params = tones_on(base, 2)
    fit_audio, clean = build_sets()
    audio = {"clean": clean, "tones": toned, "440 Hz": tones_440(base)}
    tail_audio = tail_set()
    det: dict[str, dict[str, FloatArray]] = {}
    for family, x in audio.items():
        analyses = analyse_batch(x, model)
        det[family] = {d.name: d.anomaly_score(analyses) for d in detectors}
    short, low = params[:, 1] < 0.1, params[:, 0] < 900

    def rates(scores: dict[str, dict[str, FloatArray]], th: dict[str, float]) -> dict[str, float]:
        fired = union_fired(scores["tones"], th)
        return {
            "clean": union_false_block(scores["clean"], th),
            "tones": float(fired.mean()),
            "short": float(fired[short].mean()),
            "low": float(fired[low].mean()),
            "440 Hz": float(union_fired(scores["440 Hz"], th).mean()),
        }

    report: dict[str, Any] = {
        "n": {
            "clean": len(audio["clean"]),
            "tones": len(toned),
            "short": int(short.sum()),
            "low": int(low.sum()),
            "440 Hz": len(base),
        },
        "without": rates(det, calibrate_union(det["clean"], 0.01, fixed, weights)),
        "grid": [],
    }
    for (window, hop, runs, top), min_spread in (
        (point, spread) for spread in spreads for point in grid_points
    ):
        edges = tuple(e for e in EDGES_HZ if e <= top)

        grid = {"window_samples": window, "hop_samples": hop, "runs": runs, "band_edges_hz": edges}

        def raw(x: npt.NDArray[np.float32], grid: dict[str, Any] = grid) -> FloatArray:
            return np.stack([steadiness_db(c, **grid) for c in x])

        location, spread = tail_model(raw(fit_audio), min_spread)
        new = {f: ((raw(x) - location) / spread).max(axis=1) for f, x in audio.items()}
        tail = ((raw(tail_audio) - location) / spread).max(axis=1)
        for weight in (0, 1):
            # in running order, as guard calibrate shares the budget: right after spectral
            order = registry.in_running_order([*det["clean"], SteadyToneDetector.name])
            scores = {f: {n: {**det[f], "steady_tone": new[f]}[n] for n in order} for f in det}
            th = calibrate_union(scores["clean"], 0.01, fixed, {**weights, "steady_tone": weight})
            row: dict[str, Any] = {
                "window": window,
                "hop": hop,
                "runs": list(runs),
                "top_hz": top,
                "min_spread_db": min_spread,
                "weight": weight,
                **rates(scores, th),
            }
            row["alone_tones"] = float(np.mean(new["tones"] > th["steady_tone"]))
            row["alone_440"] = float(np.mean(new["440 Hz"] > th["steady_tone"]))
            row["tail"] = float(np.mean(tail > th["steady_tone"]))
            report["grid"].append(row)
            print(row, file=sys.stderr, flush=True)

    n = report["n"]
    print(
        f"{n['tones']} tones on calibrate clips ({n['short']} shorter than 0.1 s, {n['low']} "
        f"below 900 Hz), {n['440 Hz']} 440 Hz tones, {n['clean']} clean clips, "
        f"{len(tail_audio)} tail clips\n"
    )
    print(
        "| window / hop | runs | bands to | min spread | budget turns | tones | < 0.1 s "
        "| < 900 Hz | 440 Hz | alone: tones / 440 Hz | tail |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    w = report["without"]
    print(
        f"| without steady_tone | | | | | {100 * w['tones']:.2f} % | {100 * w['short']:.1f} % "
        f"| {100 * w['low']:.1f} % | {100 * w['440 Hz']:.1f} % | | |"
    )
    for r in report["grid"]:
        print(
            f"| {r['window']} / {r['hop']} | {tuple(r['runs'])} | {r['top_hz']} Hz "
            f"| {r['min_spread_db']:g} dB | {r['weight']} "
            f"| {100 * r['tones']:.2f} % | {100 * r['short']:.1f} % | {100 * r['low']:.1f} % "
            f"| {100 * r['440 Hz']:.1f} % | {100 * r['alone_tones']:.1f} / "
            f"{100 * r['alone_440']:.1f} % | {100 * r['tail']:.2f} % |"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
