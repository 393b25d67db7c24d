"""glibc's allocator, tuned for a process that allocates the same arrays for every utterance.

Each decision allocates dozens of numpy temporaries of 100-500 kB (spectra, the steady-tone
detector's 118 x 513 frames, the consistency detector's transformed batch). glibc serves
blocks above ``M_MMAP_THRESHOLD`` with a fresh ``mmap`` and trims the heap's free top above
``M_TRIM_THRESHOLD``: either way every utterance faults its pages in again, and those page
faults were a third of ``Guard.check``'s time (docs/PERFORMANCE.md, "The allocator"). Raising
both keeps the pages in the process: the resident size grows by about the working set of one
decision (a few MB), once.

Only on Linux with glibc; elsewhere (musl's ``mallopt`` does nothing, macOS has none) nothing is
changed. A user's own ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` in the
environment wins: then nothing is changed either.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""``mallopt`` parameter numbers (glibc's malloc.h)."""
MMAP_THRESHOLD_BYTES = 8 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def tune_allocator(
    mmap_threshold_bytes: int = MMAP_THRESHOLD_BYTES,
    trim_threshold_bytes: int = TRIM_THRESHOLD_BYTES,
) -> bool:
    """Raise glibc's mmap and trim thresholds; True when both were set."""
    if not sys.platform.startswith("linux") or any(v in os.environ for v in USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl's mallopt is a stub  # noqa: B018
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(
        mallopt(M_MMAP_THRESHOLD, mmap_threshold_bytes) == 1
        and mallopt(M_TRIM_THRESHOLD, trim_threshold_bytes) == 1
    )
    log.debug("allocator thresholds %s", "raised" if ok else "left as they were")
    return ok
