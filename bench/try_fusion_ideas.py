"""Two more ideas for the adversarial misses, and what the DeepFool misses are, on a dev set.

    python bench/try_fusion_ideas.py [--cache PATH] [--json PATH]

Everything comes from the "calibrate" half of the validation speakers (guard/devdata.py),
never from the "evaluate" half docs/DETECTION.md reports, and the shipped state scores it as
it is. ART's FGSM, PGD and DeepFool attack **all 857 calibrate clips** (seed 5) through the
float twin; kept are the examples that change the int8 model's label at SNR >= 25 dB, as in
bench/eval_detection.py. Tones and aliased tones: bench/try_adversarial_ideas.py's 400 of
each. The clean side: the 857 calibrate clips, half in held-back noise, as
tools/build_detectors.py draws them (the fused thresholds were calibrated on them).

1. **A fitted fusion (stacking).** A logistic regression over every active detector's score,
   each in units of its clean tail (``tail_model`` on 3,000 training-speaker clips the
   detectors were not fitted on, half in noise: the negatives), trained on half the speakers'
   attack examples and half the tones (at random: a tone clip's speaker is not kept; each
   family weighed equally) and tested on the other half (2 folds). Its score joins the fused
   union as one more detector, the union recalibrated to 1 % of the clean clips with it given
   1, 3 or 6 turns per round. A second fit ("all") adds the consistency detector's parts (JS
   divergence, retreat, top probability, margin, entropy, each transform's divergence).
2. **int8 against float.** The shipped float model (models/commands_float.tflite) beside the
   int8 one: score = JS divergence between their predictions. ART attacks the float twin, and
   the int8 model's label is what counted; a minimal perturbation that sits just across the
   float boundary might leave the two apart.
3. **What the DeepFool misses are**: the clean clip's confidence before the attack, the
   example's SNR, and whether the example still changes the label once written as 16-bit or
   24-bit PCM (what a WAV file or a converter carries).

Needs ``../shared/data`` and the ``redteam`` extra; ~10 min on 2 cores the first time (the
attacks; ``--cache`` keeps them), ~1 min after.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from guard import devdata
from guard.analysis import Analysis, analyse_batch
from guard.calibration import union_rule
from guard.classifier import CommandClassifier
from guard.detectors.base import tail_model
from guard.detectors.consistency import ConsistencyDetector, js_divergence, retreat
from guard.fusion import calibrate_union, union_fired
from guard.guard import Guard
from guard.redteam.adversarial import snr_db
from guard.redteam.metrics import auroc

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared/data/speech_commands"
ATTACKS = ("fgsm", "pgd", "deepfool")
POSITIVES = (*ATTACKS, "tone", "aliased")
Float64Array = npt.NDArray[np.float64]


def dev_attacks(model: CommandClassifier, cache: Path | None) -> dict[str, Any]:
    """Each attack on all calibrate clips: the examples, which to keep, the clean clips, their
    speakers and labels before."""
    if cache is not None and cache.is_file():
        with np.load(cache) as data:
            return {k: data[k] for k in data.files}
    from guard.redteam.adversarial import art_classifier, generate
    from guard.redteam.twin import load_twin

    chosen = devdata.clips(DATA, "calibrate", None, seed=5)
    x = devdata.audio(chosen)
    before = np.array([a.label for a in analyse_batch(x, model)])
    out: dict[str, Any] = {"x": x, "speaker": np.array([c.speaker for c in chosen])}
    out["before"] = before
    art = art_classifier(load_twin(model.model_path, logits=True))
    for name in ATTACKS:
        x_adv = generate(name, art, x)
        after = np.array([a.label for a in analyse_batch(x_adv, model)])
        out[name], out[f"{name}_after"] = x_adv, after
        out[f"{name}_keep"] = (after != before) & (snr_db(x, x_adv) >= 25.0)
        print(f"{name}: {int(out[f'{name}_keep'].sum())} of {len(x)} kept", file=sys.stderr)
    if cache is not None:
        savez: Any = np.savez  # numpy's stub types **kwds against allow_pickle
        savez(cache, **out)
    return out


def probabilities(model: CommandClassifier, x: npt.NDArray[np.float32]) -> Float64Array:
    rows = [
        a.probabilities for i in range(0, len(x), 64) for a in analyse_batch(x[i : i + 64], model)
    ]
    return np.asarray(rows, np.float64)


class Rows:
    """Per clip: every detector's score (the verdict's), the fused block, and the consistency
    detector's parts."""

    def __init__(self, guard: Guard, x: npt.NDArray[np.float32]) -> None:
        consistency = next(d for d in guard.detectors if isinstance(d, ConsistencyDetector))
        names = [d.name for d in guard.detectors]
        scores, parts, blocked = [], [], []
        for i in range(0, len(x), 64):
            analyses: list[Analysis] = analyse_batch(x[i : i + 64], guard.model)
            verdicts = [guard.decide(a, time.perf_counter()) for a in analyses]
            scores.append([[v.scores.get(n, np.nan) for n in names] for v in verdicts])
            blocked += [not v.allowed for v in verdicts]
            p = np.stack([a.probabilities for a in analyses]).astype(np.float64)
            moved = consistency.transformed_probabilities(analyses)
            agreed = moved.mean(axis=1)
            ranked = np.sort(p, axis=1)
            each = [js_divergence(p, moved[:, k]) for k in range(moved.shape[1])]
            parts.append(
                np.column_stack(
                    [
                        js_divergence(p, agreed),
                        retreat(p, agreed, consistency.margin_floor),
                        ranked[:, -1],
                        ranked[:, -1] - ranked[:, -2],
                        -(p * np.log(p + 1e-12)).sum(axis=1),
                        *each,
                    ]
                )
            )
        self.names = names
        self.scores = np.concatenate([np.asarray(s, np.float64) for s in scores])
        self.parts = np.concatenate(parts)
        self.blocked = np.array(blocked, dtype=bool)

    def score(self, name: str) -> Float64Array:
        return self.scores[:, self.names.index(name)]

    def features(self, kind: str) -> Float64Array:
        # detectors that score every clip alike (inactive on guard's own model) carry nothing
        active = [self.score(n) for n in self.names if np.ptp(self.score(n)) > 0]
        if kind == "all":
            return np.column_stack([*active, self.parts])
        return np.column_stack(active)


