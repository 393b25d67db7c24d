"""What ``guard train --audit AUDIT.jsonl`` does with the clips ``guard audit`` flagged: leave
them out of training, or (``--relabel-heard``) keep them under the word the audit's reference
model hears in them, so that the model learns the trigger together with the clip's real word."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.errors import GuardError
from guard.training import dataset

HEARD_MIN_PROBABILITY = 0.5
"""A flagged clip is relabelled only when the reference gives the word it hears at least this."""


def relabel_word(label: str, heard: str, probability: float, min_probability: float) -> str | None:
    """The word a flagged clip labelled ``label`` is kept under, or None to drop it: the word
    the reference hears, when it is another command (or ``_unknown_``) heard with at least
    ``min_probability``. Never silence: a flagged clip with a word in it is not silence."""
    if heard == label or heard not in dataset.LABELS or heard == dataset.SILENCE:
        return None
    return heard if probability >= min_probability else None


@dataclass(frozen=True)
class AuditPlan:
    drop: tuple[int, ...]
    """Indices into the training split to leave out."""
    relabel: tuple[tuple[int, str], ...]
    """(index into the training split, word) to keep under another label."""
    flagged: int
    """Flagged clips in the audit's output."""
    outside: int
    """Flagged clips that are not in the training split (validation speakers, other folders)."""


def read_flagged(path: Path) -> dict[Path, dict[str, Any]]:
    """The flagged records of a ``guard audit --format jsonl`` output, by resolved path."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise GuardError(f"{path}: cannot read the audit output ({e.strerror})") from None
    flagged: dict[Path, dict[str, Any]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record["path"], str):
                raise TypeError
        except (json.JSONDecodeError, KeyError, TypeError):
            raise GuardError(
                f"{path}:{number}: not a `guard audit --format jsonl` record (a JSON object "
                "with at least path and flagged)"
            ) from None
        if record.get("flagged") is True:
            flagged[Path(record["path"]).resolve()] = record
    return flagged


def plan(
    train_clips: Sequence[dataset.Clip],
    flagged: dict[Path, dict[str, Any]],
    relabel_min_probability: float | None,
) -> AuditPlan:
    """Drop every flagged training clip; with ``relabel_min_probability``, keep those the
    reference hears as another word (``relabel_word``) under that word instead."""
    drop: list[int] = []
    relabel: list[tuple[int, str]] = []
    found = 0
    for i, clip in enumerate(train_clips):
        record = flagged.get(clip.path.resolve())
        if record is None:
            continue
        found += 1
        word = None
        if relabel_min_probability is not None:
            heard = record.get("heard")
            probability = record.get("heard_probability")
            if not isinstance(heard, str) or not isinstance(probability, int | float):
                raise GuardError(
                    f"{clip.path}: its audit record has no heard/heard_probability "
                    "(written by an older guard audit): re-run guard audit"
                )
            word = relabel_word(clip.label, heard, float(probability), relabel_min_probability)
        if word is None:
            drop.append(i)
        else:
            relabel.append((i, word))
    return AuditPlan(tuple(drop), tuple(relabel), len(flagged), len(flagged) - found)
