"""Words spoken by text-to-speech engines, as 16 kHz mono WAV: voices unlike any recorded
speaker, for training (guard/training/perturbation_net.py's synthetic examples) and for
evaluation (bench/eval_tts_voices.py). The engines are Debian packages (``espeak-ng``,
``flite``, ``festival`` and its voices) resampled with ``sox`` without dither, so a word
comes out the same on every run.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

ESPEAK_ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-029",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
"""espeak-ng's English accents."""


def speak(
    engine: str, voice: str, word: str, out: Path, espeak_options: Sequence[str] = ()
) -> None:
    """Write ``word`` spoken by ``voice`` of ``engine`` (``espeak-ng``, ``flite`` or
    ``festival``) to ``out`` as 16 kHz mono 16-bit WAV (``espeak_options``: for instance
    ``-s 150 -p 40``, speed and pitch). Raises ``subprocess.CalledProcessError`` when the
    engine does not know the voice, ``FileNotFoundError`` when it is not installed."""
    native = out.with_suffix(".native.wav")  # festival and flite write a broken header to pipes
    if engine == "espeak-ng":
        cmd, text = ["espeak-ng", "-v", voice, *espeak_options, "-w", str(native), word], None
    elif engine == "flite":
        cmd, text = ["flite", "-voice", voice, "-t", word, "-o", str(native)], None
    else:
        cmd = ["text2wave", "-eval", f"(voice_{voice})", "-otype", "riff", "-o", str(native)]
        text = word.encode()
    subprocess.run(cmd, input=text, check=True, capture_output=True)
    subprocess.run(
        ["sox", "-q", "-D", str(native), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True
    )
