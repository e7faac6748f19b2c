"""Keep freed host memory in the process, so that XLA:CPU's per-step buffers are not page-faulted in again.

XLA:CPU takes a step's temporary buffers from malloc and frees them when the step ends. glibc serves an
allocation above its mmap threshold (128 KiB, rising with use to at most 32 MiB) with a fresh mmap and
unmaps it at free, so every step faults its large buffers in again, page by page, zeroed by the kernel.
`retain_freed_memory` turns that off: mallopt(M_MMAP_MAX, 0) serves every allocation from the heap, and
mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) keeps up to that much freed memory at the heap's top for
the next step. The process's resident memory then stays at its high-water mark.

Measured on the 2-core CPU with other work running, DLRM's bf16 step (FuxiCTR's config): 117-126 ms
median and 1.3 s of system time over 43 steps, against 86 ms and 0.3-0.4 s with the two settings
(issue 17). Importing scaling_rec applies them (scaling_rec/__init__.py) unless SCALING_REC_MALLOC=system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30
ENV = "SCALING_REC_MALLOC"  # "retain" (the default) or "system" (leave glibc's settings alone)


def retain_freed_memory() -> bool:
    """Apply the two mallopt settings above; True when applied (Linux with glibc), False elsewhere."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def apply_default() -> bool:
    """retain_freed_memory() unless the environment says SCALING_REC_MALLOC=system; True when applied."""
    choice = os.environ.get(ENV, "retain")
    if choice not in ("retain", "system"):
        raise ValueError(f"{ENV}={choice!r}: expected 'retain' or 'system'")
    return choice == "retain" and retain_freed_memory()
