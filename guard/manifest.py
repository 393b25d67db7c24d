"""SHA-256 manifests: every model or fitted-detector file is checked before it is loaded.

Each directory holding model files has a ``manifest.json``:
``{"files": {"commands.tflite": "<sha256 hex>", ...}}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from guard.errors import ModelError

MANIFEST_NAME = "manifest.json"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: Path) -> dict[str, str]:
    """The ``files`` map of ``directory/manifest.json``."""
    manifest_path = directory / MANIFEST_NAME
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = data["files"]
    except FileNotFoundError as exc:
        raise ModelError(
            f"{manifest_path}: no manifest; guard loads only listed model files"
        ) from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelError(f"{manifest_path}: not a valid manifest ({exc})") from exc
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise ModelError(f"{manifest_path}: 'files' must map file names to SHA-256 strings")
    return files


def verified_bytes(path: Path) -> bytes:
    """Read ``path`` and check it against its directory's manifest before returning it.

    Reading once and hashing what was read avoids a check-then-load race.
    """
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    expected = read_manifest(path.parent).get(path.name)
    if expected is None:
        raise ModelError(
            f"{path}: not listed in {path.parent / MANIFEST_NAME}; refusing to load it"
        )
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ModelError(
            f"{path}: SHA-256 {actual[:16]}... does not match the manifest's {expected[:16]}...; "
            "refusing to load a modified model"
        )
    return data


def write_manifest(directory: Path, names: Iterable[str]) -> Path:
    """Add or update the entries for ``names`` in ``directory/manifest.json``."""
    manifest_path = directory / MANIFEST_NAME
    files: dict[str, str] = {}
    if manifest_path.exists():
        files = read_manifest(directory)
    for name in names:
        files[name] = sha256_file(directory / name)
    manifest_path.write_text(
        json.dumps({"files": dict(sorted(files.items()))}, indent=2) + "\n", encoding="utf-8"
    )
    return manifest_path
