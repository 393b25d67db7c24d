"""Timing a guard module beside its own copy at another git revision, in one process."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import tempfile
import timeit
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def module_at(rev: str, relative_path: str) -> ModuleType:
    """The module at ``relative_path`` (e.g. ``guard/detectors/spectral.py``) at ``rev``."""
    source = subprocess.run(
        ["git", "show", f"{rev}:{relative_path}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    name = f"{Path(relative_path).stem}_at_rev"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def comparison_args(description: str | None) -> argparse.Namespace:
    """``--repeats`` and ``--against REV``, the arguments every revision bench takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--against", default=None, help="git revision to compare with")
    return parser.parse_args()


def alternate_ms(
    timed: Mapping[str, Callable[[], object]], items: int, repeats: int, number: int = 3
) -> dict[str, float]:
    """Median milliseconds per item of each zero-argument callable (each call handles
    ``items`` items), the callables taking turns so a loaded machine slows all alike."""
    results: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(repeats):
        for name, run in timed.items():
            results[name].append(timeit.timeit(run, number=number) / (number * items) * 1e3)
    return {name: float(np.median(values)) for name, values in results.items()}
