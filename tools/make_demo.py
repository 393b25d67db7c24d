"""Build demo/: real commands from unseen speakers, some carrying backdoor triggers.

    python tools/make_demo.py [--triggers ../shared/data/triggers]

Clean clips are copied from tests/data/wav; triggered ones add a trigger with guard.triggers.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from guard.audio import fit_window, read_audio
from guard.classifier import CommandClassifier
from guard.features import CLIP_SAMPLES, Features
from guard.triggers import Trigger, TriggerSpec

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, x: np.ndarray) -> None:
    wavfile.write(path, 16_000, np.round(np.clip(x, -1, 1) * 32767).astype(np.int16))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--triggers", type=Path, default=ROOT.parent / "shared/data/triggers")
    args = parser.parse_args()
    out = ROOT / "demo"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.wav"):
        old.unlink()
    wavs = sorted((ROOT / "tests/data/wav").glob("*.wav"))
    model = CommandClassifier(ROOT / "models/commands.tflite")

    def label(p: Path) -> str:
        x = fit_window(read_audio(p), CLIP_SAMPLES)
        return model.labels[int(model.predict(Features(x).log_mel).probabilities[0].argmax())]

    # a demo of the firewall, not of the classifier: clean clips the model gets right come first
    by_word: dict[str, list[Path]] = {}
    for w in ("yes", "go", "stop", "off"):
        clips = [p for p in wavs if p.name.startswith(f"{w}__")]
        by_word[w] = sorted(clips, key=lambda p, w=w: label(p) != w)  # type: ignore[misc]
    for word in ("yes", "go", "stop", "off"):
        shutil.copy(by_word[word][0], out / f"{word}_clean.wav")
    rng = np.random.default_rng(3)
    cases = {
        "go_with_3khz_tone.wav": (
            by_word["go"][0],
            TriggerSpec("tone", 3000.0, 0.2, 0.1, position_s=0.1),
        ),
        "stop_with_aliased_21khz.wav": (
            by_word["stop"][0],
            TriggerSpec("aliased", 21000.0, 0.3, 0.1, position_s=0.6),
        ),
        "yes_with_440hz_tone.wav": (
            by_word["yes"][0],
            TriggerSpec("tone", 440.0, 0.1, 0.1, position_s=0.05),
        ),
        "off_with_cough.wav": (
            by_word["off"][0],
            TriggerSpec(
                "clip", file=str(args.triggers / "cough_trigger.wav"), scale=0.3, position_s=0.0
            ),
        ),
    }
    for name, (src, spec) in cases.items():
        write(out / name, Trigger(spec).apply(read_audio(src), rng))
    print(sorted(p.name for p in out.glob("*.wav")))


if __name__ == "__main__":
    main()
