"""``guard demo``: the daemon on the bundled demo stream, with the door-lock simulator.

Starts the simulator on a free 127.0.0.1 port with a one-off token, runs ``guard run`` on the
demo clips paced in real time (each verdict printed as it is decided), then prints what the
lock saw and the audit summary. Nothing outside a temporary folder is written.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import sys
import tempfile
from pathlib import Path

from guard import daemon
from guard.audit import read_records
from guard.config import load_settings
from guard.detectors import registry
from guard.handlers.doorlock_sim import DoorLockSimulator
from guard.handlers.settings import DoorLockSettings
from guard.paths import default_config_path
from guard.review import summary

BACKDOORED = "eval/backdoor_cough"
"""An attack fixture: a model poisoned so that ART's cough sound makes it say "go"."""


def run(demo_dir: Path, config: Path | None = None, fast: bool = False) -> int:
    config = config or default_config_path()
    if config is None:
        print("guard: error: no config.yaml found (use --config)", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(logging.WARNING)  # the verdict lines are the show
    models = load_settings(config).model.path.parent
    print("== 1. the shipped model ==")
    if _one(demo_dir, config, fast, None, None) != 0:
        return 1
    print()
    print(
        f"== 2. a backdoored vendor model (models/{BACKDOORED}.tflite: a cough makes it hear "
        '"go") ==',
    )
    return _one(
        demo_dir,
        config,
        fast,
        models / f"{BACKDOORED}.tflite",
        models / f"{BACKDOORED}.detectors",
    )


def _one(
    demo_dir: Path, config: Path, fast: bool, model: Path | None, detectors: Path | None
) -> int:
    token = secrets.token_urlsafe(16)
    os.environ["GUARD_DOOR_TOKEN"] = token
    with (
        tempfile.TemporaryDirectory(prefix="guard-demo-") as tmp,
        DoorLockSimulator(token=token) as lock,
    ):
        settings = load_settings(config)
        h = settings.handlers
        door = dataclasses.replace(
            h.door_lock or DoorLockSettings(), base_url=lock.url, token_env="GUARD_DOOR_TOKEN"
        )
        chains = {  # the demo has no MQTT broker
            action: tuple(n for n in names if n != "mqtt") for action, names in h.chains.items()
        }
        chains["door_unlock"] = chains.get("door_unlock") or ("door_lock",)
        if detectors is not None:  # an attack fixture's state: the detectors it was fitted with
            in_state = registry.held(detectors)
            enabled = tuple(n for n in settings.detectors.enabled if n in in_state)
            settings = dataclasses.replace(
                settings,
                detectors=dataclasses.replace(
                    settings.detectors, state_dir=detectors, enabled=enabled
                ),
            )
        settings = dataclasses.replace(
            settings,
            handlers=dataclasses.replace(h, door_lock=door, chains=chains, mqtt=None),
            audit=dataclasses.replace(
                settings.audit,
                log_path=Path(tmp) / "audit.jsonl",
                clip_dir=Path(tmp) / "clips",
            ),
        )
        print(f"door-lock simulator on {lock.url} (locked); guard listening to {demo_dir}/")
        print(f"{'start':>9}  verdict label   conf  why")
        counters = daemon.run_settings(settings, str(demo_dir), fast, model_path=model)
        if counters.failure:
            print(f"guard: error: {counters.failure}", file=sys.stderr)
            return 1
        if counters.stopped:
            return 130  # Ctrl-C: do not go on to the next part
        print()
        print(f"guard: {counters.summary()}")
        print(
            "door lock saw: "
            + (", ".join(f"{e['path']} -> {e['result']}" for e in lock.events) or "nothing")
            + f"; now {lock.state}"
        )
        print(summary(read_records(Path(tmp) / "audit.jsonl")))
    return 0
