"""Copy a few attributed Speech Commands clips from ../shared/data into tests/data/.

Run once by a developer (needs soundfile); the output is committed so tests run without
../shared. Every clip comes from a validation speaker, never from the training split.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile

from guard.training.dataset import WORDS, Clip, is_validation_speaker, scan

SHARED = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
OUT = Path("tests/data")
rng = np.random.default_rng(7)

clips = [c for c in scan(SHARED / "speech_commands") if is_validation_speaker(c.speaker, 15.0)]
by_word: dict[str, list[Clip]] = {}
for c in clips:
    by_word.setdefault(c.word, []).append(c)

lines = []
# tiny training set (FLAC): 2 clips per command word, 2 each of two unknown words, a noise cut
for word in [*WORDS, "zero", "two"]:
    for i in rng.choice(len(by_word[word]), 2, replace=False):
        c = by_word[word][i]
        dst = OUT / "commands" / word / c.path.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(c.path.read_bytes())
        lines.append(f"commands/{word}/{c.path.name}")
noise, rate = soundfile.read(
    SHARED / "speech_commands/_background_noise_/doing_the_dishes.flac", dtype="int16"
)
dst = OUT / "commands/_background_noise_/doing_the_dishes_cut.flac"
dst.parent.mkdir(parents=True, exist_ok=True)
soundfile.write(dst, noise[-3 * rate :], rate)
lines.append("commands/_background_noise_/doing_the_dishes_cut.flac (last 3 s)")

# classify fixtures (16-bit WAV): 2 per command word, other speakers than above
used = {line.split("/")[-1] for line in lines}
for word in WORDS:
    pool = [c for c in by_word[word] if c.path.name not in used]
    for i in rng.choice(len(pool), 2, replace=False):
        c = pool[i]
        data, rate = soundfile.read(c.path, dtype="int16")
        dst = OUT / "wav" / f"{word}__{c.path.stem}.wav"
        dst.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(dst, data, rate, subtype="PCM_16")
        lines.append(f"wav/{dst.name}")
print("\n".join(lines))
