"""The allocator tuning: per-utterance numpy temporaries stop faulting their pages in again.

Counted in minor page faults (the kernel's count, not a timing), each case in its own process.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from guard.allocator import tune_allocator

WORK = """
import resource, sys
import numpy as np
from guard.allocator import tune_allocator
tuned = tune_allocator() if sys.argv[1] == "tuned" else False
x = np.ones(16000, np.float32)
def decision():  # the steady-tone detector's frames: 118 x 1024 floats, ~0.5 MB each array
    frames = np.lib.stride_tricks.sliding_window_view(x, 1024)[::128]
    return np.fft.rfft(frames - frames.mean(axis=1, keepdims=True), axis=1).real.sum()
for _ in range(5):
    decision()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    decision()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", WORK, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


def test_tuned_decisions_reuse_their_pages() -> None:
    untouched, default = _faults("default")
    tuned, faults = _faults("tuned")
    assert not untouched and tuned
    assert default > 10_000, default  # glibc's defaults: every decision maps its arrays afresh
    assert faults < default / 100, (faults, default)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MALLOC_TRIM_THRESHOLD_", "131072"),
        ("MALLOC_MMAP_THRESHOLD_", "131072"),
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072"),
    ],
)
def test_a_users_own_setting_wins(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    assert tune_allocator() is True  # this machine's glibc takes it
    monkeypatch.setenv(variable, value)
    assert tune_allocator() is False
