"""The MQTT handler: publishes allowed commands and every verdict, with Home Assistant discovery.

Topics (``P`` is ``topic_prefix``)::

    P/command        allowed commands: {"action", "label", "confidence", "time", "transcript"?}
    P/verdict        every utterance's audit summary (allowed or blocked)
    P/last_command   retained: the label of the last allowed command
    P/blocked_count  retained: blocked utterances since guard started
    P/status         retained: "online" (birth) / "offline" (will, and on close)

On each connection it publishes retained Home Assistant discovery configs for two sensors,
``{discovery_prefix}/sensor/{node_id}/last_command/config`` and ``.../blocked_inputs/config``.
The paho network loop runs on its own thread and reconnects by itself; ``handle`` and
``on_verdict`` never raise: a broker that is down is a one-line failed ``Outcome``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

import guard
from guard.errors import ConfigError
from guard.handlers.base import Command, Outcome
from guard.handlers.settings import MqttSettings, read_secret

log = logging.getLogger(__name__)

VERDICT_FIELDS = (
    *("time", "source", "action", "label", "confidence", "verdict", "reasons"),
    *("latency_ms", "start_s", "end_s", "handlers", "errors"),
)
"""The audit-record fields published to ``{prefix}/verdict`` (scores and clip paths are not)."""


class MqttHandler:
    """Handler (``handle``) and verdict sink (``on_verdict``) on one MQTT connection.

    Construction does not wait for the broker: it starts connecting in the background
    (``ConfigError`` only for unreadable credentials).
    """

    def __init__(self, settings: MqttSettings, name: str = "mqtt") -> None:
        self.name = name
        self.settings = settings
        prefix = settings.topic_prefix
        self.command_topic = f"{prefix}/command"
        self.verdict_topic = f"{prefix}/verdict"
        self.last_command_topic = f"{prefix}/last_command"
        self.blocked_count_topic = f"{prefix}/blocked_count"
        self.status_topic = f"{prefix}/status"
        self.blocked_count = 0
        """Blocked utterances seen by ``on_verdict`` since start."""
        self.last_command = ""
        """Label of the last allowed utterance seen by ``on_verdict``."""
        self._where = f"{settings.host}:{settings.port}"
        self._state = "connecting"  # -> "connected" | "failed" (paho keeps retrying)
        self._error = ""
        self._closed = False
        self._cond = threading.Condition()

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id)
        client.enable_logger(log)
        username = read_secret(settings.username_env, None, "MQTT user name", required=False)
        password = read_secret(
            settings.password_env,
            settings.password_file,
            "MQTT password",
            required=settings.password_file is not None,
        )
        if password and not username:
            raise ConfigError(
                f"username_env: an MQTT password is set but {settings.username_env} is not"
            )
        if username:
            client.username_pw_set(username, password or None)
        if settings.tls:
            ca = None if settings.ca_file is None else str(settings.ca_file)
            try:
                client.tls_set(ca_certs=ca)  # CERT_REQUIRED and host name checking
            except (OSError, ValueError) as exc:
                raise ConfigError(f"ca_file: cannot use {ca} for TLS ({exc})") from None
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        self._client = client
        client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
        client.loop_start()

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._state == "connected"

    def wait_connected(self, timeout_s: float | None = None) -> bool:
        """Wait until connected or a connection attempt failed; True when connected."""
        timeout = self.settings.timeout_s if timeout_s is None else timeout_s
        with self._cond:
            self._cond.wait_for(lambda: self._state != "connecting", timeout)
            return self._state == "connected"

    def handle(self, command: Command) -> Outcome:
        """Publish the allowed command to ``{prefix}/command`` and wait for the broker's ack."""
        if not self.wait_connected():
            return Outcome(False, self._not_connected())
        verdict = command.verdict
        payload: dict[str, Any] = {
            "action": command.action,
            "label": verdict.label,
            "confidence": round(float(verdict.confidence), 4),
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
        }
        if command.context.get("transcript"):
            payload["transcript"] = command.context["transcript"]
        error = self._publish(self.command_topic, payload, wait=True)
        if error:
            return Outcome(False, error)
        return Outcome(True, f"published to {self.command_topic}")

    def on_verdict(self, record: dict[str, Any]) -> None:
        """Publish a verdict summary and update the retained sensors; never blocks or raises."""
        blocked = record.get("verdict") != "allow"
        label = str(record.get("label") or "")
        with self._cond:
            if blocked:
                self.blocked_count += 1
            elif label:
                self.last_command = label
            count = self.blocked_count
            connected = self._state == "connected"
        if not connected:  # the retained sensors are republished on (re)connection
            log.debug("%s: verdict not published: %s", self.name, self._not_connected())
            return
        errors = [
            self._publish(self.verdict_topic, {k: record[k] for k in VERDICT_FIELDS if k in record})
        ]
        if blocked:
            errors.append(self._publish(self.blocked_count_topic, str(count), retain=True))
        elif label:
            errors.append(self._publish(self.last_command_topic, label, retain=True))
        for error in filter(None, errors):
            log.warning("%s: %s", self.name, error)

    def close(self) -> None:
        """Publish "offline", disconnect and stop the network thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.connected:
            self._publish(self.status_topic, "offline", retain=True, wait=True)
        self._client.disconnect()
        self._client.loop_stop()

    def discovery_configs(self) -> dict[str, dict[str, Any]]:
        """Home Assistant discovery topic -> config, for the two sensors."""
        s = self.settings
        device = {
            "identifiers": [s.node_id],
            "name": s.device_name,
            "manufacturer": "guard",
            "model": "voice-command firewall",
            "sw_version": guard.__version__,
        }
        common = {
            "availability_topic": self.status_topic,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        }
        base = f"{s.discovery_prefix}/sensor/{s.node_id}"
        return {
            f"{base}/last_command/config": {
                "name": "Last command",
                "unique_id": f"{s.node_id}_last_command",
                "state_topic": self.last_command_topic,
                "icon": "mdi:microphone-message",
                **common,
            },
            f"{base}/blocked_inputs/config": {
                "name": "Blocked inputs",
                "unique_id": f"{s.node_id}_blocked_inputs",
                "state_topic": self.blocked_count_topic,
                "state_class": "total_increasing",
                "icon": "mdi:shield-alert",
                **common,
            },
        }

    # paho callbacks (network thread)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            self._set_state("failed", f"broker {self._where} refused the connection: {reason_code}")
            return
        for topic, config in self.discovery_configs().items():
            self._publish(topic, config, retain=True)
        self._publish(self.status_topic, "online", retain=True)
        with self._cond:
            count, last = self.blocked_count, self.last_command
        self._publish(self.blocked_count_topic, str(count), retain=True)
        if last:
            self._publish(self.last_command_topic, last, retain=True)
        log.info("%s: connected to %s", self.name, self._where)
        self._set_state("connected", "")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._set_state("failed", f"cannot connect to MQTT broker {self._where}")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Any,
    ) -> None:
        if self._closed:
            self._set_state("failed", "handler closed")
            return
        self._set_state("failed", f"disconnected from MQTT broker {self._where} ({reason_code})")

    def _set_state(self, state: str, error: str) -> None:
        with self._cond:
            if state == "failed" and self._state != "failed":
                log.warning("%s: %s", self.name, error)
            self._state, self._error = state, error
            self._cond.notify_all()

    def _not_connected(self) -> str:
        with self._cond:
            return self._error or f"no connection to MQTT broker {self._where} yet"

    def _publish(
        self, topic: str, payload: object, *, retain: bool = False, wait: bool = False
    ) -> str | None:
        """Publish (JSON-encoding dicts); the one-line error, or None when it went out."""
        data = payload if isinstance(payload, str) else json.dumps(payload, default=str)
        try:
            info = self._client.publish(topic, data, qos=self.settings.qos, retain=retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return f"publish to {topic} failed: {mqtt.error_string(info.rc)}"
            if wait:
                info.wait_for_publish(self.settings.timeout_s)
                if not info.is_published():
                    return (
                        f"publish to {topic}: no acknowledgement within {self.settings.timeout_s} s"
                    )
        except (OSError, RuntimeError, ValueError) as exc:
            return f"publish to {topic} failed: {exc}"
        return None
