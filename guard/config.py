"""``config.yaml`` -> frozen settings dataclasses, validated once at start-up.

Relative paths are resolved against the config file's folder. Every error names the file,
the key path and the reason, in one line. Secrets never live here: handlers read tokens from
environment variables or credential files named in the config.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from guard.endpoint import EndpointSettings
from guard.errors import ConfigError
from guard.handlers.settings import DoorLockSettings, MqttSettings, SpeechSettings
from guard.policy import PolicySettings

T = TypeVar("T")
MAX_STRIP_BLENDS = 64
"""More blends than this cost more than every other detector together (each is one model run)."""


@dataclass(frozen=True)
class ModelSettings:
    path: Path = Path("models/commands.tflite")
    """The int8 TFLite command model (checked against its folder's manifest.json)."""
    threads: int = 1
    """Interpreter threads."""
    reference_path: Path = Path("models/commands.tflite")
    """guard's own model, trained on clean data: the second ear that ``guard calibrate``
    builds into the ``second_ear`` detector when ``path`` is someone else's model."""


@dataclass(frozen=True)
class DetectorSettings:
    state_dir: Path = Path("models/detectors")
    """Fitted detector state (``guard calibrate --out`` writes a new one)."""
    enabled: tuple[str, ...] = (
        "spectral", "steady_tone", "gmm", "strip", "activation", "consistency", "second_ear",
        "second_ear_consistency", "perturbation_net", "agreement",
    )  # fmt: skip
    """Detectors to run, by name."""
    second_ear_labels: tuple[str, ...] = ("go",)
    """The commands the second ear checks with the reference model: the ones that must never
    be hijacked (the unlock). Not every action: the int8 reference gives exactly 0 to many
    clean clips' "on" and "off", which leaves no threshold (docs/DETECTION.md)."""
    strip_blends: int = 10
    """Reference clips STRIP blends each utterance with, read by ``guard calibrate`` (the
    fitted state carries its bank). Each costs one more example through the model: with 2-3,
    STRIP adds ~10x less time than ART's STRIP and catches less than with 10
    (docs/EVALUATION.md)."""
    perturbation_net: Path = Path("models/perturbation_net.tflite")
    """The learned perturbation detector's network (checked against its folder's manifest),
    read by ``guard calibrate``: the fitted state carries its own copy."""


@dataclass(frozen=True)
class AudioSettings:
    device: str = ""
    """Microphone: a sounddevice name (substring) or index; "" is the system default."""
    block_ms: int = 100
    """Audio arrives in blocks of this many milliseconds."""
    ring_blocks: int = 64
    """Blocks the capture ring holds before it drops (and counts) audio."""
    utterance_queue: int = 4
    """Utterances waiting for analysis before new ones are blocked as ``overload``."""


@dataclass(frozen=True)
class AuditSettings:
    log_path: Path = Path("state/audit.jsonl")
    """The JSON-lines audit log (one record per utterance); ``--audit-log`` overrides it."""
    clip_dir: Path | None = Path("state/clips")
    """Where blocked utterances are saved as WAV (none when null)."""
    save_allowed: bool = False
    """Save allowed utterances too."""
    max_clip_mb: float = 200.0
    """Size-based retention of clip_dir: the oldest clips go first, in megabytes."""


@dataclass(frozen=True)
class HandlerSettings:
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Action -> handlers run in order (a failure stops the chain), e.g.
    ``door_unlock: [speech, door_lock]``."""
    door_lock: DoorLockSettings | None = None
    """The HTTP door lock (verify, then unlock); off when absent."""
    mqtt: MqttSettings | None = None
    """MQTT / Home Assistant: commands, every verdict, discovery; off when absent."""
    speech: SpeechSettings | None = None
    """Speech recognition of the allowed utterance (passes ``transcript`` on); off when absent."""
    queue_size: int = 8
    """Actions waiting for handlers before new ones are dropped (and recorded)."""
    timeout_s: float = 10.0
    """Longest a single handler call may take before it is abandoned, in seconds."""


@dataclass(frozen=True)
class Settings:
    model: ModelSettings = field(default_factory=ModelSettings)
    detectors: DetectorSettings = field(default_factory=DetectorSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    endpoint: EndpointSettings = field(default_factory=EndpointSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    handlers: HandlerSettings = field(default_factory=HandlerSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    source: Path | None = None
    """The config file these settings came from."""


def load_settings(path: str | Path) -> Settings:
    """Read and validate a config file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from exc
    if raw is None:
        raw = {}
    settings = _build(Settings, raw, str(path), "", path.parent)
    _check(settings, str(path))
    return dataclasses.replace(settings, source=path)


def _check(settings: Settings, file: str) -> None:
    """Cross-field checks, each naming its key."""
    try:
        settings.endpoint.check("endpoint")
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    h = settings.handlers
    for action, names in h.chains.items():
        for i, name in enumerate(names):
            if name not in ("door_lock", "mqtt", "speech"):
                raise ConfigError(
                    f"{file}: handlers.chains.{action}[{i}]: unknown handler {name!r} "
                    "(known: door_lock, mqtt, speech)"
                )
            if getattr(h, name) is None:
                raise ConfigError(
                    f"{file}: handlers.chains.{action}[{i}]: handler {name!r} is not configured "
                    f"(add a handlers.{name} section)"
                )
    known_actions = set(settings.policy.actions.values())
    for action in h.chains:
        if action not in known_actions:
            raise ConfigError(
                f"{file}: handlers.chains.{action}: no policy.actions entry maps a command to it"
            )
    for key, value in (
        ("policy.confidence_floor", settings.policy.confidence_floor),
        ("policy.refractory_s", settings.policy.refractory_s),
    ):
        if value < 0 or (key.endswith("floor") and value > 1):
            raise ConfigError(f"{file}: {key}: out of range: {value}")
    for key, ivalue in (
        ("audio.block_ms", settings.audio.block_ms),
        ("audio.ring_blocks", settings.audio.ring_blocks - 2),
        ("audio.utterance_queue", settings.audio.utterance_queue),
        ("handlers.queue_size", h.queue_size),
    ):
        if ivalue <= 0:
            raise ConfigError(f"{file}: {key}: too small")
    if not 1 <= settings.detectors.strip_blends <= MAX_STRIP_BLENDS:
        raise ConfigError(
            f"{file}: detectors.strip_blends: must be 1..{MAX_STRIP_BLENDS}, "
            f"got {settings.detectors.strip_blends}"
        )
    if not h.timeout_s > 0:
        raise ConfigError(f"{file}: handlers.timeout_s: must be > 0, got {h.timeout_s}")


def _build(cls: type[T], raw: Any, file: str, prefix: str, base: Path) -> T:
    if not isinstance(raw, dict):
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(f"{file}: {where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "source"}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{file}: {prefix}{unknown[0]}: unknown key (known: {', '.join(fields)})")
    values = {}
    for name, value in raw.items():
        values[name] = _convert(hints[name], value, file, f"{prefix}{name}", base)
    try:
        return cls(**values)
    except ConfigError as exc:  # a settings class's own check: "key: reason"
        raise ConfigError(f"{file}: {prefix}{exc}") from None


def _convert(hint: Any, value: Any, file: str, key: str, base: Path) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, file, f"{key}.", base)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, file, key, base)
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{file}: {key}: expected a path, got {value!r}")
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base / p)
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list):
            raise ConfigError(f"{file}: {key}: expected a list, got {value!r}")
        return tuple(_convert(item, v, file, f"{key}[{i}]", base) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: {key}: expected a mapping, got {value!r}")
        kt, vt = typing.get_args(hint)
        return {
            _convert(kt, k, file, key, base): _convert(vt, v, file, f"{key}.{k}", base)
            for k, v in value.items()
        }
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{file}: {key}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{file}: {key}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{file}: {key}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{file}: {key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{file}: {key}: unsupported setting type {hint}")
