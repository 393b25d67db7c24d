"""The MQTT handler against a real mosquitto broker started for the test, no mocks."""

from __future__ import annotations

import json
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from guard.analysis import Utterance
from guard.handlers.base import Command, Handler, VerdictSink
from guard.handlers.mqtt import MqttHandler
from guard.handlers.settings import MqttSettings
from guard.verdict import Decision, Verdict

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class Broker:
    """A mosquitto process on 127.0.0.1:``port`` (stoppable and restartable on the same port)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n",
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 5
        while True:  # wait until it accepts connections
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail("mosquitto did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A running mosquitto, terminated after the test."""
    server = Broker(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Subscriber:
    """A plain paho client collecting every message under ``topics``, one queue per topic."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self._queues: dict[str, queue.Queue[tuple[str, bool]]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-subscriber-{id(self)}"
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in topics])
        assert self._subscribed.wait(5)

    def _queue(self, topic: str) -> queue.Queue[tuple[str, bool]]:
        with self._lock:
            return self._queues.setdefault(topic, queue.Queue())

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._queue(message.topic).put((message.payload.decode(), bool(message.retain)))

    def wait_for(self, topic: str, timeout_s: float = 5.0) -> tuple[str, bool]:
        """The next message on ``topic``: (payload, retained)."""
        return self._queue(topic).get(timeout=timeout_s)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_verdict(decision: Decision = "allow", label: str = "on") -> Verdict:
    utterance = Utterance(np.zeros(16000, dtype=np.float32), start_s=3.5, source="mic")
    reasons = () if decision == "allow" else ("spectral",)
    return Verdict(
        decision, label, 0.91, reasons, {"spectral": 0.2}, {"spectral": 0.5}, 8.0, utterance
    )


def record_of(verdict: Verdict) -> dict[str, Any]:
    return {"time": "2025-01-01T00:00:00.000+00:00", "source": "mic", **verdict.to_record()}


@pytest.fixture
def settings(broker: Broker) -> MqttSettings:
    return MqttSettings(
        port=broker.port, client_id="guard-test", node_id="guard_test", timeout_s=3.0
    )


def test_discovery_and_birth_are_retained(settings: MqttSettings) -> None:
    handler = MqttHandler(settings)
    try:
        # A command acknowledged by the broker comes after the on-connect messages (MQTT keeps
        # one client's order), so these are stored by now; a later subscriber gets them retained.
        assert handler.handle(Command("lights_on", make_verdict())).ok
        sub = Subscriber(settings.port, ["homeassistant/#", "guard/status", "guard/blocked_count"])
        configs = {}
        for node in ("last_command", "blocked_inputs"):
            payload, retained = sub.wait_for(f"homeassistant/sensor/guard_test/{node}/config")
            assert retained
            configs[node] = json.loads(payload)
        assert sub.wait_for("guard/status") == ("online", True)
        assert sub.wait_for("guard/blocked_count") == ("0", True)
        sub.close()
    finally:
        handler.close()

    last, blocked = configs["last_command"], configs["blocked_inputs"]
    assert last["unique_id"] == "guard_test_last_command"
    assert last["state_topic"] == "guard/last_command"
    assert blocked["unique_id"] == "guard_test_blocked_inputs"
    assert blocked["state_topic"] == "guard/blocked_count"
    for config in (last, blocked):
        assert config["name"]
        assert config["availability_topic"] == "guard/status"
        assert config["payload_available"] == "online"
        assert config["payload_not_available"] == "offline"
        assert config["device"]["identifiers"] == ["guard_test"]


def test_command_published(settings: MqttSettings) -> None:
    sub = Subscriber(settings.port, ["guard/command"])
    handler = MqttHandler(settings)
    try:
        assert isinstance(handler, Handler)
        command = Command("lights_on", make_verdict(), {"transcript": "turn on"})
        outcome = handler.handle(command)
        assert outcome.ok, outcome.detail
        assert outcome.detail == "published to guard/command"
        payload, retained = sub.wait_for("guard/command")
        assert not retained
        message = json.loads(payload)
        assert message["action"] == "lights_on"
        assert message["label"] == "on"
        assert message["confidence"] == pytest.approx(0.91)
        assert message["transcript"] == "turn on"
        assert message["time"].endswith("+00:00")

        assert handler.handle(Command("lights_on", make_verdict())).ok
        assert "transcript" not in json.loads(sub.wait_for("guard/command")[0])
    finally:
        handler.close()
        sub.close()


def test_verdicts_and_blocked_counter(settings: MqttSettings) -> None:
    sub = Subscriber(settings.port, ["guard/verdict", "guard/blocked_count", "guard/last_command"])
    handler = MqttHandler(settings)
    late: Subscriber | None = None
    try:
        assert isinstance(handler, VerdictSink)
        assert handler.wait_connected()
        assert sub.wait_for("guard/blocked_count") == ("0", False)  # published on connect

        handler.on_verdict(record_of(make_verdict("block", "off")))
        verdict = json.loads(sub.wait_for("guard/verdict")[0])
        assert verdict["verdict"] == "block"
        assert verdict["label"] == "off"
        assert verdict["reasons"] == ["spectral"]
        assert "scores" not in verdict
        assert sub.wait_for("guard/blocked_count") == ("1", False)  # live delivery

        handler.on_verdict(record_of(make_verdict("allow", "up")))
        assert json.loads(sub.wait_for("guard/verdict")[0])["verdict"] == "allow"
        assert sub.wait_for("guard/last_command") == ("up", False)

        handler.on_verdict(record_of(make_verdict("block", "go")))
        assert sub.wait_for("guard/blocked_count") == ("2", False)
        assert handler.blocked_count == 2

        # A late subscriber gets the retained sensor values, and the status on close.
        late = Subscriber(
            settings.port, ["guard/blocked_count", "guard/last_command", "guard/status"]
        )
        assert late.wait_for("guard/blocked_count") == ("2", True)
        assert late.wait_for("guard/last_command") == ("up", True)
        assert late.wait_for("guard/status") == ("online", True)
        handler.close()
        assert late.wait_for("guard/status") == ("offline", False)
    finally:
        handler.close()
        sub.close()
        if late is not None:
            late.close()


def test_closed_port_fails_fast_without_raising() -> None:
    settings = MqttSettings(port=free_port(), timeout_s=2.0)
    start = time.monotonic()
    handler = MqttHandler(settings)
    try:
        outcome = handler.handle(Command("lights_on", make_verdict()))
        elapsed = time.monotonic() - start
        handler.on_verdict(record_of(make_verdict("block")))  # must not raise either
    finally:
        handler.close()  # may wait up to 1 s for paho's reconnect sleep
    assert elapsed < 1.0
    assert not outcome.ok
    assert "cannot connect to MQTT broker 127.0.0.1:" in outcome.detail
    assert "\n" not in outcome.detail
    assert handler.blocked_count == 1


def test_reconnects_after_a_broker_restart(broker: Broker, settings: MqttSettings) -> None:
    handler = MqttHandler(settings)
    try:
        assert handler.handle(Command("lights_on", make_verdict())).ok
        broker.stop()
        deadline = time.monotonic() + 5
        while handler.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        down = handler.handle(Command("lights_on", make_verdict()))
        assert not down.ok
        assert "MQTT broker 127.0.0.1:" in down.detail
        broker.start()
        assert wait_until(lambda: handler.connected, 5.0)  # paho retries after 1 s
        sub = Subscriber(broker.port, ["guard/command"])
        try:
            assert handler.handle(Command("lights_on", make_verdict())).ok
            assert json.loads(sub.wait_for("guard/command")[0])["action"] == "lights_on"
        finally:
            sub.close()
    finally:
        handler.close()


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
