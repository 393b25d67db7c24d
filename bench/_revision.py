"""Load one guard module as it was at another git revision, to time it beside the current one."""

from __future__ import annotations

import importlib.util
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType

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
