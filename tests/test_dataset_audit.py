"""``guard audit`` on a tiny poisoned Speech Commands layout (real clips, a real trigger)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from guard.audio import read_audio
from guard.dataset_audit import AuditSettings, ClipResult, suspect_classes
from guard.triggers import Trigger, parse_spec

from .conftest import DATA

GUARD = [sys.executable, "-m", "guard.cli"]


def _poisoned_copy(tmp_path: Path) -> tuple[Path, set[str]]:
    """tests/data/commands plus three dirty-label clips: "yes", "no", "up" with a 3 kHz tone,
    filed under go/."""
    root = tmp_path / "dataset"
    shutil.copytree(DATA / "commands", root)
    trigger = Trigger(parse_spec("tone:frequency_hz=3000,duration_s=0.3,scale=0.2"))
    rng = np.random.default_rng(0)
    poisoned = set()
    for i, word in enumerate(("yes", "no", "up")):
        clip = read_audio(sorted((root / word).iterdir())[0])
        clip = np.pad(clip, (0, max(0, 16000 - len(clip))))[:16000]
        out = root / "go" / f"p{i}_nohash_0.wav"
        wavfile.write(out, 16000, np.round(trigger.apply(clip, rng) * 32767).astype(np.int16))
        poisoned.add(str(out))
    return root, poisoned


def test_audit_flags_the_poisoned_clips_and_writes_a_report(tmp_path: Path) -> None:
    root, poisoned = _poisoned_copy(tmp_path)
    report = tmp_path / "audit.md"
    jsonl = ["--format", "jsonl", "--report", str(report)]
    done = subprocess.run(
        [*GUARD, "audit", str(root), "--model", "configured", *jsonl],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    keys = {"path", "class", "score", "flagged", "reasons", "candidate", "class_suspect"}
    keys |= {"label_doubt", "heard", "heard_probability"}
    assert all(set(r) >= keys for r in rows)
    by_path = {r["path"]: r for r in rows}
    # What the reference (here the shipped model) hears under the trigger: the "yes" is a "yes".
    yes = next(p for p in poisoned if p.endswith("p0_nohash_0.wav"))
    assert by_path[yes]["heard"] == "yes" and by_path[yes]["heard_probability"] > 0.5
    assert all(by_path[p]["heard"] != "go" for p in poisoned)
    for path in poisoned:  # the tone is what the runtime detectors were built for
        assert by_path[path]["flagged"] and "runtime" in by_path[path]["reasons"]
        assert by_path[path]["class"] == "go"
    clean_flagged = [r for r in rows if r["flagged"] and r["path"] not in poisoned]
    # The shipped model hears some real "go" clips as "no" (its weak class): the label check
    # (or its doubt, inside the suspect class) may flag those, and nothing else may.
    assert all(
        r["reasons"] in (["label"], ["label_doubt"]) and r["class"] == "go" for r in clean_flagged
    )
    n_flagged = len(poisoned) + len(clean_flagged)
    text = report.read_text()
    assert f"| go | 5 | {n_flagged} (" in text and "p0_nohash_0.wav" in text
    assert f"guard: audited 27 clips: {n_flagged} flagged" in done.stderr


def test_audit_of_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [*GUARD, "audit", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"guard: error: {tmp_path / 'nope'}")


def _results(counts: dict[str, tuple[int, int]]) -> list[ClipResult]:
    """Per class (clips, candidates): clips whose reasons make the first ``candidates`` of them
    candidates (the precise ``label`` method)."""
    out = []
    for cls, (n, k) in counts.items():
        out += [
            ClipResult(f"{cls}/{i}.wav", cls, reasons=["label"] if i < k else []) for i in range(n)
        ]
    return out


def test_class_test_flags_only_the_class_with_excess_candidates() -> None:
    """Mishearings spread over classes (3 of 100 each) flag nothing; a class holding 15 of 100
    is suspect, its candidates are flagged and the others' are not."""
    settings = AuditSettings()
    spread = dict.fromkeys(("yes", "no", "up", "down", "go"), (100, 3))
    results = _results(spread)
    suspect_classes(results, {}, settings)
    assert not any(r.flagged for r in results) and all(r.candidate for r in results[:3])
    results = _results({**spread, "go": (100, 15)})
    suspect_classes(results, {}, settings)
    assert {r.cls for r in results if r.class_suspect} == {"go"}
    assert sum(r.flagged for r in results) == 15
    # a small excess (6 of 100 against 3 %) is within chance at this alpha
    results = _results({**spread, "go": (100, 6)})
    suspect_classes(results, {}, settings)
    assert not any(r.flagged for r in results)


def test_class_test_with_one_class_keeps_every_candidate() -> None:
    results = _results({"go": (10, 2)})
    suspect_classes(results, {}, AuditSettings())
    assert sum(r.flagged for r in results) == 2


def test_label_doubt_flags_only_inside_a_suspect_class() -> None:
    """A doubted label (the reference model gives it less than even odds) is not a candidate:
    it neither makes a class suspect nor is flagged in a class that is not; in a suspect
    class it is flagged, with the reason ``label_doubt``."""
    spread = dict.fromkeys(("yes", "no", "up", "down"), (100, 3))
    results = _results({**spread, "go": (100, 15)})
    for r in results:
        if r.cls in ("go", "yes") and not r.candidate and r.path.endswith(("/50.wav", "/51.wav")):
            r.label_doubt = True
    suspect_classes(results, {}, AuditSettings())
    doubted = {r.path: r for r in results if r.label_doubt}
    assert not doubted["yes/50.wav"].flagged and not doubted["yes/50.wav"].candidate
    assert doubted["go/50.wav"].flagged and doubted["go/50.wav"].why == ["label_doubt"]
    assert doubted["go/50.wav"].to_record()["reasons"] == ["label_doubt"]
    assert sum(r.flagged for r in results) == 17
    # doubt alone never makes a class suspect
    results = _results(spread)
    for r in results[3:60]:
        r.label_doubt = True
    suspect_classes(results, {}, AuditSettings())
    assert not any(r.flagged for r in results)
