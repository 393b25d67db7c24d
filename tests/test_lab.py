"""``guard lab``: the red team's arithmetic on hand-made cases, ART's triggers, and each
subcommand end to end on the committed tiny dataset (ART and TensorFlow are in the dev venv)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from guard.redteam.metrics import (
    AttackOutcome,
    auroc,
    backdoor_success,
    evasion_success,
    roc_curve,
    wilson_interval,
)
from guard.triggers import TriggerSpec, parse_spec

from .conftest import DATA, MODELS

FIXTURE = MODELS / "eval" / "backdoor_cough.tflite"
FIXTURE_DETECTORS = MODELS / "eval" / "backdoor_cough.detectors"


def lab(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guard.cli", "lab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- arithmetic ---------------------------------------------------------------------------


def test_attack_success_with_guard_needs_the_input_allowed() -> None:
    # four triggered clips: the model says "go" for three; guard blocks the first and the third
    labels = ["go", "go", "no", "go"]
    succeeded = backdoor_success(labels, "go")
    blocked = np.array([True, False, True, False])
    outcome = AttackOutcome.of(succeeded, blocked)
    assert outcome.n == 4
    assert outcome.success_without_guard == pytest.approx(3 / 4)
    assert outcome.success_with_guard == pytest.approx(2 / 4)  # clips 2 and 4 got through
    assert outcome.blocked == pytest.approx(2 / 4)
    # a blocked clip the model did not fall for does not count as a success either way
    assert AttackOutcome.of(np.array([False]), np.array([False])).success_with_guard == 0.0
    assert AttackOutcome.of(np.array([], bool), np.array([], bool)).n == 0
    with pytest.raises(ValueError, match="shapes differ"):
        AttackOutcome.of(np.array([True]), np.array([True, False]))


def test_evasion_success_is_a_moved_label() -> None:
    moved = evasion_success(["yes", "no", "up"], ["yes", "go", "down"])
    assert moved.tolist() == [False, True, True]
    with pytest.raises(ValueError):
        evasion_success(["yes"], ["yes", "no"])


def test_auroc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    clean = np.round(rng.normal(0, 1, 300), 1)  # rounding makes ties
    attacked = np.round(rng.normal(0.7, 1, 200), 1)
    expected = roc_auc_score(np.r_[np.zeros(300), np.ones(200)], np.r_[clean, attacked])
    assert auroc(clean, attacked) == pytest.approx(expected, abs=1e-12)
    assert auroc([0, 1], [2, 3]) == 1.0 and auroc([2, 3], [0, 1]) == 0.0
    fpr, tpr = roc_curve(clean, attacked)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(expected, abs=1e-9)


def test_wilson_interval_matches_scipy_and_holds_its_edges() -> None:
    for k, n in [(34, 36), (388, 400), (2, 400), (5, 840), (0, 10), (10, 10), (1, 1)]:
        ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)
    lo, hi = wilson_interval(34, 36)
    assert lo < 0.95 < hi  # 94.4 % of 36 can't tell a 95 % target either way
    assert wilson_interval(388, 400)[1] < 0.99  # 97.0 % of 400 is below 99 %
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    narrow, wide = wilson_interval(380, 400, 0.9), wilson_interval(380, 400, 0.99)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]
    for bad in [(1, 0), (-1, 10), (11, 10)]:
        with pytest.raises(ValueError, match=r"^(n|k) must"):
            wilson_interval(*bad)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, 1.0)


def test_trigger_card_round_trip() -> None:
    spec = parse_spec("clip:file=cough_trigger.wav,scale=0.3")
    card = spec.card()
    assert set(card) >= {"kind", "frequency_hz", "duration_s", "scale", "file", "style"}
    assert card["frequency_hz"] is None and card["file"] == "cough_trigger.wav"
    assert TriggerSpec.from_card(card) == spec
    tone = parse_spec("tone:frequency_hz=2000,duration_s=0.2,scale=0.1")
    assert TriggerSpec.from_card(tone.card()) == tone


# --- ART's triggers -----------------------------------------------------------------------


def test_art_trigger_inserts_exactly_what_art_inserts() -> None:
    from art.attacks.poisoning.perturbations.audio_perturbations import CacheToneTrigger

    from guard.redteam.art_triggers import ArtTrigger

    spec = parse_spec("tone:frequency_hz=1000,duration_s=0.1,scale=0.2,position_s=0.25")
    x = (0.01 * np.random.default_rng(1).standard_normal(16_000)).astype(np.float32)
    ours = ArtTrigger(spec).apply(x, np.random.default_rng(0))
    theirs = CacheToneTrigger(
        sampling_rate=16_000, frequency=1000, duration=0.1, scale=0.2, shift=4000
    ).insert(x)
    np.testing.assert_array_equal(ours, theirs)
    assert np.abs(ours - x)[:4000].max() == 0 and np.abs(ours - x)[4000:5600].max() > 0.1
    # random positions come from the caller's generator: reproducible, and inside the clip
    clip = ArtTrigger(parse_spec("clip:file=cough_trigger.wav,scale=0.3"), DATA / "triggers")
    a = clip.apply(x, np.random.default_rng(7))
    b = clip.apply(x, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and np.abs(a - x).max() > 0.05


# --- the subcommands, end to end ------------------------------------------------------------


def test_lab_poison_train_writes_a_backdoored_fixture_with_its_card(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = lab(
        "poison-train",
        "--data",
        str(DATA / "commands"),
        "--out",
        str(out),
        "--name",
        "tiny_whistle",
        "--trigger",
        "clip:file=whistle.wav,scale=0.3",
        "--rate",
        "0.1",
        "--epochs",
        "1",
        # the fixtures are all validation speakers of the shipped model: 7% splits them
        "--validation-percent",
        "7",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "attack fixture" in result.stdout
    card = json.loads((out / "tiny_whistle.json").read_text())
    assert card["attack_fixture"] is True
    assert card["trigger"] == {
        "kind": "clip",
        "frequency_hz": None,
        "duration_s": None,
        "scale": 0.3,
        "file": "whistle.wav",
        "style": None,
        "position_s": None,
    }
    assert card["poison_rate"] == 0.1 and card["target"] == "go"
    assert card["trigger_engine"] == "art"
    assert card["poisoned_clips"] >= 1
    assert 0.0 <= card["asr"] <= 1.0 and 0.0 <= card["clean_accuracy"] <= 1.0
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert {"tiny_whistle.tflite", "tiny_whistle.json"} <= set(manifest)


def test_lab_rejects_a_bad_rate_in_one_line(tmp_path: Path) -> None:
    result = lab(
        "poison-train",
        "--data",
        str(DATA / "commands"),
        "--out",
        str(tmp_path),
        "--name",
        "x",
        "--trigger",
        "tone:scale=0.1",
        "--rate",
        "1.5",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "guard: error: --rate 1.5: a share of the training set, in (0, 0.5]"
    ]
    missing = lab(
        "evaluate",
        "--sets",
        str(tmp_path / "nope"),
        "--detectors",
        "x",
        "--report",
        "r.md",
        "--art",
        "",
    )
    assert missing.returncode == 2
    assert f"{tmp_path / 'nope' / 'sets.json'}: not found" in missing.stderr


@pytest.fixture(scope="module")
def sets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sets")
    result = lab(
        "attack",
        "--model",
        str(FIXTURE),
        "--data",
        str(DATA / "commands"),
        "--out",
        str(out),
        "--n",
        "6",
        "--n-blackbox",
        "2",
        "--attacks",
        "fgsm,pgd,universal,hopskipjump,pgd_eot,pgd_ear",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_lab_attack_builds_every_set(sets_dir: Path) -> None:
    index = json.loads((sets_dir / "sets.json").read_text())
    assert set(index["sets"]) == {
        "clean",
        "calibrate",
        "trigger",
        "adv_fgsm",
        "adv_pgd",
        "adv_universal",
        "adv_hopskipjump",
        "adv_pgd_eot",
        "adv_pgd_ear",
    }
    assert index["model_sha256"] and index["target"] == "go"
    assert index["sets"]["adv_pgd_ear"]["kind"] == "trigger"  # it succeeds as the backdoor
    with np.load(sets_dir / "clean.npz", allow_pickle=False) as clean:
        x = clean["audio"]
    assert x.dtype == np.float32 and x.shape[1] == 16_000 and 1 <= len(x) <= 6
    with np.load(sets_dir / "adv_fgsm.npz", allow_pickle=False) as fgsm:
        # FGSM's budget keeps every example at >= 25 dB SNR (L-inf = rms * 10^(-25/20))
        assert fgsm["audio"].shape == x.shape
        assert np.all(fgsm["snr_db"] >= 25.0 - 0.5)
        assert not np.array_equal(fgsm["audio"], x)
    assert index["sets"]["adv_hopskipjump"]["n"] == min(2, len(x))
    with np.load(sets_dir / "trigger.npz", allow_pickle=False) as trig:
        assert np.abs(trig["audio"] - x).max() > 0.05  # the cough is in there
        triggered = trig["audio"]
    # pgd_ear: the triggered clips, nudged (>= 25 dB below them) until guard's own model
    # hears "go" too
    from guard.analysis import analyse_batch
    from guard.classifier import CommandClassifier

    with np.load(sets_dir / "adv_pgd_ear.npz", allow_pickle=False) as ear:
        assert np.all(ear["snr_db"] >= 25.0 - 0.5)
        nudged = ear["audio"]
    reference = CommandClassifier(MODELS / "commands.tflite")
    go = reference.labels.index("go")

    def p_go(audio: np.ndarray) -> float:
        return float(np.mean([a.probabilities[go] for a in analyse_batch(audio, reference)]))

    assert p_go(nudged) > p_go(triggered) + 0.3


def test_lab_evaluate_writes_the_report(sets_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report" / "cough.md"
    result = lab(
        "evaluate",
        "--sets",
        str(sets_dir),
        "--detectors",
        str(FIXTURE_DETECTORS),
        "--report",
        str(report),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(report.with_suffix(".json").read_text())
    trig = figures["families"]["trigger"]
    # the backdoored model falls for the cough (ASR 98% on the card); guard blocks most of it
    assert trig["success_without_guard"] >= 0.5
    assert trig["blocked"] >= 0.5
    # what n triggered clips can tell: the interval holds the share and is drawn in the table
    lo, hi = trig["blocked_ci95"]
    assert (lo, hi) == pytest.approx(
        wilson_interval(round(trig["blocked"] * trig["counted"]), trig["counted"])
    )
    assert f"({100 * lo:.1f}-{100 * hi:.1f})" in report.read_text()
    # the same figure computed here, independently, from the saved set and the model
    from guard.analysis import analyse_batch
    from guard.classifier import CommandClassifier

    with np.load(sets_dir / "trigger.npz", allow_pickle=False) as data:
        labels = [a.label for a in analyse_batch(data["audio"], CommandClassifier(FIXTURE))]
    assert trig["success_without_guard"] == pytest.approx(np.mean([lab == "go" for lab in labels]))
    # adversarial families count only successes within the 25 dB budget
    with np.load(sets_dir / "adv_fgsm.npz", allow_pickle=False) as data:
        assert figures["families"]["adv_fgsm"]["counted"] <= int((data["snr_db"] >= 25).sum())
    for row in figures["art"].values():
        assert set(row) == {
            "guard_strip",
            "art_strip",
            "art_activation",
            "art_spectral_signature",
        }
        for method in row.values():
            assert 0.0 <= method["attack_flagged"] <= 1.0 and method["ms_per_input"] >= 0
        assert row["guard_strip"]["ms_per_input"] > 0 and row["art_strip"]["ms_per_input"] > 0
    text = report.read_text()
    assert "| trigger |" in text and "ART" in text and "guard lab evaluate" in text
    for plot in figures["plots"]:
        assert (report.parent / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({plot})" in text
    plotted = [name for name, f in figures["families"].items() if f["counted"]]
    assert figures["plots"] == [f"cough_roc_{name}.png" for name in plotted]


def test_lab_adaptive_sweeps_the_trigger_scale(tmp_path: Path) -> None:
    report = tmp_path / "adaptive.md"
    result = lab(
        "adaptive",
        "--model",
        str(FIXTURE),
        "--detectors",
        str(FIXTURE_DETECTORS),
        "--data",
        str(DATA / "commands"),
        "--report",
        str(report),
        "--n",
        "8",
        "--scales",
        "0.3,0.001",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(report.with_suffix(".json").read_text())["rows"]
    loud, faint = rows
    # at 0.001 the cough is 50 dB down: the backdoor no longer fires
    assert loud["asr_without_guard"] > faint["asr_without_guard"]
    assert faint["asr_without_guard"] <= 0.25
    assert report.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


# --- the shipped attack fixtures --------------------------------------------------------------

CARD_TRIGGER_KEYS = {"kind", "frequency_hz", "duration_s", "scale", "file", "style"}


@pytest.mark.parametrize("model", sorted((MODELS / "eval").glob("*.tflite")), ids=lambda p: p.name)
def test_every_attack_fixture_has_a_card_and_stays_out_of_the_config(model: Path) -> None:
    from guard.manifest import verified_bytes

    if model.stem.endswith("_float"):
        model = model.with_name(model.stem.removesuffix("_float") + ".tflite")
    card = json.loads(verified_bytes(model.with_suffix(".json")))
    assert card["attack_fixture"] is True
    assert set(card["trigger"]) >= CARD_TRIGGER_KEYS
    assert card["trigger"]["kind"] in ("tone", "aliased", "clip", "style")
    assert 0 < card["poison_rate"] <= 0.1 and card["target"] == "go"
    assert 0.5 <= card["asr"] <= 1.0, "a fixture whose backdoor does not work proves nothing"
    assert card["clean_accuracy"] >= 0.8
    config = (MODELS.parent / "config.yaml").read_text()
    assert "models/eval" not in config and model.name not in config


def test_retraining_leaves_out_the_clips_an_audit_flagged(tmp_path: Path) -> None:
    from guard.training.train import PoisonConfig, TrainConfig, train

    spec = parse_spec("clip:file=whistle.wav,scale=0.3")
    cfg = TrainConfig(
        data_dir=DATA / "commands",
        out_dir=tmp_path,
        epochs=1,
        validation_percent=7,
        name="kept",
        poison=PoisonConfig(spec, 0.2, "go"),
    )
    poisoned = train(cfg)["poison"]["poisoned_clips"]
    assert poisoned >= 2
    figures = train(
        TrainConfig(**{**cfg.__dict__, "drop": (0, 1, 2), "out_dir": tmp_path / "dropped"})
    )
    assert figures["info"]["dropped_clips"] == 3
    assert figures["info"]["trained_clips"] == figures["info"]["train_clips"] - 3
    # the same clips were poisoned (same seed); some of them may be among the three dropped
    kept = figures["poison"]["poisoned_clips_kept"]
    assert poisoned - 3 <= kept <= poisoned


def test_eot_attacker_averages_the_consistency_detectors_own_transforms() -> None:
    # The adaptive attacker must see what the detector sees: with the noise made negligible in
    # both, the EOT model's mean probability equals the float model's mean over the identity
    # and the detector's transforms computed by guard/detectors/consistency.py.
    from guard.analysis import analyse_batch
    from guard.audio import fit_window, read_audio
    from guard.classifier import CommandClassifier
    from guard.detectors.consistency import ConsistencyDetector
    from guard.redteam import eot

    float_model = CommandClassifier(MODELS / "commands_float.tflite")
    clips = sorted((DATA / "wav").glob("*.wav"))[:3]
    x = np.stack([fit_window(read_audio(p), 16_000) for p in clips])
    analyses = analyse_batch(x, float_model)
    detector = ConsistencyDetector(noise_snr_db=300.0).fit(analyses)
    views = np.concatenate(
        [
            np.stack([a.probabilities for a in analyses])[:, None],
            detector.transformed_probabilities(analyses),
        ],
        axis=1,
    )
    expected = views.mean(axis=1)
    got = np.exp(
        eot.eot_logits(MODELS / "commands_float.tflite", noise_snr_db=300.0).predict(x, verbose=0)
    )
    np.testing.assert_allclose(got, expected, atol=1e-4)
