from __future__ import annotations

import dataclasses
import errno
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from guard.audio import read_audio
from guard.audit import AuditLog, ClipStore, read_records
from guard.guard import Guard
from guard.policy import Policy, PolicySettings
from guard.verdict import Verdict

from .conftest import ROOT


@pytest.fixture(scope="module")
def verdicts() -> dict[str, Verdict]:
    guard = Guard.from_config(ROOT / "config.yaml")
    return {
        p.stem: guard.check(read_audio(p), source=str(p))
        for p in sorted((ROOT / "demo").glob("*.wav"))
    }


def test_policy_floor_refractory_and_blocked(verdicts: dict[str, Verdict]) -> None:
    go = verdicts["go_clean"]
    assert go.allowed and go.label == "go"
    policy = Policy(PolicySettings(refractory_s=5.0, confidence_floor=0.5))
    assert policy.decide(go, now_s=100.0).action == "door_unlock"
    again = policy.decide(go, now_s=102.0)
    assert again.action is None and again.why.startswith("refractory")
    assert policy.decide(go, now_s=105.5).action == "door_unlock"
    blocked = verdicts["go_with_3khz_tone"]
    assert not blocked.allowed and policy.decide(blocked, now_s=1000.0) == type(again)(
        None, "blocked"
    )
    unsure = dataclasses.replace(go, confidence=0.3)
    assert "below" in policy.decide(unsure, now_s=2000.0).why
    assert policy.decide(verdicts["yes_clean"], now_s=3000.0).why == "no action for this command"


