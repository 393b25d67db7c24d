"""Clean speech from voices unlike any training speaker: text-to-speech, through guard.

    python bench/eval_tts_voices.py [--json docs/eval/tts_voices.json]

The input-space table of docs/DETECTION.md has seven read sentences by other voices; this
adds many more voices, all synthetic: espeak-ng (seven English accents, four variants each),
flite (four voices) and festival (three), each saying the ten commands and five of the
`unknown` words. Every clip goes through ``Guard.check``, the decision path of the daemon and
``guard scan``, with the shipped model and state: as synthesized (digital silence around the
word, a level drawn from a 0.1-0.8 peak), and again with background noise mixed in as the
"clean + background noise" family is (held-back tail of ``_background_noise_``, volume
0.02-0.3). Reports, per engine and overall: the share blocked (a false block: every clip is a
clean command), which detectors fired, and how often the model hears the right word.

No dither (sox -D), so a run is repeatable. Needs the TTS engines: ``apt-get install espeak-ng flite festival festvox-kallpc16k
festvox-kdlpc16k festvox-us-slt-hts sox`` (Debian main), and ``../shared/data`` for the noise.
~2 min on one core.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from guard import devdata
from guard.audio import fit_window, read_audio
from guard.guard import Guard
from guard.training.dataset import UNKNOWN as UNKNOWN_LABEL
from guard.training.dataset import WORDS as COMMANDS
from guard.training.tts import ESPEAK_ACCENTS, speak

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared/data/speech_commands"
UNKNOWN = ("seven", "house", "dog", "marvin", "happy")
ESPEAK_VARIANTS = ("", "+f2", "+f4", "+m3")
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
WORDS = COMMANDS + UNKNOWN


def voices() -> list[tuple[str, str]]:
    """(engine, voice) pairs this machine can speak with."""
    out: list[tuple[str, str]] = []
    if shutil.which("espeak-ng") and shutil.which("sox"):
        out += [("espeak-ng", a + v) for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    if shutil.which("flite") and shutil.which("sox"):
        out += [("flite", v) for v in FLITE_VOICES]
    if shutil.which("text2wave") and shutil.which("sox"):
        out += [("festival", v) for v in FESTIVAL_VOICES]
    return out


def spoken(
    pairs: list[tuple[str, str]], rng: np.random.Generator
) -> Iterator[tuple[str, str, str, np.ndarray, np.ndarray]]:
    """(engine, voice, word, clip as synthesized, the clip in background noise) for every voice
    and word: 1 s, at a peak drawn from 0.1-0.8, the noise as the "clean + background noise"
    family's (the evaluate part's held-back tail)."""
    noise = devdata.noise(DATA, "evaluate")
    with tempfile.TemporaryDirectory() as tmp:
        for engine, voice in pairs:
            for word in WORDS:
                path = Path(tmp) / "w.wav"
                speak(engine, voice, word, path)
                x = fit_window(read_audio(path), 16_000)
                x = (x * rng.uniform(0.1, 0.8) / max(float(np.abs(x).max()), 1e-6)).astype(
                    np.float32
                )
                yield engine, voice, word, x, devdata.add_noise(x[None, :], noise, rng, 0.3)[0]


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    blocked = [r for r in rows if r["verdict"] == "block"]
    return {
        "n": len(rows),
        "blocked": len(blocked) / len(rows),
        "blocked_clips": len(blocked),
        "fired": dict(Counter(name for r in blocked for name in r["reasons"]).most_common()),
        "heard_right": float(np.mean([r["heard_right"] for r in rows])),
        # the false blocks that cost a command the model heard right
        "blocked_of_heard_right": float(
            np.mean([r["verdict"] == "block" for r in rows if r["heard_right"]])
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pairs = voices()
    if not pairs:
        raise SystemExit("eval_tts_voices: no TTS engine found (espeak-ng, flite, text2wave + sox)")
    rng = np.random.default_rng(args.seed)
    guard = Guard.from_config(args.config)
    guard.warm_up()
    rows: list[dict[str, Any]] = []
    for engine, voice, word, x, noisy in spoken(pairs, rng):
        for setting, clip in (("as synthesized", x), ("in background noise", noisy)):
            v = guard.check(clip, 16_000)
            expected = word if word in COMMANDS else UNKNOWN_LABEL
            rows.append(
                {
                    "engine": engine,
                    "voice": voice,
                    "word": word,
                    "setting": setting,
                    "verdict": v.decision,
                    "reasons": list(v.reasons),
                    "label": v.label,
                    "confidence": round(v.confidence, 4),
                    "heard_right": v.label == expected,
                }
            )
    result: dict[str, Any] = {"voices": len(pairs), "words": list(WORDS), "settings": {}}
    for setting in ("as synthesized", "in background noise"):
        mine = [r for r in rows if r["setting"] == setting]
        result["settings"][setting] = {
            "all": summary(mine),
            **{
                e: summary([r for r in mine if r["engine"] == e])
                for e in sorted({e for e, _ in pairs})
            },
        }
    per_voice = Counter((r["engine"], r["voice"]) for r in rows if r["verdict"] == "block")
    result["most_blocked_voices"] = [
        {"engine": e, "voice": v, "blocked_clips": n} for (e, v), n in per_voice.most_common(8)
    ]
    result["blocked"] = [r for r in rows if r["verdict"] == "block"]
    print(
        "| setting | engine | clips | **blocked** | detectors that fired | heard the right word "
        "| blocked, of those heard right |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for setting, per in result["settings"].items():
        for engine, s in per.items():
            fired = ", ".join(f"{k} {n}" for k, n in s["fired"].items()) or "-"
            print(
                f"| {setting} | {engine} | {s['n']} | **{100 * s['blocked']:.1f}%** "
                f"({s['blocked_clips']}) | {fired} | {100 * s['heard_right']:.1f}% "
                f"| {100 * s['blocked_of_heard_right']:.1f}% |"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
