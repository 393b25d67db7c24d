"""systemd's notify protocol (READY, WATCHDOG, STOPPING, STATUS) without libsystemd.

A datagram to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (an abstract socket when it
starts with "@"). Outside systemd the variable is unset and every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.watchdog_interval_s = int(usec) / 1e6 / 2 if usec.isdigit() else 0.0
        """Ping twice per watchdog period, as sd_watchdog_enabled(3) advises."""
        self._last_ping_s = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, state: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall(state.encode())
        except OSError:
            pass  # systemd gone (shutdown): nothing useful to do

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def audio_alive(self) -> None:
        """Called when audio frames arrive: pings the watchdog at most twice per period, so a
        silent, dead microphone stops the pings and systemd restarts the service."""
        now = time.monotonic()
        if self.address and now - self._last_ping_s >= self.watchdog_interval_s:
            self._last_ping_s = now
            self.send("WATCHDOG=1")