def test_audit_one_record_per_verdict_with_saved_clips(
    tmp_path: Path, verdicts: dict[str, Verdict]
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", ClipStore(tmp_path / "clips", max_bytes=10_000_000))
    threads = [
        threading.Thread(target=log.record, args=(v,), kwargs={"handlers": {"door": "skipped"}})
        for v in verdicts.values()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    rows = read_records(tmp_path / "audit.jsonl")
    assert len(rows) == len(verdicts)
    for row in rows:
        assert {
            "time",
            "start_s",
            "end_s",
            "label",
            "confidence",
            "verdict",
            "reasons",
            "scores",
            "handlers",
            "clip",
        } <= set(row)
        if row["verdict"] == "block":
            rate, pcm = wavfile.read(row["clip"])
            assert rate == 16_000 and pcm.dtype == np.int16 and len(pcm) > 8000
        else:
            assert row["clip"] is None


def test_clip_retention_keeps_the_newest(tmp_path: Path, verdicts: dict[str, Verdict]) -> None:
    v = verdicts["go_with_3khz_tone"]
    clip_bytes = 44 + 2 * len(v.utterance.samples)
    store = ClipStore(tmp_path, max_bytes=int(2.5 * clip_bytes))  # room for two clips
    paths = [store.save(v, f"2026010{i}T000000") for i in range(5)]
    left = sorted(tmp_path.glob("*.wav"))
    assert len(left) == 2 and set(left) <= set(paths)
    assert paths[-1] in left


def test_a_clip_the_disk_refuses_leaves_the_record_and_no_partial_wav(
    tmp_path: Path, verdicts: dict[str, Verdict], caplog: pytest.LogCaptureFixture
) -> None:
    v = verdicts["go_with_3khz_tone"]
    assert not v.allowed
    store = ClipStore(tmp_path / "clips", max_bytes=10_000_000)
    full = store.directory / f"20260101T000000_{v.decision}_{v.label}.wav"
    full.symlink_to("/dev/full")  # the kernel answers every write with ENOSPC
    with pytest.raises(OSError) as refused:
        store.save(v, "2026-01-01T00:00:00")
    assert refused.value.errno == errno.ENOSPC
    assert not full.exists() and not full.is_symlink()  # nothing half-written is left
    # through the audit log: the clip folder is gone (a file sits where it was)
    (tmp_path / "clips2").mkdir()
    log = AuditLog(tmp_path / "audit.jsonl", ClipStore(tmp_path / "clips2", 10_000_000))
    (tmp_path / "clips2").rmdir()
    (tmp_path / "clips2").write_text("not a folder")
    with caplog.at_level("WARNING", logger="guard.audit"):
        row = log.record(v)
    log.close()
    assert row["clip"] is None and row["clip_error"].startswith("NotADirectoryError")
    assert "clips2: clip not saved" in caplog.text
    assert read_records(tmp_path / "audit.jsonl") == [row]


def test_a_record_the_disk_refuses_goes_to_the_journal_and_the_next_starts_clean(
    tmp_path: Path, verdicts: dict[str, Verdict], caplog: pytest.LogCaptureFixture
) -> None:
    v = verdicts["yes_clean"]
    full = tmp_path / "full.jsonl"
    full.symlink_to("/dev/full")
    log = AuditLog(full)
    with caplog.at_level("ERROR", logger="guard.audit"), pytest.raises(OSError) as refused:
        log.record(v, {"door": "skipped"})
    assert refused.value.errno == errno.ENOSPC
    journal = caplog.records[-1].getMessage()
    assert "record not appended" in journal
    assert json.loads(journal[journal.index("{") :])["label"] == "yes"  # the whole record
    log.close()
    # a power cut mid-write tore the last line: the next record starts on its own line
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.record(verdicts["stop_clean"])
    log.close()
    with path.open("a") as fh:
        fh.write('{"time":"2026-01-01T00:00:00.000+00:00","verdict":"bl')
    log = AuditLog(path)
    log.record(v)
    log.record(v)
    log.close()
    with pytest.raises(ValueError, match=r"audit.jsonl:2: not a JSON record"):
        read_records(path)
    # logrotate moved the log away (no copytruncate) before the first record: the records go
    # where the descriptor points, and the torn-line check reads that file, not the path
    log = AuditLog(path)
    rotated = tmp_path / "audit.jsonl.1"
    path.rename(rotated)
    with rotated.open("a") as fh:
        fh.write('{"time":"2026-01-01T00:00:01.000+00:00","verdict":"al')
    log.record(v)
    log.close()
    assert not path.exists()
    skipped_rotated: list[str] = []
    assert len(read_records(rotated, skipped_rotated)) == 4 and len(skipped_rotated) == 2
    path.write_text(rotated.read_text())  # back where the rest of the test reads it
    skipped: list[str] = []
    rows = read_records(path, skipped)
    assert [r["label"] for r in rows] == ["stop", "yes", "yes", "yes"]
    assert len(skipped) == 2 and skipped[0].startswith(f"{path}:2: not a JSON record")
    from .test_cli import guard as run_guard

    out = run_guard("review", path)
    assert out.returncode == 0, out.stderr
    assert "4 utterances" in out.stdout
    assert f"warning: {path}:2: not a JSON record" in out.stderr and "skipped" in out.stderr


def test_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text(json.dumps({"verdict": "allow"}) + "\n{broken\n")
    with pytest.raises(ValueError, match=r"audit.jsonl:2: not a JSON record"):
        read_records(path)


def test_guard_review_filters_and_shows(tmp_path: Path, verdicts: dict[str, Verdict]) -> None:
    from .test_cli import guard as run_guard

    log = AuditLog(tmp_path / "audit.jsonl")
    for v in verdicts.values():
        log.record(v)
    log.close()
    blocked = sum(not v.allowed for v in verdicts.values())
    out = run_guard("review", tmp_path / "audit.jsonl", "--verdict", "block")
    assert out.returncode == 0, out.stderr
    assert f"{blocked} utterances: 0 allowed, {blocked} blocked" in out.stdout
    assert re.search(r"blocked by: .*\bspectral \d+", out.stdout), out.stdout
    one = run_guard("review", tmp_path / "audit.jsonl", "--label", "stop", "--show", "1")
    assert json.loads(one.stdout)["label"] == "stop"
    none = run_guard("review", tmp_path / "audit.jsonl", "--since", "2999-01-01")
    assert "0 utterances" in none.stdout
    bad = run_guard("review", tmp_path / "audit.jsonl", "--since", "yesterday")
    assert bad.returncode == 2 and "not an ISO 8601 time: 'yesterday'" in bad.stderr
    missing = run_guard("review", tmp_path / "nope.jsonl")
    assert missing.returncode == 2 and "nope.jsonl: cannot read audit log" in missing.stderr
