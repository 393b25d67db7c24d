"""End to end through the installed ``guard`` command, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import DATA, WAV_FIXTURES, expected_word


def guard(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guard.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_classify_text() -> None:
    result = guard("classify", WAV_FIXTURES[0])
    assert result.returncode == 0, result.stderr
    path, label, confidence, top3 = result.stdout.strip().split("\t")
    assert path == str(WAV_FIXTURES[0])
    assert 0.0 <= float(confidence) <= 1.0
    assert top3.startswith(f"[{label} ")


def test_classify_jsonl_directory() -> None:
    result = guard("classify", "--format", "jsonl", DATA / "wav")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == len(WAV_FIXTURES)
    for row in rows:
        assert set(row) >= {"path", "label", "confidence", "probabilities"}
        assert len(row["probabilities"]) == 12
        assert abs(sum(row["probabilities"].values()) - 1.0) < 0.05
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
    right = sum(r["label"] == expected_word(Path(r["path"])) for r in rows)
    assert right >= 16


def test_bad_files_reported_and_others_processed(tmp_path: Path) -> None:
    (tmp_path / "text.wav").write_text("not audio")
    (tmp_path / "empty.wav").write_bytes(b"")
    good = WAV_FIXTURES[0].read_bytes()
    (tmp_path / "truncated.wav").write_bytes(good[: len(good) // 3])
    empty_dir = tmp_path / "nothing_here"
    empty_dir.mkdir()
    result = guard(
        "classify",
        "--format",
        "jsonl",
        tmp_path / "text.wav",
        WAV_FIXTURES[0],
        tmp_path / "empty.wav",
        tmp_path / "truncated.wav",
        empty_dir,
        tmp_path / "missing.wav",
    )
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 1  # the good file
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 5, result.stderr
    for line, name in zip(
        errors,
        ["text.wav", "empty.wav", "truncated.wav", "nothing_here", "missing.wav"],
        strict=True,
    ):
        assert line.startswith("guard: error: ") and name in line
    assert "Traceback" not in result.stderr


def test_tampered_model_is_one_line_error(tmp_path: Path) -> None:
    import shutil

    from .conftest import MODELS

    for name in ("commands.tflite", "commands.json", "manifest.json"):
        shutil.copy(MODELS / name, tmp_path / name)
    with (tmp_path / "commands.tflite").open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    result = guard("classify", "--model", tmp_path / "commands.tflite", WAV_FIXTURES[0])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "does not match the manifest" in result.stderr
