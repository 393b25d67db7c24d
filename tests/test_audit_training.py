"""``guard audit`` without ``--model``: a model trained on the audited data (guard/audit_training.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from guard.audit_training import holdout_percent
from guard.classifier import CommandClassifier
from guard.cli import main
from guard.config import load_settings
from guard.dataset_audit import AuditSettings, DatasetAudit
from guard.errors import GuardError
from guard.guard import Guard
from guard.manifest import verified_bytes
from guard.training.dataset import Clip, is_validation_speaker, load_clips

from .conftest import DATA, ROOT
from .test_dataset_audit import GUARD, _poisoned_copy


def test_audit_trains_a_model_on_the_data_and_names_it(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    root, poisoned = _poisoned_copy(tmp_path)
    out, report = tmp_path / "model", tmp_path / "audit.md"
    jsonl = ["--format", "jsonl", "--report", str(report)]
    done = subprocess.run(
        [*GUARD, "audit", str(root), "--train-epochs", "1", "--model-out", str(out), *jsonl],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # stdout is the results only (Keras' export chatter went to stderr): one record per clip
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 27 and len({r["path"] for r in rows}) == 27
    assert poisoned <= {r["path"] for r in rows}
    trained = out / "audit_float.tflite"
    verified_bytes(trained)  # written by guard's trainer, with its manifest
    card = json.loads((out / "audit_float.json").read_text())
    assert card["training"]["epochs"] == 1 and card["training"]["data_dir"] == str(root)
    assert card["training"]["seed"] == 0
    assert "epoch 1/1" in done.stderr and f"guard: trained {trained}" in done.stderr
    text = report.read_text()
    assert f"- activation, spectral_signature: `{trained}` (trained on the audited data" in text
    assert "- knn, label: `" in text and "commands.tflite` (configured)" in text
    assert "- runtime: `" in text and "a model trained here has no fitted detector state" in text

    # The classes here are below the audit's 20 clips: score go's 5 clips with both models to
    # see that the activation-based methods read the trained one and the others do not.
    guard = Guard.from_settings(load_settings(ROOT / "config.yaml"))
    names = [str(p) for p in sorted((root / "go").iterdir())]
    samples = load_clips([Clip(Path(p), "go", "") for p in names])
    settings = AuditSettings(min_class_clips=5)
    own, _ = DatasetAudit(guard, settings).run(names, ["go"] * 5, samples)
    read, _ = DatasetAudit(guard, settings, activations=CommandClassifier(trained)).run(
        names, ["go"] * 5, samples
    )
    for a, b in zip(own, read, strict=True):
        for method in ("knn", "label", "gmm_pca", "runtime"):
            assert a.scores[method] == b.scores[method]
    assert [a.scores["spectral_signature"] for a in own] != [
        b.scores["spectral_signature"] for b in read
    ]


def test_audit_with_the_configured_model_does_not_train(tmp_path: Path) -> None:
    report = tmp_path / "audit.md"
    jsonl = ["--format", "jsonl", "--report", str(report)]
    done = subprocess.run(
        [*GUARD, "audit", str(DATA / "commands"), "--model", "configured", *jsonl],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 24
    assert "guard: trained" not in done.stderr and "epoch" not in done.stderr
    assert "- all methods: `" in report.read_text()


def test_audit_without_tensorflow_says_what_to_do_in_one_line() -> None:
    # A real failing import: None in sys.modules makes ``import tensorflow`` raise ImportError.
    code = (
        "import sys; sys.modules['tensorflow'] = None; from guard.cli import main; "
        f"sys.exit(main(['audit', {str(DATA / 'commands')!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("guard: error: guard audit trains a model")
    assert "pip install 'guard[train]'" in lines[0] and "--model PATH" in lines[0]


def test_training_options_need_training(tmp_path: Path) -> None:
    args = ["audit", str(DATA / "commands"), "--model", "configured", "--train-epochs", "2"]
    assert main(args) == 2
    assert main(["audit", str(DATA / "commands"), "--model", "m.tflite", "--model-out", "x"]) == 2


def test_holdout_is_a_few_speakers_and_never_all() -> None:
    speakers = {f"{i:08x}" for i in range(400)}
    percent = holdout_percent(speakers)
    held = sum(is_validation_speaker(s, percent) for s in speakers)
    assert held == 20  # 5 %
    assert sum(is_validation_speaker(s, holdout_percent({"a", "b"})) for s in ("a", "b")) == 1
    with pytest.raises(GuardError, match="at least two speakers"):
        holdout_percent({"a"})
