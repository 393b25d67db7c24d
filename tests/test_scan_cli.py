"""``guard scan`` and ``guard calibrate`` end to end, as a user runs them."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from guard.classifier import CommandClassifier
from guard.detectors.consistency import ConsistencyDetector
from guard.detectors.second_ear import SecondEarDetector
from guard.detectors.strip import StripDetector
from guard.manifest import verified_bytes

from .conftest import DATA, MODELS, ROOT
from .test_cli import guard


def _rows(stdout: str) -> dict[str, dict[str, Any]]:
    return {Path(str(r["path"])).name: r for r in map(json.loads, stdout.splitlines())}


def test_scan_demo_jsonl() -> None:
    result = guard("scan", "--format", "jsonl", ROOT / "demo")
    assert result.returncode == 0, result.stderr
    rows = _rows(result.stdout)
    assert len(rows) == 8
    for row in rows.values():
        assert set(row) >= {
            "path",
            "label",
            "confidence",
            "verdict",
            "reasons",
            "scores",
            "thresholds",
            "latency_ms",
        }
        assert row["verdict"] in ("allow", "block")
        assert set(row["scores"]) == set(row["thresholds"])
    # the aliased ultrasonic tone and the 3 kHz tone are caught; their clean twins pass
    assert rows["stop_with_aliased_21khz.wav"]["verdict"] == "block"
    assert rows["go_with_3khz_tone.wav"]["verdict"] == "block"
    assert "spectral" in rows["go_with_3khz_tone.wav"]["reasons"]
    for word in ("go", "stop", "yes", "off"):
        assert rows[f"{word}_clean.wav"]["verdict"] == "allow"


def test_scan_bad_file_exit_code(tmp_path: Path) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00")
    result = guard("scan", tmp_path / "broken.wav", ROOT / "demo" / "yes_clean.wav")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("guard: error: ") and "broken.wav" in result.stderr
    assert len(result.stdout.splitlines()) == 1


def test_calibrate_writes_state_the_scan_uses(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    before = {p.name: p.read_bytes() for p in (MODELS / "detectors").iterdir()}
    result = guard("calibrate", DATA / "wav", "--out", out, "--target-false-block", "0.1")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(verified_bytes(out / "calibration.json"))
    assert report["calibration_false_block"] <= 0.1
    assert report["fit_utterances"] + report["calibration_utterances"] == 20
    # the owner sees what the configured (shipped) state did on the same held-out recordings
    old = report["configured_state"]
    shipped = json.loads(verified_bytes(MODELS / "detectors" / "calibration.json"))
    assert old["thresholds"] == shipped["thresholds"]
    assert 0.0 <= old["false_block"] <= 1.0
    assert f"the configured state {MODELS / 'detectors'} blocks" in result.stdout
    assert "thresholds, new (configured): " in result.stdout
    # 8 held-out recordings and a 10 % target: no detector may block one of them alone
    n = report["calibration_utterances"]
    top = report["at_highest_clean_score"]
    assert "steady_tone" in top and "strip" not in top  # strip is inactive: scores all 0
    assert f"{', '.join(top)}: block none of the {n} held-out recordings" in result.stdout
    assert f"each may block about {1 / (n + 1):.2%} of new recordings like them" in result.stdout
    names = ("spectral", "steady_tone", "gmm", "strip", "activation", "consistency", "second_ear")
    for name in (*names, "second_ear_consistency"):
        verified_bytes(out / f"{name}.npz")
    scan = guard("scan", "--format", "jsonl", "--detectors", out, ROOT / "demo")
    assert scan.returncode == 0, scan.stderr
    assert len(scan.stdout.splitlines()) == 8
    # the shipped state is untouched
    assert {p.name: p.read_bytes() for p in (MODELS / "detectors").iterdir()} == before


def test_calibrate_for_a_vendor_model_builds_in_the_second_ear(tmp_path: Path) -> None:
    """With someone else's model, the state carries guard's own model as the second ear; with
    the shipped model there is nothing to cross-check."""
    vendor = MODELS / "eval" / "backdoor_cough.tflite"
    out = tmp_path / "vendor"
    result = guard("calibrate", DATA / "wav", "--out", out, "--model", vendor)
    assert result.returncode == 0, result.stderr[-2000:]
    # the configured state is for guard's own model: nothing to compare the vendor's with
    assert json.loads(verified_bytes(out / "calibration.json"))["configured_state"] is None
    assert "the configured state" not in result.stdout
    ear = SecondEarDetector.load(out / "second_ear.npz")
    shipped = CommandClassifier(MODELS / "commands.tflite")
    assert ear.active_ and ear.labels == ("go",)
    assert ear.reference is not None and ear.reference.sha256 == shipped.sha256
    scan = guard("scan", "--format", "jsonl", "--model", vendor, "--detectors", out, DATA / "wav")
    assert scan.returncode == 0, scan.stderr
    rows = [json.loads(line) for line in scan.stdout.splitlines()]
    assert all("second_ear" in r["scores"] for r in rows)
    # only what the vendor's model calls "go" is asked about
    assert all(r["scores"]["second_ear"] == 0.0 for r in rows if r["label"] != "go")
    shipped_state = SecondEarDetector.load(MODELS / "detectors" / "second_ear.npz")
    assert not shipped_state.active_
    # STRIP the same way: it looks for a trigger the vendor's model learned, not guard's own
    assert StripDetector.load(out / "strip.npz").active_
    assert any(r["scores"]["strip"] > 0 for r in rows)
    shipped_strip = StripDetector.load(MODELS / "detectors" / "strip.npz")
    assert not shipped_strip.active_ and shipped_strip.reference_sha256_ == shipped.sha256


def test_calibrate_fits_strip_with_the_configured_blends(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"model:\n  path: {MODELS / 'eval' / 'backdoor_cough.tflite'}\n"
        f"  reference_path: {MODELS / 'commands.tflite'}\n"
        "detectors:\n  enabled: [spectral, strip]\n  strip_blends: 3\n"
    )
    out = tmp_path / "three"
    result = guard("calibrate", DATA / "wav", "--out", out, "--config", cfg)
    assert result.returncode == 0, result.stderr[-2000:]
    strip = StripDetector.load(out / "strip.npz")
    assert strip.active_ and len(strip.bank_) == 3


def test_calibrate_reads_every_folder_given(tmp_path: Path) -> None:
    """The owner's recordings and a general speech folder (visitors' voices) in one state."""
    import shutil

    wavs = sorted((DATA / "wav").glob("*.wav"))
    for i, path in enumerate(wavs):
        folder = tmp_path / ("mine" if i % 2 else "general")
        folder.mkdir(exist_ok=True)
        shutil.copy(path, folder / path.name)
    out = tmp_path / "state"
    result = guard(
        "calibrate", tmp_path / "mine", tmp_path / "general", "--out", out,
        "--target-false-block", "0.1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(verified_bytes(out / "calibration.json"))
    assert report["fit_utterances"] + report["calibration_utterances"] == len(wavs)
    assert report["data"] == f"{tmp_path / 'mine'}, {tmp_path / 'general'}"


def test_calibrate_keeps_a_configured_threshold(tmp_path: Path) -> None:
    """``--keep-threshold consistency`` keeps that detector as the configured state has it
    (its threshold and the clean tails its score is scaled by) and recalibrates the others
    around it."""
    out = tmp_path / "kept"
    result = guard(
        "calibrate", DATA / "wav", "--out", out, "--target-false-block", "0.1",
        "--keep-threshold", "consistency",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(verified_bytes(out / "calibration.json"))
    shipped = json.loads(verified_bytes(MODELS / "detectors" / "calibration.json"))
    assert report["thresholds"]["consistency"] == shipped["thresholds"]["consistency"]
    assert report["kept_thresholds"] == ["consistency"]
    assert report["thresholds"]["spectral"] != shipped["thresholds"]["spectral"]
    with (
        np.load(io.BytesIO(verified_bytes(out / "consistency.npz"))) as mine,
        np.load(io.BytesIO(verified_bytes(MODELS / "detectors" / "consistency.npz"))) as theirs,
    ):
        assert sorted(mine.files) == sorted(theirs.files)
        for key in mine.files:
            if key != "__params__":  # a state from before the retreat is saved with its weight
                np.testing.assert_array_equal(mine[key], theirs[key])
    kept = ConsistencyDetector.load(out / "consistency.npz")
    configured = ConsistencyDetector.load(MODELS / "detectors" / "consistency.npz")
    assert kept.get_params() == configured.get_params()


def test_calibrate_says_when_a_configured_threshold_is_for_another_score(tmp_path: Path) -> None:
    """A configured state from before the consistency detector's retreat: its threshold is on
    the divergence alone, and the comparison line says the two are different scores."""
    import shutil

    from guard.manifest import write_manifest

    state = tmp_path / "older"
    state.mkdir()
    for name in ("spectral.npz", "calibration.json"):
        shutil.copy(MODELS / "detectors" / name, state / name)
    with np.load(io.BytesIO(verified_bytes(MODELS / "detectors" / "consistency.npz"))) as shipped:
        noise = shipped["noise"]
    np.savez(
        state / "consistency.npz",
        noise=noise,
        __params__=np.array(json.dumps({"noise_snr_db": 20.0, "floor_db": 40.0, "seed": 0})),
        __threshold__=np.array(0.0983),
    )
    write_manifest(state, ["spectral.npz", "calibration.json", "consistency.npz"])
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"detectors:\n  state_dir: {state}\n  enabled: [spectral, consistency]\n")
    out = tmp_path / "new"
    result = guard("calibrate", DATA / "wav", "--out", out, "--config", cfg)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("thresholds, new"))
    assert "(0.0983, another score: other parameters)" in line
    assert re.search(r"spectral [\d.]+ \([\d.]+\),", line)  # same parameters: no remark
    report = json.loads(verified_bytes(out / "calibration.json"))
    assert report["params"]["consistency"]["retreat_weight"] == 0.05
    assert report["configured_state"]["params"]["consistency"]["retreat_weight"] == 0.0


def test_calibrate_keep_threshold_errors_are_one_line(tmp_path: Path) -> None:
    result = guard("calibrate", DATA / "wav", "--out", tmp_path / "x", "--keep-threshold", "gmn")
    assert result.returncode == 2
    assert result.stderr.startswith("guard: error: --keep-threshold gmn: not an enabled detector")
    vendor = MODELS / "eval" / "backdoor_cough.tflite"
    result = guard(
        "calibrate", DATA / "wav", "--out", tmp_path / "x", "--model", vendor,
        "--keep-threshold", "spectral",
    )  # fmt: skip
    assert result.returncode == 2
    assert "was fitted for another model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_calibrate_names_a_missing_folder(tmp_path: Path) -> None:
    result = guard("calibrate", DATA / "wav", tmp_path / "typo", "--out", tmp_path / "x")
    assert result.returncode == 2
    assert result.stderr.strip() == f"guard: error: {tmp_path / 'typo'}: no such file or directory"
    assert not (tmp_path / "x").exists()


def test_calibrate_refuses_too_few(tmp_path: Path) -> None:
    result = guard("calibrate", ROOT / "demo", "--out", tmp_path / "x")
    assert result.returncode == 2
    assert "need at least 10 recordings" in result.stderr


def test_state_without_a_configured_detector_is_one_line(tmp_path: Path) -> None:
    """State from an older guard lacks the detectors added since: refused, naming the file."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(MODELS / "detectors", old)
    (old / "second_ear_consistency.npz").unlink()
    result = guard("scan", "--detectors", old, ROOT / "demo" / "yes_clean.wav")
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"guard: error: {old / 'second_ear_consistency.npz'}: not found")
    assert "guard calibrate" in line
