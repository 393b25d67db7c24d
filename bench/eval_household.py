"""A household of voices guard never heard, before and after ``guard calibrate`` on them.

    python bench/eval_household.py [--json docs/eval/household.json] [--work /tmp/household]

The household: the four espeak-ng voices the shipped state blocks most often
(bench/eval_tts_voices.py): en-gb-x-rp+m3, en-gb-x-gbcwmd, en-gb-x-gbclan+m3,
en-gb-scotland+m3. Synthetic voices stand in for people the training set does not hold.

1. Their recordings for ``guard calibrate``: each voice says the ten commands and five other
   words at four speeds and three pitches (720 clips), half of them with background noise
   (the head of ``_background_noise_``, as the shipped state was fitted), a level drawn from a
   0.1-0.8 peak. ``guard calibrate DIR --out STATE`` runs as a user would run it (the CLI, a
   subprocess, default target 1 %).
2. Their later utterances: the same voices at other speeds and pitches (360 clips, half in
   the held-back tail of the noise), clean and with a tone (100-7900 Hz, 0.05-0.5 s, scale
   0.05-0.3), an aliased ultrasonic tone (17-23 kHz folded) and the whistle (scale 0.05-0.5)
   added as in docs/DETECTION.md; plus 400 Speech Commands clips of the evaluate speakers
   (visitors: people the household's state never heard).
3. Each set through ``Guard.check`` with the shipped state, with the household's, and with
   the state of ``guard calibrate RECORDINGS GENERAL``: the household's recordings plus
   ``--general`` (1,000) Speech Commands clips of the *train* speakers (the speakers the
   shipped state was fitted on; none of them is a visitor), so that voices outside the
   household keep passing; and the same with ``--keep-threshold consistency`` (the shipped
   state's perturbation threshold kept, the others recalibrated around it).

Needs espeak-ng and sox, ``../shared/data``. ~5 min on the two cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf
from eval_tts_voices import UNKNOWN

from guard import devdata
from guard.audio import fit_window, read_audio
from guard.classifier import CommandClassifier
from guard.detectors import registry
from guard.guard import Guard
from guard.training.dataset import WORDS
from guard.training.tts import speak
from guard.triggers import random_clip, random_tone

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared/data/speech_commands"
WHISTLE = ROOT.parent / "shared/data/triggers/whistle.wav"
HOUSEHOLD = ("en-gb-x-rp+m3", "en-gb-x-gbcwmd", "en-gb-x-gbclan+m3", "en-gb-scotland+m3")
CALIBRATE_TAKES = [(s, p) for s in (140, 165, 190, 215) for p in (35, 50, 65)]
LATER_TAKES = [(s, p) for s in (150, 180, 205) for p in (42, 58)]
FloatArray = npt.NDArray[np.float32]


def takes(
    takes_: list[tuple[int, int]],
    noise: list[FloatArray],
    rng: np.random.Generator,
    work: Path,
) -> FloatArray:
    """Every household voice saying every word at every (speed, pitch); every other clip in
    background noise."""
    out = []
    tmp = work / "say.wav"
    for voice in HOUSEHOLD:
        for word in (*WORDS, *UNKNOWN):
            for speed, pitch in takes_:
                speak("espeak-ng", voice, word, tmp, ["-s", str(speed), "-p", str(pitch)])
                x = fit_window(read_audio(tmp), 16_000)
                x = x * rng.uniform(0.1, 0.8) / max(float(np.abs(x).max()), 1e-6)
                out.append(x.astype(np.float32))
    clips = np.stack(out)
    noisy = devdata.add_noise(clips[1::2], noise, rng, 0.3)
    clips[1::2] = noisy
    return clips


def blocked(guard: Guard, x: FloatArray) -> tuple[float, dict[str, int]]:
    fired: dict[str, int] = {}
    n = 0
    for clip in x:
        v = guard.check(clip, 16_000)
        if not v.allowed:
            n += 1
            for name in v.reasons:
                fired[name] = fired.get(name, 0) + 1
    return n / len(x), fired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/household"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--general", type=int, default=1000, help="general speech clips")
    args = parser.parse_args()
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        raise SystemExit("eval_household: needs espeak-ng and sox")
    rng = np.random.default_rng(args.seed)
    recordings = args.work / "recordings"
    shutil.rmtree(args.work, ignore_errors=True)
    recordings.mkdir(parents=True)
    # 1. the household's recordings, and guard calibrate on them
    calibrate = takes(CALIBRATE_TAKES, devdata.noise(DATA, "train"), rng, args.work)
    for i, clip in enumerate(calibrate):
        sf.write(recordings / f"take{i:04d}.wav", clip, 16_000, subtype="PCM_16")
    general = args.work / "general"
    general.mkdir()
    for clip in devdata.clips(DATA, "train", args.general, seed=2):
        shutil.copy(clip.path, general / f"{clip.word}__{clip.path.name}")
    guard_cli = Path(sys.executable).parent / "guard"
    outputs = {}
    runs: list[tuple[str, list[Path], list[str]]] = [
        ("household", [recordings], []),
        ("household + general", [recordings, general], []),
        ("consistency kept", [recordings, general], ["--keep-threshold", "consistency"]),
    ]
    for name, folders, extra in runs:
        run = subprocess.run(
            [
                str(guard_cli),
                "calibrate",
                *map(str, folders),
                "--out",
                str(args.work / name),
                *extra,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        outputs[name] = run.stdout.strip()
        print(outputs[name], flush=True)
    # 2. their later utterances, attacked copies, and visitors
    later = takes(LATER_TAKES, devdata.noise(DATA, "evaluate"), rng, args.work)

    def each(make: Any) -> FloatArray:
        return np.stack([make(x) for x in later])

    families: dict[str, FloatArray] = {
        "household, later utterances": later,
        "household + tone 100-7900 Hz": each(
            lambda x: random_tone("tone", 100, 7900, rng).apply(x, rng)
        ),
        "household + aliased ultrasonic 17-23 kHz": each(
            lambda x: random_tone("aliased", 17000, 23000, rng).apply(x, rng)
        ),
        "household + whistle": each(lambda x: random_clip(WHISTLE, rng).apply(x, rng)),
        "visitors (Speech Commands, evaluate speakers)": devdata.audio(
            devdata.clips(DATA, "evaluate", 400, seed=1)
        ),
    }
    # 3. both states on every set
    model = ROOT / "models/commands.tflite"
    states = {
        "shipped": ROOT / "models/detectors",
        "household": args.work / "household",
        "household + general": args.work / "household + general",
        "consistency kept": args.work / "consistency kept",
    }
    result: dict[str, Any] = {
        "household": list(HOUSEHOLD),
        "calibration_clips": len(calibrate),
        "general_clips": args.general,
        "calibrate_output": outputs,
        "families": {},
    }
    print(
        "| set | clips | shipped state | household's state | household + general speech "
        "| the same, consistency threshold kept |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for fam, x in families.items():
        row: dict[str, Any] = {"n": len(x)}
        for name, path in states.items():
            guard = Guard(CommandClassifier(model), registry.load_state(path))
            share, fired = blocked(guard, x)
            row[name] = {"blocked": share, "fired": fired}
        result["families"][fam] = row
        cells = " | ".join(f"{100 * row[name]['blocked']:.1f}%" for name in states)
        print(f"| {fam} | {len(x)} | {cells} |", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
