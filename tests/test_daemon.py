"""``guard run`` end to end: real processes, real audio files, the real door-lock simulator.

Every test checks the audit log: exactly one record per utterance, blocked utterances never
reach a handler, and the daemon survives signals and bad reloads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from guard.audio import read_audio
from guard.audit import read_records
from guard.handlers.doorlock_sim import DoorLockSimulator

from .conftest import ROOT

DEMO = ROOT / "demo"
TOKEN = "test-door-token-4f2a"
GUARD = [sys.executable, "-m", "guard.cli"]


def write_config(tmp_path: Path, lock_url: str, **overrides: Any) -> Path:
    config: dict[str, Any] = {
        "model": {"path": str(ROOT / "models" / "commands.tflite")},
        "detectors": {"state_dir": str(ROOT / "models" / "detectors")},
        "policy": {"actions": {"go": "door_unlock", "on": "lights_on"}, "refractory_s": 5.0},
        "handlers": {
            "chains": {"door_unlock": ["door_lock"]},
            "door_lock": {"base_url": lock_url, "timeout_s": 2.0, "retries": 0},
        },
        "audit": {"log_path": str(tmp_path / "audit.jsonl"), "clip_dir": str(tmp_path / "clips")},
    }
    for key, value in overrides.items():
        config[key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture
def lock() -> Iterator[DoorLockSimulator]:
    with DoorLockSimulator(token=TOKEN) as sim:
        yield sim


def _env() -> dict[str, str]:
    return {**os.environ, "GUARD_DOOR_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}


def run_guard(*args: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """``guard ARGS`` as a process with the door token set; text output unless ``input`` is
    bytes."""
    kwargs.setdefault("text", not isinstance(kwargs.get("input"), bytes))
    return subprocess.run(
        [*GUARD, *args], capture_output=True, timeout=timeout, env=_env(), check=False, **kwargs
    )


def test_fast_replay_decides_each_clip_once_and_only_allowed_go_unlocks(
    tmp_path: Path, lock: DoorLockSimulator
) -> None:
    config = write_config(tmp_path, lock.url)
    done = run_guard("run", "--config", str(config), "--source", str(DEMO), "--fast")
    assert done.returncode == 0, done.stderr
    rows = read_records(tmp_path / "audit.jsonl")
    by_file = {Path(r["source"]).name: r for r in rows}
    assert len(rows) == len(by_file) == 8  # one utterance per demo clip, one record each
    assert by_file["go_clean.wav"]["verdict"] == "allow"
    assert by_file["go_clean.wav"]["action"] == "door_unlock"
    assert by_file["go_clean.wav"]["handlers"] == {"door_lock": "ok: unlocked"}
    for name in ("go_with_3khz_tone.wav", "stop_with_aliased_21khz.wav"):
        assert by_file[name]["verdict"] == "block"
        assert by_file[name]["handlers"] == {}
        assert Path(by_file[name]["clip"]).is_file()  # blocked clips are kept for review
    # The triggered "go" never reached the lock: one verify, one unlock, all from go_clean.
    assert lock.count("/verify") == 1 and lock.count("/unlock") == 1
    assert lock.state == "unlocked"
    # Records are written when an utterance is finished (after its handlers), so an allowed
    # command can be recorded after a later blocked one; start_s gives the stream order.
    starts = [r["start_s"] for r in rows]
    assert len(set(starts)) == len(starts) and all(r["end_s"] > r["start_s"] for r in rows)
    assert "8 utterances" in done.stderr
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    assert len(lines) == 8 and sum("BLOCK" in ln for ln in lines) == sum(
        r["verdict"] == "block" for r in rows
    )


def test_raw_pcm_on_stdin(tmp_path: Path, lock: DoorLockSimulator) -> None:
    config = write_config(tmp_path, lock.url)
    clips = [read_audio(DEMO / n) for n in ("go_clean.wav", "go_with_3khz_tone.wav")]
    gap = np.zeros(8000, np.float32)
    stream = np.concatenate([gap, clips[0], gap, clips[1], gap])
    pcm = np.round(stream * 32767).astype("<i2").tobytes()
    # A stray odd byte at the end is ignored.
    done = run_guard(
        "run", "--config", str(config), "--source", "-", "--quiet", input=pcm + b"\x01"
    )
    assert done.returncode == 0, done.stderr.decode()
    rows = sorted(read_records(tmp_path / "audit.jsonl"), key=lambda r: r["start_s"])
    assert [r["verdict"] for r in rows] == ["allow", "block"]
    assert all(r["source"] == "stdin" for r in rows)
    assert rows[0]["start_s"] < 0.5 < rows[0]["end_s"]
    assert done.stdout == b""  # --quiet


def _wait_for(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _records(path: Path) -> list[dict[str, Any]]:
    return read_records(path) if path.exists() else []


def test_sigterm_drains_sighup_reloads_and_a_bad_reload_is_refused(
    tmp_path: Path, lock: DoorLockSimulator
) -> None:
    config = write_config(tmp_path, lock.url)
    audit = tmp_path / "other-audit.jsonl"
    proc = subprocess.Popen(
        [*GUARD, "run", "--config", str(config), "--source", str(DEMO), "--audit-log", str(audit)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert _wait_for(lambda: len(_records(audit)) >= 1, 60), "no record within 60 s"
        good = config.read_text()
        config.write_text("policy: {confidence_floor: 7}\n")  # out of range
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        config.write_text(good)
        proc.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: len(_records(audit)) >= 3, 60)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "reload refused" in err and "policy.confidence_floor" in err
    assert "config reloaded" in err
    rows = _records(audit)
    assert not (tmp_path / "audit.jsonl").exists()  # --audit-log overrides the config
    assert 3 <= len(rows) < 8  # stopped early (the demo stream lasts ~12 s paced)
    assert f"{len(rows)} utterances" in err  # every utterance decided got its record
    assert len({r["start_s"] for r in rows}) == len(rows)


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("handlers:\n  chains: {door_unlock: [door_lock]}\n")
    done = run_guard("run", "--config", str(config), "--source", str(DEMO), "--fast", timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"guard: error: {config}: handlers.chains.door_unlock[0]: handler 'door_lock' is not "
        "configured (add a handlers.door_lock section)"
    )


def test_slow_lock_times_out_the_action_but_the_record_is_written(tmp_path: Path) -> None:
    with DoorLockSimulator(token=TOKEN, delay_s=3.0) as slow:
        config = write_config(tmp_path, slow.url)
        data = yaml.safe_load(config.read_text())
        data["handlers"]["timeout_s"] = 0.5
        config.write_text(yaml.safe_dump(data))
        done = run_guard(
            "run", "--config", str(config), "--source", str(DEMO / "go_clean.wav"), timeout=60
        )
    assert done.returncode == 0, done.stderr
    (row,) = read_records(tmp_path / "audit.jsonl")
    assert row["action"] == "door_unlock"
    assert row["handlers"] == {"door_lock": "failed: no answer within 0.5 s"}
    assert json.dumps(row).count(TOKEN) == 0


def test_make_demo_blocks_the_backdoor_trigger_of_the_vendor_model() -> None:
    done = run_guard("demo", str(DEMO), "--fast", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    shipped, backdoored = done.stdout.split("== 2.")
    cough = [ln for ln in backdoored.splitlines() if "off_with_cough.wav" in ln]
    assert len(cough) == 1 and "BLOCK  go" in cough[0]  # the vendor model hears "go"; blocked
    for part in (shipped, backdoored):
        assert "door lock saw: /verify -> verified, /unlock -> unlocked; now unlocked" in part
        assert "8 utterances" in part


def test_speech_then_lock_chain_and_every_verdict_on_mqtt(
    tmp_path: Path, lock: DoorLockSimulator
) -> None:
    from .test_handler_mqtt import Broker, Subscriber

    broker = Broker(tmp_path)
    broker.start()
    try:
        sub = Subscriber(broker.port, ["guard/verdict", "guard/command", "guard/blocked_count"])
        config = write_config(
            tmp_path,
            lock.url,
            policy={"actions": {"go": "door_unlock", "off": "lights_off"}},
            handlers={
                "chains": {"door_unlock": ["speech", "door_lock"], "lights_off": ["mqtt"]},
                "door_lock": {"base_url": lock.url, "retries": 0},
                "speech": {"engine": "sphinx"},
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "client_id": "guard-test"},
            },
        )
        done = run_guard(
            "run", "--config", str(config), "--source", str(DEMO), "--fast", timeout=180
        )
        assert done.returncode == 0, done.stderr
        rows = read_records(tmp_path / "audit.jsonl")
        verdicts = [json.loads(sub.wait_for("guard/verdict")[0]) for _ in rows]
        command = json.loads(sub.wait_for("guard/command")[0])
        counts = []
        while True:
            try:
                counts.append(int(sub.wait_for("guard/blocked_count", 1.0)[0]))
            except Exception:
                break
        sub.close()
    finally:
        broker.stop()
    by_file = {Path(r["source"]).name: r for r in rows}
    go = by_file["go_clean.wav"]["handlers"]
    assert list(go) == ["speech", "door_lock"]
    assert go["speech"].startswith("ok: transcript")
    assert go["door_lock"] == "ok: unlocked"
    assert lock.events[0]["path"] == "/verify"
    assert by_file["off_clean.wav"]["handlers"] == {"mqtt": "ok: published to guard/command"}
    assert command["action"] == "lights_off"
    assert sorted(v["verdict"] for v in verdicts) == sorted(r["verdict"] for r in rows)
    assert counts and counts[-1] == sum(r["verdict"] == "block" for r in rows)


def test_overload_blocks_and_records_never_forwards(
    tmp_path: Path, lock: DoorLockSimulator
) -> None:
    """Audio arrives much faster than real time on stdin with room for one waiting utterance:
    the surplus is blocked as overload, recorded, and never reaches the lock."""
    config = write_config(
        tmp_path, lock.url, audio={"utterance_queue": 1, "ring_blocks": 4096, "block_ms": 100}
    )
    go = read_audio(DEMO / "go_clean.wav")
    gap = np.zeros(8000, np.float32)
    stream = np.concatenate([np.concatenate([gap, go]) for _ in range(40)] + [gap])
    pcm = np.round(stream * 32767).astype("<i2").tobytes()
    done = run_guard("run", "--config", str(config), "--source", "-", "--quiet", input=pcm)
    assert done.returncode == 0, done.stderr.decode()
    rows = read_records(tmp_path / "audit.jsonl")
    assert len(rows) == 40  # every utterance has its one record
    overloaded = [r for r in rows if r["reasons"] == ["overload"]]
    assert overloaded, "the stream was not fast enough to overload analysis"
    assert all(r["verdict"] == "block" and r["handlers"] == {} for r in overloaded)
    assert f"({len(overloaded)} for overload)" in done.stderr.decode()
    unlocked = [r for r in rows if r["handlers"].get("door_lock") == "ok: unlocked"]
    assert all(r["verdict"] == "allow" and r["reasons"] == [] for r in unlocked)
    assert lock.count("/unlock") == len(unlocked)  # every unlock is a verified utterance
