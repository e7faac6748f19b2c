"""Keep freed host memory in the process, so that XLA:CPU's per-step buffers are not page-faulted in again.

XLA:CPU takes a step's temporary buffers from malloc and frees them when the step ends. glibc serves an
allocation above its mmap threshold (128 KiB, rising with use to at most 32 MiB) with a fresh mmap and
unmaps it at free, so every step faults its large buffers in again, page by page, zeroed by the kernel.
SCALING_REC_MALLOC chooses what importing scaling_rec does about it (scaling_rec/__init__.py):
- "retain" (the default): mallopt(M_MMAP_MAX, 0) serves every allocation from a heap and
  mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) keeps up to that much freed memory at a heap's top for
  the next step. Resident memory then stays near its high-water mark.
- "single_arena": also mallopt(M_ARENA_MAX, 1), which puts XLA's worker threads on the main heap. It must
  come before those threads first allocate (importing scaling_rec before the first computation does).
- "system": glibc's own settings.

Measured on the idle 2-core CPU, median step of 30 (system / retain / single_arena):
- bf16 CTR steps at FuxiCTR's configs: DLRM 46-47 / 27-29 / 27.5 ms; DCNv2 54 / 50-54 / 35-36 ms;
  WuKong 320-327 / 307-328 / 278-289 ms. System time of the WuKong run 6.5 / 5.8 / 2.0-2.3 s.
- HSTU at the reference's small Beauty shapes: 39-45 / 41-51 / 46-58 ms: threads that allocate at once
  contend for the one arena's lock (system time 0.5 / 0.6 / 1.1-1.2 s).
So "retain" is the default and "single_arena" a choice for CTR training (issue 17).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
M_ARENA_MAX = -8
TRIM_THRESHOLD_BYTES = 1 << 30
ENV = "SCALING_REC_MALLOC"
CHOICES = ("retain", "single_arena", "system")


def retain_freed_memory(single_arena: bool = False) -> bool:
    """Apply the "retain" settings (and the single arena); True when applied (Linux with glibc)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    settings = ((M_ARENA_MAX, 1),) if single_arena else ()
    settings += ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return all([bool(libc.mallopt(param, value)) for param, value in settings])


def apply_default() -> bool:
    """The settings SCALING_REC_MALLOC names ("retain" when unset); True when any were applied."""
    choice = os.environ.get(ENV, "retain")
    if choice not in CHOICES:
        raise ValueError(f"{ENV}={choice!r}: expected one of {CHOICES}")
    return choice != "system" and retain_freed_memory(single_arena=choice == "single_arena")
