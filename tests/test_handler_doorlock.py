"""The door-lock handler against the real simulator (HTTP and HTTPS on 127.0.0.1), no mocks."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from guard.analysis import Utterance
from guard.errors import ConfigError
from guard.handlers import doorlock_sim
from guard.handlers.base import Command, Handler, Outcome
from guard.handlers.doorlock import DoorLockHandler
from guard.handlers.doorlock_sim import DoorLockSimulator
from guard.handlers.settings import DoorLockSettings
from guard.verdict import Verdict

TOKEN = "s3cret-door-token-0123456789"


def make_command(transcript: str = "", label: str = "on") -> Command:
    utterance = Utterance(np.zeros(16000, dtype=np.float32), start_s=1.0, source="test")
    verdict = Verdict("allow", label, 0.97, (), {}, {}, 12.0, utterance)
    context = {"transcript": transcript} if transcript else {}
    return Command("door_unlock", verdict, context)


def handler_for(url: str, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> DoorLockHandler:
    monkeypatch.setenv("GUARD_DOOR_TOKEN", TOKEN)
    settings = DoorLockSettings(base_url=url, backoff_s=0.01, **kwargs)
    return DoorLockHandler(settings)


def assert_no_token(outcome: Outcome) -> None:
    assert TOKEN not in outcome.detail
    assert TOKEN not in str(outcome)


@pytest.fixture
def sim() -> Iterator[DoorLockSimulator]:
    with DoorLockSimulator(token=TOKEN, allowed_names=("alice",)) as simulator:
        yield simulator


def test_verify_then_unlock(sim: DoorLockSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = handler_for(sim.url, monkeypatch)
    assert isinstance(handler, Handler)
    outcome = handler.handle(make_command("Alice says unlock the door"))
    assert outcome.ok, outcome.detail
    assert outcome.detail == "unlocked"
    assert sim.state == "unlocked"
    assert [(e["path"], e["result"]) for e in sim.events] == [
        ("/verify", "verified"),
        ("/unlock", "unlocked"),
    ]
    assert_no_token(outcome)


def test_wrong_token_fails_and_stays_locked(
    sim: DoorLockSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARD_DOOR_TOKEN", "wrong-token")
    outcome = DoorLockHandler(DoorLockSettings(base_url=sim.url)).handle(make_command("alice"))
    assert not outcome.ok
    assert outcome.detail == "HTTP 401 from /verify"
    assert sim.state == "locked"
    assert sim.count("/verify") == 1  # a 4xx is not retried


def test_unknown_speaker_refused(sim: DoorLockSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = handler_for(sim.url, monkeypatch).handle(make_command("mallory unlock"))
    assert not outcome.ok
    assert outcome.detail == "verify refused: unknown speaker"
    assert sim.state == "locked"
    assert sim.count("/unlock") == 0


def test_missing_transcript_refused_when_names_required(
    sim: DoorLockSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = handler_for(sim.url, monkeypatch).handle(make_command(""))
    assert not outcome.ok and "verify refused" in outcome.detail


def post(url: str, body: dict[str, Any], token: str = TOKEN) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=2) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def test_simulator_tickets_are_one_time() -> None:
    with DoorLockSimulator(token=TOKEN) as sim:
        ticket = post(f"{sim.url}/verify", {"transcript": ""})["ticket"]
        assert post(f"{sim.url}/unlock", {"ticket": ticket})["unlocked"] is True
        assert post(f"{sim.url}/lock", {})["locked"] is True
        replay = post(f"{sim.url}/unlock", {"ticket": ticket})
        assert replay == {"unlocked": False, "reason": "ticket invalid or already used"}
        assert sim.state == "locked"
        with urllib.request.urlopen(f"{sim.url}/state", timeout=2) as response:
            assert json.loads(response.read()) == {"state": "locked"}


def test_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    with DoorLockSimulator(token=TOKEN, delay_s=2.0) as sim:
        handler = handler_for(sim.url, monkeypatch, timeout_s=0.2, retries=2)
        start = time.monotonic()
        outcome = handler.handle(make_command())
        elapsed = time.monotonic() - start
        assert not outcome.ok
        assert "timeout" in outcome.detail
        assert elapsed < 1.5  # a timeout is not retried
        assert sim.state == "locked"


def test_retries_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    with DoorLockSimulator(token=TOKEN, fail_first=100) as sim:
        outcome = handler_for(sim.url, monkeypatch, retries=2).handle(make_command())
        assert not outcome.ok
        assert outcome.detail.startswith("HTTP 503 from /verify")
        assert sim.count("/verify") == 3  # one attempt and two retries
        assert sim.count("/unlock") == 0


def test_retry_recovers_from_one_5xx(monkeypatch: pytest.MonkeyPatch) -> None:
    with DoorLockSimulator(token=TOKEN, fail_first=1) as sim:
        outcome = handler_for(sim.url, monkeypatch, retries=1).handle(make_command())
        assert outcome.ok, outcome.detail
        assert sim.count("/verify") == 2
        assert sim.state == "unlocked"


def test_connection_refused_is_a_failed_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    with DoorLockSimulator(token=TOKEN) as sim:
        url = sim.url  # a port that was just free and is now closed
    outcome = handler_for(url, monkeypatch, retries=1).handle(make_command())
    assert not outcome.ok
    assert "cannot connect" in outcome.detail
    assert "after 2 attempts" in outcome.detail


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_needs_the_ca_file(
    self_signed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed
    with DoorLockSimulator(token=TOKEN, certfile=cert, keyfile=key) as sim:
        assert sim.url.startswith("https://127.0.0.1:")
        untrusted = handler_for(sim.url, monkeypatch).handle(make_command())
        assert not untrusted.ok
        assert "TLS certificate of 127.0.0.1:" in untrusted.detail
        assert "not trusted: self-signed certificate" in untrusted.detail
        assert sim.state == "locked"
        assert sim.count("/verify") == 0  # the request never left the client

        trusted = handler_for(sim.url, monkeypatch, ca_file=cert).handle(make_command())
        assert trusted.ok, trusted.detail
        assert sim.state == "unlocked"
        assert_no_token(untrusted)


def test_missing_ca_file_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="cannot load CA file"):
        handler_for("https://lock.example:8443", monkeypatch, ca_file=tmp_path / "none.pem")


@pytest.mark.parametrize(
    "url", ["http://192.168.1.20:8080", "http://lock.local", "http://10.0.0.1", "ftp://127.0.0.1"]
)
def test_plain_http_only_for_loopback(url: str) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        DoorLockSettings(base_url=url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:1", "http://localhost", "http://[::1]:80"])
def test_plain_http_allowed_for_loopback(url: str) -> None:
    assert DoorLockSettings(base_url=url).base_url == url


def test_token_from_credentials_file(
    sim: DoorLockSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "door.token"
    token_file.write_text(f"  {TOKEN}\n", encoding="utf-8")
    monkeypatch.setenv("GUARD_DOOR_TOKEN", "wrong-token")  # the file wins
    handler = DoorLockHandler(DoorLockSettings(base_url=sim.url, token_file=token_file))
    outcome = handler.handle(make_command("alice"))
    assert outcome.ok, outcome.detail
    assert sim.state == "unlocked"


def test_missing_token_names_its_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUARD_DOOR_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="GUARD_DOOR_TOKEN"):
        DoorLockHandler(DoorLockSettings())
    missing = tmp_path / "absent.token"
    with pytest.raises(ConfigError, match=str(missing)) as info:
        DoorLockHandler(DoorLockSettings(token_file=missing))
    assert "\n" not in str(info.value)


def test_token_never_in_details(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every failure path's detail, and the simulator's events, stay free of the token."""
    outcomes = []
    with DoorLockSimulator(token=TOKEN, allowed_names=("alice",)) as sim:
        handler = handler_for(sim.url, monkeypatch, retries=0)
        outcomes.append(handler.handle(make_command("alice")))
        outcomes.append(handler.handle(make_command(f"bob {TOKEN}")))
        url = sim.url
        assert all(TOKEN not in str(e) for e in sim.events)
    outcomes.append(handler.handle(make_command()))
    outcomes.append(handler_for(url, monkeypatch, retries=0).handle(make_command()))
    for outcome in outcomes:
        assert_no_token(outcome)
    assert [o.ok for o in outcomes] == [True, False, False, False]


def test_simulator_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m guard.handlers.doorlock_sim`` serves and prints one JSON line per event."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SIM_TOKEN": TOKEN}
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "guard.handlers.doorlock_sim", "--port", str(port)),
            *("--token-env", "SIM_TOKEN", "--allow", "alice"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"door-lock simulator on http://127.0.0.1:{port}" in banner
        handler = handler_for(f"http://127.0.0.1:{port}", monkeypatch)
        assert handler.handle(make_command("this is alice")).ok
        events = [json.loads(process.stdout.readline()) for _ in range(2)]
        assert [(e["path"], e["result"]) for e in events] == [
            ("/verify", "verified"),
            ("/unlock", "unlocked"),
        ]
        process.terminate()  # SIGTERM: a clean stop
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_simulator_command_line_without_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    parser = argparse.ArgumentParser()
    doorlock_sim.add_arguments(parser)
    assert doorlock_sim.run(parser.parse_args(["--token-env", "NO_SUCH_TOKEN_VAR"])) == 2
