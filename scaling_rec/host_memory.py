"""Keep freed host memory in the process, so that XLA:CPU's per-step buffers are not page-faulted in again.

XLA:CPU takes a step's temporary buffers from malloc and frees them when the step ends. glibc serves an
allocation above its mmap threshold (128 KiB, rising with use to at most 32 MiB) with a fresh mmap and
unmaps it at free, so every step faults its large buffers in again, page by page, zeroed by the kernel.
XLA's worker threads also get arenas of their own, whose heaps glibc shrinks and regrows the same way.
`retain_freed_memory` turns all of it off: mallopt(M_ARENA_MAX, 1) puts every thread on the main heap,
mallopt(M_MMAP_MAX, 0) serves every allocation from it, and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
keeps up to that much freed memory at its top for the next step. The process's resident memory then
stays near its high-water mark, and threads that allocate at once share one arena's lock.

Measured on the idle 2-core CPU, bf16 steps at FuxiCTR's configs, median over 30 (SCALING_REC_MALLOC=system
against these settings): DLRM 47 -> 29 ms, DCNv2 53 -> 37 ms, WuKong 322 -> 279-289 ms, the system time of
the WuKong run 6.4 -> 2.0 s (issue 17). The arena setting must come before XLA's threads first allocate:
importing scaling_rec applies all three (scaling_rec/__init__.py) unless SCALING_REC_MALLOC=system.
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
ENV = "SCALING_REC_MALLOC"  # "retain" (the default) or "system" (leave glibc's settings alone)


def retain_freed_memory() -> bool:
    """Apply the three mallopt settings above; True when applied (Linux with glibc), False elsewhere."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return all([bool(libc.mallopt(param, value)) for param, value in settings])


def apply_default() -> bool:
    """retain_freed_memory() unless the environment says SCALING_REC_MALLOC=system; True when applied."""
    choice = os.environ.get(ENV, "retain")
    if choice not in ("retain", "system"):
        raise ValueError(f"{ENV}={choice!r}: expected 'retain' or 'system'")
    return choice == "retain" and retain_freed_memory()
