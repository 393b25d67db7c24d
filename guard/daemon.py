"""``guard run``: build the pipeline from the settings and run it until the source ends or a
signal stops it. The threads and queues live in ``guard.service``; this module only wires.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from guard.audit import AuditLog, ClipStore
from guard.config import Settings, load_settings
from guard.dispatch import Dispatcher
from guard.endpoint import Endpointer
from guard.guard import Guard
from guard.handlers.base import Handler, VerdictSink
from guard.policy import Policy
from guard.service import Counters, Pipeline, Service
from guard.sources import FileSource, MicSource, PcmSource, Source

log = logging.getLogger(__name__)


def build_handlers(settings: Settings, mqtt: bool = True) -> dict[str, Handler]:
    """The configured handlers, by name (imports only what is configured). ``mqtt=False``
    leaves out the one handler that opens a connection at construction."""
    h = settings.handlers
    out: dict[str, Handler] = {}
    if h.door_lock is not None:
        from guard.handlers.doorlock import DoorLockHandler

        out["door_lock"] = DoorLockHandler(h.door_lock)
    if h.speech is not None:
        from guard.handlers.speech import SpeechHandler

        out["speech"] = SpeechHandler(h.speech)
    if h.mqtt is not None and mqtt:
        from guard.handlers.mqtt import MqttHandler

        out["mqtt"] = MqttHandler(h.mqtt)
    return out


class OwnedPipeline(Pipeline):
    """A pipeline plus the resources it owns (audit file, handler connections)."""

    def __init__(
        self,
        guard: Guard,
        policy: Policy,
        dispatcher: Dispatcher,
        audit: AuditLog,
        handlers: dict[str, Handler],
        settings: Settings,
    ) -> None:
        super().__init__(guard, policy, dispatcher)
        self.audit = audit
        self.handlers = handlers
        self.settings = settings

    def close(self) -> None:
        finished = self.dispatcher.close()
        for handler in self.handlers.values():
            try:
                handler.close()
            except Exception:
                log.exception("closing handler %s", handler.name)
        if finished:  # else a handler call is still running and will write its record
            self.audit.close()


def build_pipeline(
    settings: Settings,
    audit_log: Path | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    model_path: Path | None = None,
    guard: Guard | None = None,
    handlers: dict[str, Handler] | None = None,
) -> OwnedPipeline:
    if guard is None:
        guard = Guard.from_settings(settings, model_path=model_path)
        guard.warm_up()
    handlers = handlers if handlers is not None else build_handlers(settings)
    a = settings.audit
    clips = ClipStore(a.clip_dir, int(a.max_clip_mb * 1e6)) if a.clip_dir is not None else None
    audit = AuditLog(audit_log or a.log_path, clips, a.save_allowed)
    chains = {
        action: [handlers[name] for name in names]
        for action, names in settings.handlers.chains.items()
    }
    sinks = [h for h in handlers.values() if isinstance(h, VerdictSink)]
    dispatcher = Dispatcher(
        audit,
        chains,
        sinks,
        queue_size=settings.handlers.queue_size,
        handler_timeout_s=settings.handlers.timeout_s,
        on_record=on_record,
    )
    return OwnedPipeline(guard, Policy(settings.policy), dispatcher, audit, handlers, settings)


def reload_pipeline(
    old: OwnedPipeline,
    settings: Settings,
    audit_log: Path | None,
    on_record: Callable[[dict[str, Any]], None] | None,
    model_path: Path | None = None,
) -> OwnedPipeline:
    """The pipeline for new settings. Everything that can fail is built before the old one is
    touched (a failure leaves it running); the policy keeps its refractory times; handlers and
    the audit file are reused when their settings did not change."""
    guard = Guard.from_settings(settings, model_path=model_path)
    guard.warm_up()
    policy = Policy(settings.policy)
    policy.inherit(old.policy)
    if settings.handlers == old.settings.handlers and settings.audit == old.settings.audit:
        return OwnedPipeline(guard, policy, old.dispatcher, old.audit, old.handlers, settings)
    handlers = build_handlers(settings, mqtt=False)  # may raise: the old pipeline is intact
    old.close()  # before a new MQTT client takes the same client id
    if settings.handlers.mqtt is not None:
        from guard.handlers.mqtt import MqttHandler

        handlers["mqtt"] = MqttHandler(settings.handlers.mqtt)
    new = build_pipeline(settings, audit_log, on_record, guard=guard, handlers=handlers)
    new.policy = policy
    return new


def build_source(settings: Settings, source: str | None, fast: bool) -> Source:
    block = settings.audio.block_ms * 16
    slots = settings.audio.ring_blocks
    if source is None:
        return MicSource(settings.audio.device, block, slots)
    if source == "-":
        return PcmSource(None, block, slots)
    return FileSource([source], fast=fast, block_samples=block, slots=slots)


def live_line(row: dict[str, Any]) -> str:
    """One line per utterance for the console: time, verdict, label, why, handlers."""
    reasons = ",".join(row.get("reasons", [])) or "-"
    handlers = "; ".join(f"{k}: {v}" for k, v in row.get("handlers", {}).items())
    action = row.get("action") or "-"
    where = Path(str(row.get("source", ""))).name
    return (
        f"{row.get('start_s', 0):8.2f}s  {row['verdict'].upper():5}  {row.get('label') or '-':8} "
        f"{row.get('confidence', 0):.2f}  reasons={reasons:<22} action={action}"
        + (f"  [{handlers}]" if handlers else "")
        + (f"  ({where})" if where else "")
    )


def run(
    config: Path | None,
    source: str | None,
    fast: bool,
    audit_log: Path | None,
    quiet: bool = False,
    out: TextIO = sys.stdout,
) -> Counters:
    """Run until the source ends (files, stdin) or SIGTERM/SIGINT; SIGHUP reloads ``config``."""
    return run_settings(_load(config), source, fast, audit_log, config, quiet, out, reloadable=True)


def run_settings(
    settings: Settings,
    source: str | None,
    fast: bool,
    audit_log: Path | None = None,
    config: Path | None = None,
    quiet: bool = False,
    out: TextIO = sys.stdout,
    reloadable: bool = False,
    model_path: Path | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> Counters:
    """``run`` with settings already loaded; SIGHUP reloads ``config`` when ``reloadable``.
    ``on_record`` sees every audit record as it is written (benchmarks, tests)."""

    def show(row: dict[str, Any]) -> None:
        if on_record is not None:
            on_record(row)
        if not quiet:
            # stdout closed (guard run | head): keep guarding
            with contextlib.suppress(OSError, ValueError):
                print(live_line(row), file=out, flush=True)

    src = build_source(settings, source, fast)  # first: it checks the paths, opens nothing
    pipeline = build_pipeline(settings, audit_log, show, model_path)
    endpointer = Endpointer(settings.endpoint)

    def reload(old: Pipeline) -> Pipeline:
        new_settings = _load(config)
        if new_settings.audio != settings.audio or new_settings.endpoint != settings.endpoint:
            log.warning("audio and endpoint settings take effect after a restart")
        assert isinstance(old, OwnedPipeline)
        return reload_pipeline(old, new_settings, audit_log, show, model_path)

    service = Service(
        src,
        endpointer,
        pipeline,
        reload=reload if reloadable else None,
        utterance_queue=settings.audio.utterance_queue,
    )
    service.install_signal_handlers()
    try:
        counters = service.run()
    finally:
        service.restore_signal_handlers()
        current = service.pipeline
        if isinstance(current, OwnedPipeline):
            current.close()
    counters.failure = service.failure or ""
    unreadable = getattr(src, "unreadable", [])
    for problem in unreadable:
        log.error("%s", problem)
    if unreadable and not counters.failure:
        counters.failure = f"{len(unreadable)} input(s) could not be read (see above)"
    if src.ring.overflows:
        log.warning(
            "audio overflow: %d blocks (%.1f s) dropped",
            src.ring.overflows,
            src.ring.dropped_samples / 16000,
        )
    return counters


def _load(config: Path | None) -> Settings:
    if config is not None:
        return load_settings(config)
    from guard.paths import default_config_path

    found = default_config_path()
    return load_settings(found) if found else Settings()
