"""The service unit, checked with systemd's own tools (``systemd-analyze``), as installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

UNIT = ROOT / "systemd" / "guard.service"


def _installed_copy(tmp_path: Path) -> Path:
    """The unit as installed: ExecStart pointing at a guard executable that exists here."""
    guard_bin = Path(sys.executable).with_name("guard")
    assert guard_bin.exists()
    text = UNIT.read_text().replace("/opt/guard/.venv/bin/guard", str(guard_bin))
    path = tmp_path / "guard.service"
    path.write_text(text)
    return path


def test_unit_verifies(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(_installed_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_unit_exposure_at_most_1_5() -> None:
    assert shutil.which("systemd-analyze")
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for guard.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 1.5


def test_unit_is_notify_with_watchdog_and_hardening() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "SupplementaryGroups=audio",
        "ProtectSystem=strict",
        "StateDirectory=guard",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
    ):
        assert line in text, line
    # the secret reaches the service as a credential file, never as an Environment= value
    assert not re.search(
        r"^Environment=.*(TOKEN|PASSWORD|SECRET)", text, re.MULTILINE | re.IGNORECASE
    )


def test_exec_start_is_a_guard_command_line_that_parses() -> None:
    import shlex

    from guard.cli import build_parser

    (line,) = [ln for ln in UNIT.read_text().splitlines() if ln.startswith("ExecStart=")]
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv[0] == "/opt/guard/.venv/bin/guard"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.source is None  # the microphone
    assert str(args.audit_log).startswith("/var/lib/guard/")  # inside StateDirectory=guard
