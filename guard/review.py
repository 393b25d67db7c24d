"""``guard review``: read an audit log after an incident.

Filters by time (``--since``/``--until``, ISO 8601, compared in UTC), verdict and label; prints
one line per matching utterance and summary counts, or one event in full (``--show N``, the
N-th matching record, 1-based).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from guard.errors import GuardError


def parse_time(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise GuardError(
            f"not an ISO 8601 time: {text!r} (e.g. 2026-11-23T08:00 or 2026-11-23)"
        ) from exc
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def select(
    records: Iterable[dict[str, Any]],
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    verdict: str | None = None,
    label: str | None = None,
) -> list[dict[str, Any]]:
    out = []
    for r in records:
        t = parse_time(str(r.get("time", "")))
        if since is not None and t < since:
            continue
        if until is not None and t >= until:
            continue
        if verdict is not None and r.get("verdict") != verdict:
            continue
        if label is not None and r.get("label") != label:
            continue
        out.append(r)
    return out


def line(r: dict[str, Any]) -> str:
    reasons = ",".join(r.get("reasons", [])) or "-"
    action = r.get("action") or "-"
    return (
        f"{r.get('time', '?')}  {r.get('start_s', 0):9.2f}s  {r.get('verdict', '?'):5}  "
        f"{r.get('label', '?'):10} {r.get('confidence', 0):.2f}  reasons={reasons}  action={action}"
    )


def summary(records: list[dict[str, Any]]) -> str:
    verdicts = Counter(r.get("verdict") for r in records)
    reasons = Counter(reason for r in records for reason in r.get("reasons", []))
    labels = Counter(r.get("label") for r in records)
    parts = [
        f"{len(records)} utterances: {verdicts.get('allow', 0)} allowed, {verdicts.get('block', 0)} blocked",
        "blocked by: " + (", ".join(f"{k} {v}" for k, v in reasons.most_common()) or "-"),
        "labels: " + (", ".join(f"{k} {v}" for k, v in labels.most_common()) or "-"),
    ]
    return "\n".join(parts)


def detail(r: dict[str, Any]) -> str:
    return json.dumps(r, indent=2, sort_keys=True)
