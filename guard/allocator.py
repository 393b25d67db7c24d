"""glibc's allocator, tuned for a process that allocates the same arrays for every utterance.

Each decision allocates dozens of numpy temporaries of 100-500 kB (spectra, the steady-tone
detector's 118 frames of 1024 samples and their spectrum, the consistency detector's
transformed batch). glibc serves blocks above ``M_MMAP_THRESHOLD`` with a fresh ``mmap`` and
trims the heap's free top above ``M_TRIM_THRESHOLD``: either way every utterance faults its
pages in again, and with the shipped state those page faults were a third of
``Guard.check``'s time (docs/PERFORMANCE.md, "The allocator"; on a vendor's state glibc had
raised its mmap threshold by itself, and nothing changed). Raising both keeps the pages in the process; the
peak resident size measured the same (the pages were in use anyway).

Only on Linux with glibc; elsewhere (musl's ``mallopt`` does nothing, macOS has none) nothing is
changed. A user's own ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``, or a
``glibc.malloc.`` tunable in ``GLIBC_TUNABLES``, wins: then nothing is changed either.
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
    if (
        not sys.platform.startswith("linux")
        or any(v in os.environ for v in USER_SETTINGS)
        or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")
    ):
        return False
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # musl's mallopt is a stub
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # trim first: a trim threshold alone is harmless if the mmap threshold is then refused
    # (32-bit glibc caps it at 512 kB)
    for name, param, value in (
        ("M_TRIM_THRESHOLD", M_TRIM_THRESHOLD, trim_threshold_bytes),
        ("M_MMAP_THRESHOLD", M_MMAP_THRESHOLD, mmap_threshold_bytes),
    ):
        if mallopt(param, value) != 1:
            log.debug("allocator: mallopt(%s, %d) refused", name, value)
            return False
    log.debug(
        "allocator: mmap threshold %d B, trim threshold %d B",
        mmap_threshold_bytes,
        trim_threshold_bytes,
    )
    return True