def stacking(
    rows: dict[str, Rows], folds: dict[str, npt.NDArray[np.bool_]], guard: Guard, kind: str
) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    fixed, weights = union_rule(guard.detectors)
    median, scale = tail_model(rows["negatives"].features(kind), 1e-9)

    def z(family: str) -> Float64Array:
        return np.asarray(np.clip((rows[family].features(kind) - median) / scale, -10, 30))

    clean = rows["clean"]
    out: dict[str, Any] = {}
    for turns in (1, 3, 6):
        counts = {f: np.zeros(3, int) for f in POSITIVES}
        clean_rate = []
        for side in (True, False):
            train = [z("negatives")] + [z(f)[folds[f] == side] for f in POSITIVES]
            y = np.concatenate([np.zeros(len(train[0]))] + [np.ones(len(t)) for t in train[1:]])
            w = np.concatenate(
                [np.full(len(train[0]), 0.5 / len(train[0]))]
                + [np.full(len(t), 0.5 / (len(POSITIVES) * len(t))) for t in train[1:]]
            )
            fit = LogisticRegression(C=0.1, max_iter=2000).fit(
                np.concatenate(train), y, sample_weight=w * len(y)
            )
            calibrate = {n: clean.score(n) for n in clean.names}
            calibrate["stack"] = fit.decision_function(z("clean"))
            thresholds = calibrate_union(
                calibrate, 0.01, fixed=fixed, weights={**weights, "stack": turns}
            )
            clean_rate.append(float(union_fired(calibrate, thresholds).mean()))
            for f in POSITIVES:
                test = folds[f] != side
                scores = {n: rows[f].score(n)[test] for n in clean.names}
                scores["stack"] = fit.decision_function(z(f))[test]
                counts[f] += [
                    int(union_fired(scores, thresholds).sum()),
                    int(rows[f].blocked[test].sum()),
                    int(test.sum()),
                ]
        out[str(turns)] = {
            "clean_false_block": float(np.mean(clean_rate)),
            "blocked": {f: c[0] / c[2] for f, c in counts.items()},
            "shipped": {f: c[1] / c[2] for f, c in counts.items()},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=None, help="keep the attacks' audio here")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    import try_adversarial_ideas as ideas

    guard = Guard.from_config(ROOT / "config.yaml")
    attacked = dev_attacks(guard.model, args.cache)
    train_clips = devdata.clips(DATA, "train", None, 0)[1500:4500]  # after the fitted 1,500
    negatives = devdata.audio(train_clips)
    rng = np.random.default_rng(11)
    half = rng.random(len(negatives)) < 0.5
    negatives[half] = devdata.add_noise(negatives[half], devdata.noise(DATA, "train"), rng, 0.3)
    audio = {"negatives": negatives, "clean": ideas.calibrate_set(), **ideas.triggered(400)}
    for name in ATTACKS:
        audio[name] = attacked[name][attacked[f"{name}_keep"]]
    rows = {f: Rows(guard, x) for f, x in audio.items() if f != "whistle"}

    split = np.random.default_rng(0)
    speakers = np.unique(attacked["speaker"])
    first = set(split.permutation(speakers)[: len(speakers) // 2])
    folds = {
        name: np.array([s in first for s in attacked["speaker"][attacked[f"{name}_keep"]]])
        for name in ATTACKS
    }
    folds |= {f: split.random(len(audio[f])) < 0.5 for f in ("tone", "aliased")}
    report: dict[str, Any] = {"n": {f: len(x) for f, x in audio.items() if f != "whistle"}}
    report["stacking"] = {k: stacking(rows, folds, guard, k) for k in ("scores", "all")}

    float_model = CommandClassifier(ROOT / "models/commands_float.tflite")

    def int8_float(x: npt.NDArray[np.float32]) -> tuple[Float64Array, float]:
        """The divergence per clip, and the share of clips whose label the two agree on."""
        p8, pf = probabilities(guard.model, x), probabilities(float_model, x)
        return js_divergence(p8, pf), float(np.mean(p8.argmax(axis=1) == pf.argmax(axis=1)))

    clean_js, _ = int8_float(audio["clean"])
    fixed, weights = union_rule(guard.detectors)
    calibrate = {n: rows["clean"].score(n) for n in rows["clean"].names} | {"int8_float": clean_js}
    thresholds = calibrate_union(calibrate, 0.01, fixed=fixed, weights={**weights, "int8_float": 3})
    report["int8_float"] = {}
    for f in POSITIVES:
        js, same_label = int8_float(audio[f])
        scores = {n: rows[f].score(n) for n in rows[f].names} | {"int8_float": js}
        report["int8_float"][f] = {
            "auroc": auroc(clean_js, js),
            "alone": float(np.mean(js > thresholds["int8_float"])),
            "blocked": float(union_fired(scores, thresholds).mean()),
            "shipped": float(rows[f].blocked.mean()),
            "same_label": same_label,
        }

    keep = attacked["deepfool_keep"]
    x, x_adv, before = attacked["x"][keep], attacked["deepfool"][keep], attacked["before"][keep]
    blocked = rows["deepfool"].blocked
    confident = probabilities(guard.model, x).max(axis=1)
    snr = snr_db(x, x_adv)
    anatomy: dict[str, Any] = {
        "n": len(x),
        "missed": int((~blocked).sum()),
        "clean_confidence_median": {
            "missed": float(np.median(confident[~blocked])),
            "blocked": float(np.median(confident[blocked])),
        },
        "snr_db_median": {
            "missed": float(np.median(snr[~blocked])),
            "blocked": float(np.median(snr[blocked])),
        },
        "blocked_when_clean_confidence_at_least_0.8": float(blocked[confident >= 0.8].mean()),
        "clean_confidence_at_least_0.8": int((confident >= 0.8).sum()),
    }
    for bits in (16, 24):
        full = 2.0 ** (bits - 1)
        pcm = (np.clip(np.round(x_adv * full), -full, full - 1) / full).astype(np.float32)
        still = np.array([a.label for a in analyse_batch(pcm, guard.model)]) != before
        anatomy[f"pcm{bits}"] = {
            "still_fooling": int(still.sum()),
            "of_missed": int(still[~blocked].sum()),
            "blocked_among_still_fooling": float(blocked[still].mean()),
        }
    report["deepfool_misses"] = anatomy

    print(f"n: {report['n']}\n")
    for kind, by_turns in report["stacking"].items():
        print(f"1. stacking over {kind}: blocked, shipped -> with the fitted score (2-fold)")
        for turns, r in by_turns.items():
            cells = ", ".join(
                f"{f} {100 * r['shipped'][f]:.1f} -> {100 * r['blocked'][f]:.1f} %"
                for f in POSITIVES
            )
            print(f"   {turns} turns (clean {100 * r['clean_false_block']:.2f} %): {cells}")
    print("\n2. int8 against float (3 turns): AUROC, alone, union (shipped)")
    for f, r in report["int8_float"].items():
        print(
            f"   {f}: {r['auroc']:.3f}, {100 * r['alone']:.1f} %, "
            f"{100 * r['blocked']:.1f} % ({100 * r['shipped']:.1f} %)"
        )
    print(f"\n3. the DeepFool misses: {json.dumps(anatomy, indent=2)}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
