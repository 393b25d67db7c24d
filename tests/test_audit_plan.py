"""``guard train --audit AUDIT.jsonl [--relabel-heard]``: from an audit's output to the clips a
retrain leaves out or relabels (guard/training/audit_plan.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from guard.errors import GuardError
from guard.training import audit_plan
from guard.training.train import TrainConfig, split_clips

from .conftest import DATA

GUARD = [sys.executable, "-m", "guard.cli"]


def test_relabel_word_keeps_another_heard_command_and_drops_the_rest() -> None:
    word = audit_plan.relabel_word
    assert word("go", "left", 0.9, 0.5) == "left"
    assert word("go", "_unknown_", 0.6, 0.5) == "_unknown_"
    assert word("go", "left", 0.4, 0.5) is None  # not sure enough
    assert word("go", "go", 0.99, 0.5) is None  # it hears the label: nothing better to give
    assert word("go", "_silence_", 0.99, 0.5) is None  # a flagged clip is no silence
    assert word("go", "banana", 0.99, 0.5) is None  # not a label the trainer knows


def _records(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_plan_drops_or_relabels_flagged_training_clips(tmp_path: Path) -> None:
    cfg = TrainConfig(data_dir=DATA / "commands", out_dir=tmp_path, validation_percent=7)
    train_clips, val_clips = split_clips(cfg)
    a, b, c = train_clips[0], train_clips[1], train_clips[2]
    other = "left" if a.label != "left" else "right"
    records = [
        {"path": str(a.path), "flagged": True, "heard": other, "heard_probability": 0.9},
        {"path": str(b.path), "flagged": True, "heard": b.label, "heard_probability": 0.9},
        {"path": str(c.path), "flagged": False, "heard": other, "heard_probability": 0.9},
        {"path": str(val_clips[0].path), "flagged": True, "heard": other, "heard_probability": 1},
    ]
    flagged = audit_plan.read_flagged(_records(tmp_path / "audit.jsonl", records))
    assert len(flagged) == 3
    relabelled = audit_plan.plan(train_clips, flagged, 0.5)
    assert relabelled.relabel == ((0, other),) and relabelled.drop == (1,)
    assert relabelled.flagged == 3 and relabelled.outside == 1
    dropped = audit_plan.plan(train_clips, flagged, None)
    assert dropped.relabel == () and dropped.drop == (0, 1)


def test_bad_audit_output_is_one_line_naming_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "audit.jsonl"
    bad.write_text('{"path": "a.wav", "flagged": false}\n[1, 2]\n')
    with pytest.raises(GuardError, match=r"audit.jsonl:2: not a `guard audit --format jsonl`"):
        audit_plan.read_flagged(bad)
    with pytest.raises(GuardError, match=r"nope.jsonl: cannot read the audit output"):
        audit_plan.read_flagged(tmp_path / "nope.jsonl")
    cfg = TrainConfig(data_dir=DATA / "commands", out_dir=tmp_path, validation_percent=7)
    clip = split_clips(cfg)[0][0]
    old = _records(tmp_path / "old.jsonl", [{"path": str(clip.path), "flagged": True}])
    with pytest.raises(GuardError, match="no heard/heard_probability"):
        audit_plan.plan([clip], audit_plan.read_flagged(old), 0.5)


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    data = ["--data", str(DATA / "commands"), "--validation-percent", "7", "--epochs", "1"]
    return subprocess.run(
        [sys.executable, "-m", "guard.cli", "train", *data, "--out", str(tmp_path / "m"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_guard_train_leaves_out_and_relabels_what_the_audit_flagged(tmp_path: Path) -> None:
    cfg = TrainConfig(data_dir=DATA / "commands", out_dir=tmp_path, validation_percent=7)
    train_clips = split_clips(cfg)[0]
    first, second = train_clips[0], train_clips[1]
    other = "left" if first.label != "left" else "right"
    audit = _records(
        tmp_path / "audit.jsonl",
        [
            {"path": str(first.path), "flagged": True, "heard": other, "heard_probability": 0.8},
            {"path": str(second.path), "flagged": True, "heard": "go", "heard_probability": 0.2},
        ],
    )
    done = _train(tmp_path, "--audit", str(audit), "--relabel-heard")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 flagged; left out 1 training clips, relabelled 1, 0 not in the training" in (
        done.stderr
    )
    info = json.loads((tmp_path / "m" / "commands.figures.json").read_text())["info"]
    assert info["dropped_clips"] == 1 and info["relabelled_clips"] == 1
    assert info["trained_clips"] == len(train_clips) - 1


def test_guard_train_refuses_an_audit_of_another_folder(tmp_path: Path) -> None:
    audit = _records(
        tmp_path / "audit.jsonl",
        [{"path": "/elsewhere/go/x.wav", "flagged": True, "heard": "no", "heard_probability": 1}],
    )
    done = _train(tmp_path, "--audit", str(audit))
    assert done.returncode != 0
    assert "none of its 1 flagged clips is a training clip" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = _train(tmp_path, "--relabel-heard")
    assert done.returncode != 0 and "--relabel-heard needs --audit" in done.stderr


def test_guard_train_reads_a_real_guard_audit_output(tmp_path: Path) -> None:
    """The paths ``guard audit`` prints are the paths ``guard train`` reads: audit a poisoned
    copy of the tiny set, then retrain on it with the audit's output."""
    from .test_dataset_audit import _poisoned_copy

    root, poisoned = _poisoned_copy(tmp_path)
    audit = subprocess.run(
        [*GUARD, "audit", str(root), "--model", "configured", "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert audit.returncode == 0, audit.stderr
    out = tmp_path / "audit.jsonl"
    out.write_text(audit.stdout)
    flagged = [json.loads(line) for line in audit.stdout.splitlines()]
    flagged = [r for r in flagged if r["flagged"]]
    assert {r["path"] for r in flagged} >= poisoned
    cfg = TrainConfig(data_dir=root, out_dir=tmp_path, validation_percent=7)
    train_paths = {str(c.path) for c in split_clips(cfg)[0]}
    in_train = [r for r in flagged if r["path"] in train_paths]
    assert in_train, "no flagged clip in the training split: the test proves nothing"
    label = {str(c.path): c.label for c in split_clips(cfg)[0]}  # "two" trains as _unknown_
    relabelled = [
        r
        for r in in_train
        if audit_plan.relabel_word(label[r["path"]], r["heard"], r["heard_probability"], 0.5)
    ]
    data = ["--data", str(root), "--validation-percent", "7", "--epochs", "1"]
    done = subprocess.run(
        [
            *GUARD,
            "train",
            *data,
            "--out",
            str(tmp_path / "m"),
            "--audit",
            str(out),
            "--relabel-heard",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    expected = (
        f"{len(flagged)} flagged; left out {len(in_train) - len(relabelled)} training clips, "
        f"relabelled {len(relabelled)}, {len(flagged) - len(in_train)} not in the training"
    )
    assert expected in done.stderr
