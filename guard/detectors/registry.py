"""Detector names -> classes, and loading/saving a set of fitted detectors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guard.detectors.activation import ActivationDetector
from guard.detectors.agreement import AgreementDetector
from guard.detectors.base import Detector
from guard.detectors.consistency import ConsistencyDetector
from guard.detectors.gmm import GmmPcaDetector
from guard.detectors.perturbation_net import PerturbationNetDetector
from guard.detectors.second_ear import SecondEarConsistencyDetector, SecondEarDetector
from guard.detectors.spectral import SpectralTriggerDetector
from guard.detectors.steady_tone import SteadyToneDetector
from guard.detectors.strip import StripDetector
from guard.errors import ModelError
from guard.manifest import read_manifest, verified_bytes, write_manifest

DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls
    for cls in (
        SpectralTriggerDetector,
        SteadyToneDetector,
        GmmPcaDetector,
        StripDetector,
        ActivationDetector,
        ConsistencyDetector,
        SecondEarDetector,
        SecondEarConsistencyDetector,
        PerturbationNetDetector,
        AgreementDetector,
    )
}
"""Every runtime detector, in the order they run (a detector that combines others' scores
after them)."""
REPORT_NAME = "calibration.json"


def make(name: str, **options: Any) -> Detector:
    """A fresh detector; ``options`` are constructor arguments (e.g. second_ear's reference)."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ModelError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}") from None
    return cls(**options)


def in_running_order(names: Sequence[str]) -> list[str]:
    """``names`` in the order of ``DETECTORS``; an unknown name is an error naming it."""
    for name in names:
        if name not in DETECTORS:
            raise ModelError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    order = list(DETECTORS)
    return sorted(dict.fromkeys(names), key=order.index)


def wire(detectors: Sequence[Detector]) -> None:
    """Give each detector that combines others' scores (``agreement``) its parts from the
    same set; a set that lacks one is an error naming it."""
    by_name = {d.name: d for d in detectors}
    for d in detectors:
        if isinstance(d, AgreementDetector):
            d.use_parts(by_name)


def save(directory: Path, detectors: Sequence[Detector], report: dict[str, Any]) -> None:
    """Write ``<name>.npz`` per detector, ``calibration.json`` and the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for d in detectors:
        d.save(directory / f"{d.name}.npz")
        names.append(f"{d.name}.npz")
    (directory / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    write_manifest(directory, [*names, REPORT_NAME])


def load(directory: Path, names: Sequence[str]) -> list[Detector]:
    """Load the named detectors from ``directory``, each checked against its manifest, in
    running order."""
    out = []
    for name in in_running_order(names):
        path = directory / f"{name}.npz"
        if not path.is_file():
            raise ModelError(
                f"{path}: not found: this state has no {name!r} detector (fitted by an older "
                "guard, or for other detectors.enabled); run guard calibrate again"
            )
        out.append(DETECTORS[name].load(path))
    wire(out)
    return out


def held(directory: Path) -> list[str]:
    """The detectors a state holds (its manifest lists ``<name>.npz``), in running order."""
    listed = read_manifest(directory)
    return [name for name in DETECTORS if f"{name}.npz" in listed]


def load_state(directory: Path) -> list[Detector]:
    """Every detector a state holds: a state fitted before a detector existed loads without it
    and scores as it was measured."""
    return load(directory, held(directory))


def read_report(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(verified_bytes(directory / REPORT_NAME))
    return data
