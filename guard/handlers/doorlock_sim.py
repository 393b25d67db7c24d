"""A door-lock simulator: the HTTP(S) API ``DoorLockHandler`` talks to, for the demo and tests.

Endpoints (JSON in and out; every POST needs ``Authorization: Bearer <token>``, else 401):

- ``POST /verify`` ``{"transcript", ...}``: verified when ``allowed_names`` is empty or the
  transcript contains one of them (case-insensitive); a verified request gets a one-time ticket.
  Answers ``{"verified", "ticket", "reason"}``.
- ``POST /unlock`` ``{"ticket"}``: unlocks if the ticket is valid and unused. ``{"unlocked", "reason"}``.
- ``POST /lock``: locks. ``GET /state``: ``{"state": "locked" | "unlocked"}``.

Every request is recorded in ``events`` (method, path, status, result). ``delay_s`` delays every
answer (to test timeouts), ``fail_first`` answers the first N requests with 503 (to test retries).
Run it with ``python -m guard.handlers.doorlock_sim --port 8080 --token-env GUARD_DOOR_TOKEN``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hmac
import json
import os
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

TICKET_TTL_S = 30.0
MAX_BODY_BYTES = 64 * 1024
Event = dict[str, Any]


class DoorLockSimulator:
    """A door lock on ``host:port`` (port 0 picks a free one; see ``url`` after ``start``)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "sim-token",
        allowed_names: Sequence[str] = (),
        certfile: Path | str | None = None,
        keyfile: Path | str | None = None,
        delay_s: float = 0.0,
        fail_first: int = 0,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        if not token:
            raise ValueError("the simulator needs a non-empty token")
        self.host = host
        self.port = port
        self.token = token
        self.allowed_names = tuple(n.lower() for n in allowed_names if n)
        self.delay_s = delay_s
        self.fail_first = fail_first
        self.on_event = on_event
        self.events: list[Event] = []
        self.state = "locked"
        self._tickets: dict[str, float] = {}  # ticket -> expiry (monotonic seconds)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._tls: ssl.SSLContext | None = None
        if certfile is not None:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(str(certfile), None if keyfile is None else str(keyfile))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http(s)://host:port`` of the running server."""
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        host, port = self._server.server_address[:2]
        host = str(host)
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self._tls else 'http'}://{shown}:{port}"

    def start(self) -> DoorLockSimulator:
        """Bind and serve on a background thread."""
        server_class = _Server6 if ":" in self.host else _Server
        self._server = server_class((self.host, self.port), _RequestHandler)
        self._server.sim = self
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (delayed answers are cut short)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> DoorLockSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def count(self, path: str) -> int:
        """How many requests reached ``path``."""
        with self._lock:
            return sum(1 for e in self.events if e["path"] == path)

    # Called from the request threads.

    def _record(self, event: Event) -> None:
        event = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        } | event
        with self._lock:
            self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _answer(
        self, method: str, path: str, authorization: str, body: bytes
    ) -> tuple[int, dict[str, Any], str]:
        """(HTTP status, JSON answer, one-word result for the event)."""
        if self.delay_s > 0:
            self._stopping.wait(self.delay_s)
        with self._lock:
            if self.fail_first > 0:
                self.fail_first -= 1
                return 503, {"error": "temporarily unavailable"}, "failed (simulated)"
        if method == "GET" and path == "/state":
            return 200, {"state": self.state}, self.state
        if method != "POST" or path not in ("/verify", "/unlock", "/lock"):
            return 404, {"error": "not found"}, "not found"
        expected = f"Bearer {self.token}".encode()
        if not hmac.compare_digest(authorization.encode("utf-8", "replace"), expected):
            return 401, {"error": "unauthorized"}, "unauthorized"
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = None
        if not isinstance(request, dict):
            return 400, {"error": "expected a JSON object"}, "bad request"
        if path == "/verify":
            return self._verify(request)
        if path == "/unlock":
            return self._unlock(request)
        with self._lock:
            self.state = "locked"
        return 200, {"locked": True}, "locked"

    def _verify(self, request: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
        transcript = str(request.get("transcript") or "").lower()
        if self.allowed_names and not any(n in transcript for n in self.allowed_names):
            return 200, {"verified": False, "ticket": "", "reason": "unknown speaker"}, "refused"
        ticket = secrets.token_urlsafe(16)
        with self._lock:
            now = time.monotonic()
            self._tickets = {t: e for t, e in self._tickets.items() if e > now}
            self._tickets[ticket] = now + TICKET_TTL_S
        return 200, {"verified": True, "ticket": ticket, "reason": ""}, "verified"

    def _unlock(self, request: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
        ticket = request.get("ticket")
        with self._lock:
            expiry = self._tickets.pop(ticket, None) if isinstance(ticket, str) else None
            if expiry is None or expiry < time.monotonic():
                answer = {"unlocked": False, "reason": "ticket invalid or already used"}
                return 200, answer, "refused"
            self.state = "unlocked"
        return 200, {"unlocked": True, "reason": ""}, "unlocked"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a delayed answer
    sim: DoorLockSimulator

    def finish_request(self, request: Any, client_address: Any) -> None:
        tls = self.sim._tls
        if tls is not None:  # handshake on the request thread, never on the accept loop
            try:
                request.settimeout(5.0)
                tls_request = tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                reason = getattr(exc, "reason", None) or type(exc).__name__
                self.sim._record(
                    {"method": "", "path": "", "status": 0, "result": f"TLS: {reason}"}
                )
                return
            with tls_request:  # closed here: the server only shuts the detached plain socket
                super().finish_request(tls_request, client_address)
            return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up (timeout tests) is not an error of the simulator


class _Server6(_Server):
    address_family = socket.AF_INET6


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "guard-doorlock-sim/1"

    def do_GET(self) -> None:
        self._serve("GET", b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(413, {"error": "body too large"})
            return
        self._serve("POST", self.rfile.read(length))

    def _serve(self, method: str, body: bytes) -> None:
        sim = self.server.sim
        path = self.path.split("?", 1)[0]
        status, answer, result = sim._answer(
            method, path, self.headers.get("Authorization", ""), body
        )
        sim._record({"method": method, "path": path, "status": status, "result": result})
        self._send(status, answer)

    def _send(self, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are recorded as events instead


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``guard doorlock-sim``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    parser.add_argument(
        "--token-env",
        default="GUARD_DOOR_TOKEN",
        help="environment variable holding the bearer token (default GUARD_DOOR_TOKEN)",
    )
    parser.add_argument("--token-file", type=Path, help="file holding the token (wins)")
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="NAME",
        help="verify only transcripts containing NAME (repeatable; default: verify all)",
    )
    parser.add_argument("--certfile", type=Path, help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--keyfile", type=Path, help="private key of --certfile (PEM)")
    parser.add_argument("--delay-s", type=float, default=0.0, help="delay every answer (seconds)")


def run(args: argparse.Namespace) -> int:
    """Serve in the foreground, printing one JSON line per event, until Ctrl-C or SIGTERM."""
    if args.token_file is not None:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(f"error: {args.token_file}: cannot read token ({exc.strerror})", file=sys.stderr)
            return 2
    else:
        token = os.environ.get(args.token_env, "").strip()
    if not token:
        where = args.token_file or f"environment variable {args.token_env}"
        print(f"error: no door-lock token in {where}", file=sys.stderr)
        return 2

    def show(event: Event) -> None:
        print(json.dumps(event), flush=True)

    try:
        sim = DoorLockSimulator(
            args.host,
            args.port,
            token,
            allowed_names=args.allow,
            certfile=args.certfile,
            keyfile=args.keyfile,
            delay_s=args.delay_s,
            on_event=show,
        ).start()
    except (OSError, ssl.SSLError) as exc:
        print(
            f"error: cannot start the simulator on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_term)
    print(f"door-lock simulator on {sim.url} (state {sim.state}); Ctrl-C stops", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sim.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guard.handlers.doorlock_sim")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
