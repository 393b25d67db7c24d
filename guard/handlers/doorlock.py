"""The door-lock handler: verify the speaker with the lock, then unlock with a one-time ticket.

Two HTTPS POSTs with a bearer token, standard library only::

    POST {base_url}{verify_path}  {"action", "command", "confidence", "transcript"}
        -> {"verified": bool, "ticket": str, "reason": str}
    POST {base_url}{unlock_path}  {"ticket"}            (only when verified)
        -> {"unlocked": bool}

Certificate verification is always on (``ca_file`` adds a CA, e.g. a self-signed lock's).
Proxies and redirects are not followed, so the token only ever goes to ``base_url``. Every
failure (timeout, refused connection, HTTP error, bad JSON) becomes a one-line failed
``Outcome``; connection errors and HTTP 5xx are retried ``retries`` times with a short backoff.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from guard.errors import ConfigError
from guard.handlers.base import Command, Outcome
from guard.handlers.settings import DoorLockSettings, read_secret

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "guard-door-lock/1"


class _RequestError(Exception):
    """A request that failed for good; the message is the outcome's one-line detail."""


class _RetryableError(_RequestError):
    """A connection error or HTTP 5xx: worth another attempt."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx then surfaces as an HTTPError: the token never follows a redirect


class DoorLockHandler:
    """Unlocks the door after the lock itself verified the command (see the module docstring).

    Reads the bearer token at construction (``settings.token_file`` wins over
    ``settings.token_env``); raises ``ConfigError`` if it is missing or ``ca_file`` is unusable.
    """

    def __init__(self, settings: DoorLockSettings, name: str = "door_lock") -> None:
        self.name = name
        self.settings = settings
        self._token = read_secret(settings.token_env, settings.token_file, "door-lock token")
        self._base = settings.base_url.rstrip("/")
        self._netloc = urllib.parse.urlsplit(self._base).netloc
        context = ssl.create_default_context()
        if settings.ca_file is not None:
            try:
                context.load_verify_locations(cafile=str(settings.ca_file))
            except (OSError, ssl.SSLError) as exc:
                reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
                raise ConfigError(f"{settings.ca_file}: cannot load CA file ({reason})") from None
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=context),
            _NoRedirect(),
        )

    def handle(self, command: Command) -> Outcome:
        """Verify, then unlock; returns ``Outcome(ok=True, "unlocked")`` or a one-line failure."""
        verdict = command.verdict
        try:
            answer = self._post(
                self.settings.verify_path,
                {
                    "action": command.action,
                    "command": verdict.label,
                    "confidence": round(float(verdict.confidence), 4),
                    "transcript": command.context.get("transcript", ""),
                },
            )
            verified = answer.get("verified")
            if not isinstance(verified, bool):
                raise _RequestError(f"bad response from {self.settings.verify_path}: no 'verified'")
            if not verified:
                reason = _one_line(answer.get("reason")) or "no reason given"
                return self._outcome(False, f"verify refused: {reason}")
            ticket = answer.get("ticket")
            if not isinstance(ticket, str) or not ticket:
                raise _RequestError(f"bad response from {self.settings.verify_path}: no 'ticket'")
            answer = self._post(self.settings.unlock_path, {"ticket": ticket})
            if answer.get("unlocked") is not True:
                reason = _one_line(answer.get("reason")) or "no reason given"
                return self._outcome(False, f"unlock refused: {reason}")
        except _RequestError as exc:
            return self._outcome(False, str(exc))
        return self._outcome(True, "unlocked")

    def close(self) -> None:
        """Nothing to release: every request opens and closes its own connection."""

    def _outcome(self, ok: bool, detail: str) -> Outcome:
        detail = detail.replace(self._token, "***")  # never echo the token, whatever the lock says
        if not ok:
            log.warning("%s: %s", self.name, detail)
        return Outcome(ok, detail)

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            try:
                return self._post_once(path, payload)
            except _RetryableError as exc:
                if attempt + 1 == attempts:
                    suffix = f" (after {attempts} attempts)" if attempts > 1 else ""
                    raise _RequestError(f"{exc}{suffix}") from None
                log.info("%s: %s, retrying", self.name, exc)
                time.sleep(self.settings.backoff_s * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _post_once(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self._base + path,
            data=json.dumps(payload).encode("utf-8"),
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            method="POST",
        )
        timeout = f"timeout after {self.settings.timeout_s} s on {path}"
        try:
            with self._opener.open(request, timeout=self.settings.timeout_s) as response:
                body = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            error = _RetryableError if exc.code >= 500 else _RequestError
            raise error(f"HTTP {exc.code} from {path}") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise _RequestError(timeout) from None
            if isinstance(reason, ssl.SSLCertVerificationError):
                why = reason.verify_message or "verification failed"
                raise _RequestError(
                    f"TLS certificate of {self._netloc} not trusted: {why}"
                ) from None
            if isinstance(reason, ssl.SSLError):
                why = getattr(reason, "verify_message", None) or reason.reason or "handshake failed"
                raise _RequestError(f"TLS error with {self._netloc}: {why}") from None
            if isinstance(reason, OSError):
                why = reason.strerror or type(reason).__name__
                raise _RetryableError(f"cannot connect to {self._netloc}: {why}") from None
            raise _RequestError(f"cannot reach {self._netloc}: {_one_line(reason)}") from None
        except TimeoutError:
            raise _RequestError(timeout) from None
        except ssl.SSLError as exc:
            raise _RequestError(f"TLS error with {self._netloc}: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _RetryableError(
                f"connection to {self._netloc} failed: {type(exc).__name__}"
            ) from None
        if len(body) > MAX_RESPONSE_BYTES:
            raise _RequestError(f"response from {path} larger than {MAX_RESPONSE_BYTES} bytes")
        try:
            answer = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _RequestError(f"bad JSON from {path}") from None
        if not isinstance(answer, dict):
            raise _RequestError(f"bad JSON from {path}: expected an object")
        return answer


def _one_line(value: object, limit: int = 200) -> str:
    text = "" if value is None else " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
