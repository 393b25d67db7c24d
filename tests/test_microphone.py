"""The microphone path for real: PulseAudio's null sink is the room, its monitor the microphone.

The test plays a WAV into the sink with ``paplay``; ``guard run`` captures it through
sounddevice (ALSA's ``pulse`` device), and the expected verdicts appear in the audit log. A
second test checks the systemd notify protocol: READY, WATCHDOG only while audio arrives,
STOPPING on SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from guard.audio import read_audio
from guard.audit import read_records
from guard.handlers.doorlock_sim import DoorLockSimulator

from .conftest import ROOT
from .test_daemon import GUARD, TOKEN, _env, _records, _wait_for, write_config

DEMO = ROOT / "demo"


@pytest.fixture
def pulse(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A PulseAudio daemon with a 16 kHz mono null sink ``vsink``; yields its environment."""
    if shutil.which("pulseaudio") is None:
        pytest.fail("pulseaudio is not installed: run tools/system-deps.sh test")
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    subprocess.run(
        [
            "pulseaudio",
            "-D",
            "-n",
            "--exit-idle-time=-1",
            "--load=module-native-protocol-unix",
            "--load=module-null-sink sink_name=vsink rate=16000 channels=1",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    try:
        ok = _wait_for(
            lambda: (
                subprocess.run(
                    ["pactl", "info"], env=env, capture_output=True, check=False
                ).returncode
                == 0
            ),
            10,
        )
        assert ok, "PulseAudio did not start"
        subprocess.run(["pactl", "set-default-source", "vsink.monitor"], env=env, check=True)
        yield env
    finally:
        pid_file = runtime / "pulse" / "pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)


def test_guard_hears_commands_played_into_the_room(tmp_path: Path, pulse: dict[str, str]) -> None:
    stream = [
        np.zeros(8000, np.float32),
        read_audio(DEMO / "go_clean.wav"),
        np.zeros(16000, np.float32),
        read_audio(DEMO / "go_with_3khz_tone.wav"),
        np.zeros(16000, np.float32),
    ]
    played = tmp_path / "room.wav"
    wavfile.write(played, 16000, np.round(np.concatenate(stream) * 32767).astype(np.int16))
    with DoorLockSimulator(token=TOKEN) as lock:
        config = write_config(tmp_path, lock.url, audio={"device": "pulse", "block_ms": 20})
        proc = subprocess.Popen(
            [*GUARD, "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**_env(), **pulse, "GUARD_DOOR_TOKEN": TOKEN},
        )
        try:
            time.sleep(3.0)  # model load, stream open, first callback (0.5-1.2 s here)
            assert proc.poll() is None, proc.communicate()[1]
            subprocess.run(
                ["paplay", "--device=vsink", str(played)], env=pulse, check=True, timeout=30
            )
            audit = tmp_path / "audit.jsonl"
            assert _wait_for(lambda: len(_records(audit)) >= 2, 20), "verdicts did not appear"
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        rows = read_records(tmp_path / "audit.jsonl")
        assert [(r["label"], r["verdict"]) for r in rows] == [("go", "allow"), ("go", "block")]
        assert rows[0]["source"] == "mic:pulse"
        assert rows[0]["handlers"] == {"door_lock": "ok: unlocked"}
        assert rows[1]["handlers"] == {} and "spectral" in rows[1]["reasons"]
        gap_s = rows[1]["start_s"] - rows[0]["start_s"]
        assert gap_s == pytest.approx((len(stream[1]) + 16000) / 16000, abs=0.1)
        assert lock.count("/unlock") == 1


def test_watchdog_pings_only_while_audio_arrives(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.settimeout(0.2)
    messages: list[tuple[float, str]] = []

    def drain(until_s: float) -> None:
        while time.monotonic() < until_s:
            try:
                messages.append((time.monotonic(), server.recv(4096).decode()))
            except TimeoutError:
                continue

    config = write_config(tmp_path, "http://127.0.0.1:9")
    env = {**_env(), "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "200000"}
    proc = subprocess.Popen(
        [*GUARD, "run", "--config", str(config), "--source", "-", "--quiet"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None
    try:
        drain(time.monotonic() + 4.0)  # start-up
        assert any("READY=1" in m for _, m in messages), messages
        silence = np.zeros(1600, "<i2").tobytes()  # 0.1 s blocks of digital silence
        start_audio = time.monotonic()
        for _ in range(15):
            proc.stdin.write(silence)
            proc.stdin.flush()
            drain(time.monotonic() + 0.1)
        stop_audio = time.monotonic()
        drain(stop_audio + 2.0)  # the "microphone" is now dead (pipe open, no data)
        proc.send_signal(signal.SIGTERM)
        drain(time.monotonic() + 2.0)
        proc.stdin.close()
        proc.wait(timeout=30)
    finally:
        proc.kill()
        server.close()
    pings = [t for t, m in messages if m == "WATCHDOG=1"]
    assert len(pings) >= 5
    assert all(start_audio - 0.05 <= t <= stop_audio + 0.5 for t in pings)
    assert any(m == "STOPPING=1" for _, m in messages)
    assert proc.returncode == 0
