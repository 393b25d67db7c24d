"""Settings of the handlers that talk to the outside world: door lock, MQTT, speech recognition.

Frozen dataclasses in the shape of ``guard.config``: a default and a docstring per field, units
in names. Secrets never live here: a setting only names the environment variable or the
credentials file a token or password is read from. Values that cannot work (plain ``http://`` to
a host that is not this machine, a negative timeout) raise ``ConfigError`` at construction, as
one line that starts with the key name.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from guard.errors import ConfigError

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
SPEECH_ENGINES = ("sphinx", "google")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{key}: must be > 0, got {value!r}")


def _check_path(key: str, value: str) -> None:
    if not value.startswith("/"):
        raise ConfigError(f"{key}: must start with '/', got {value!r}")


@dataclass(frozen=True)
class DoorLockSettings:
    base_url: str = "http://127.0.0.1:8080"
    """The lock's API, ``https://host[:port][/prefix]``; plain ``http://`` only for loopback."""
    verify_path: str = "/verify"
    """Endpoint that verifies the speaker and issues a one-time ticket."""
    unlock_path: str = "/unlock"
    """Endpoint that redeems a ticket and unlocks."""
    token_env: str = "GUARD_DOOR_TOKEN"
    """Environment variable holding the bearer token (used when ``token_file`` is not set)."""
    token_file: Path | None = None
    """Credentials file holding the bearer token; wins over ``token_env`` when set."""
    ca_file: Path | None = None
    """Extra CA certificate (PEM) to trust, e.g. a self-signed lock. Verification stays on."""
    timeout_s: float = 2.0
    """Timeout of each socket operation of each request, in seconds."""
    retries: int = 2
    """Extra attempts after a connection error or an HTTP 5xx (never after a timeout or 4xx)."""
    backoff_s: float = 0.2
    """Wait before the first retry, in seconds; doubled before each further retry."""

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"base_url: expected http(s)://host[:port], got {self.base_url!r}")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ConfigError(
                f"base_url: plain http:// is allowed only for loopback hosts "
                f"(127.0.0.1, ::1, localhost), got {parts.hostname!r}: use https://"
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigError("base_url: must not carry a query, fragment or credentials")
        _check_path("verify_path", self.verify_path)
        _check_path("unlock_path", self.unlock_path)
        _check_positive("timeout_s", self.timeout_s)
        if self.retries < 0 or self.retries > 10:
            raise ConfigError(f"retries: must be in [0, 10], got {self.retries}")
        if self.backoff_s < 0:
            raise ConfigError(f"backoff_s: must be >= 0, got {self.backoff_s}")
        if not self.token_env and self.token_file is None:
            raise ConfigError("token_env: name an environment variable or set token_file")


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    """The broker's host name or address."""
    port: int = 1883
    """The broker's TCP port (8883 is usual with TLS)."""
    tls: bool = False
    """Connect with TLS (certificate verification always on)."""
    ca_file: Path | None = None
    """CA certificate (PEM) to verify the broker with; the system store when unset."""
    client_id: str = "guard"
    """MQTT client id (unique per broker)."""
    username_env: str = "GUARD_MQTT_USERNAME"
    """Environment variable holding the user name; anonymous when it is unset or empty."""
    password_env: str = "GUARD_MQTT_PASSWORD"
    """Environment variable holding the password (used when ``password_file`` is not set)."""
    password_file: Path | None = None
    """Credentials file holding the password; wins over ``password_env`` when set."""
    topic_prefix: str = "guard"
    """Topics are ``{topic_prefix}/command``, ``/verdict``, ``/blocked_count``, ..."""
    discovery_prefix: str = "homeassistant"
    """Home Assistant's MQTT discovery prefix."""
    node_id: str = "guard"
    """Node id in discovery topics and unique ids ([a-zA-Z0-9_-] only)."""
    device_name: str = "Voice command firewall"
    """Device name shown in Home Assistant."""
    keepalive_s: int = 60
    """MQTT keep-alive interval, in seconds."""
    timeout_s: float = 2.0
    """How long ``handle`` waits for the broker (connection, publish acknowledgement), seconds."""
    qos: int = 1
    """QoS of the command and verdict messages."""

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("host: must not be empty")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port: must be in 1..65535, got {self.port}")
        if self.qos not in (0, 1, 2):
            raise ConfigError(f"qos: must be 0, 1 or 2, got {self.qos}")
        _check_positive("timeout_s", self.timeout_s)
        _check_positive("keepalive_s", self.keepalive_s)
        for key in ("topic_prefix", "discovery_prefix"):
            value = getattr(self, key)
            if not value or any(c in value for c in "#+") or value.endswith("/"):
                raise ConfigError(f"{key}: not a valid topic prefix: {value!r}")
        if not self.node_id or not all(c.isalnum() or c in "_-" for c in self.node_id):
            raise ConfigError(f"node_id: only letters, digits, '_' and '-', got {self.node_id!r}")


@dataclass(frozen=True)
class SpeechSettings:
    engine: str = "sphinx"
    """Recogniser: ``sphinx`` (offline, PocketSphinx) or ``google`` (sends audio to Google)."""
    language: str = "en-US"
    """Language tag passed to the recogniser."""
    timeout_s: float = 5.0
    """Timeout of an online engine's request, in seconds (sphinx runs locally)."""
    min_rms_dbfs: float = -55.0
    """Quieter utterances (RMS level, dB full scale) count as no speech without running the
    recogniser, which would otherwise hallucinate words in digital silence."""

    def __post_init__(self) -> None:
        if self.engine not in SPEECH_ENGINES:
            raise ConfigError(
                f"engine: unknown speech engine {self.engine!r} (known: {', '.join(SPEECH_ENGINES)})"
            )
        _check_positive("timeout_s", self.timeout_s)


def read_secret(env_name: str, file: Path | None, what: str, *, required: bool = True) -> str:
    """A token or password from ``file`` (wins when set) or the environment variable ``env_name``.

    Surrounding whitespace is stripped. Raises ``ConfigError`` naming the file or variable (never
    the value) when it cannot be read or is empty and ``required``; returns "" otherwise.
    """
    if file is not None:
        try:
            value = file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(f"{file}: cannot read the {what} ({reason})") from None
        if not value:
            raise ConfigError(f"{file}: the {what} file is empty")
        return value
    value = os.environ.get(env_name, "").strip() if env_name else ""
    if not value and required:
        raise ConfigError(f"{what} missing: set the environment variable {env_name or '(none)'}")
    return value
