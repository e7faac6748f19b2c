"""Keep freed host memory in the process, so that XLA:CPU's per-step buffers are not page-faulted in again.

XLA:CPU takes a step's temporary buffers from malloc (one block holding all of them) and frees them when the
step ends. With glibc's own settings, an allocation above its mmap threshold (128 KiB, rising with use to at
most 32 MiB) is a fresh mmap, unmapped at free, so every step faults its large buffers in again, page by page,
zeroed by the kernel. XLA runs a step on its worker threads, and glibc gives such threads their own arenas,
whose heaps hold at most 64 MiB: a larger block is mmapped there whatever M_MMAP_MAX says.
SCALING_REC_MALLOC chooses what importing scaling_rec does about it (scaling_rec/__init__.py):
- "retain" (the default): mallopt(M_ARENA_MAX, 1) puts every thread on the main heap, mallopt(M_MMAP_MAX, 0)
  serves every allocation from it, and mallopt(M_TRIM_THRESHOLD, -1) never gives its freed top back, so a
  step's blocks are the previous step's pages. Resident memory stays at its high-water mark. It must come
  before XLA's threads first allocate (importing scaling_rec before the first computation does).
  "single_arena" is a synonym (its name before it became the default).
- "thread_arenas": the same without the single arena. Threads that allocate at once do not contend for one
  heap's lock, which makes tiny steps faster, but a block above 64 MiB on a worker thread is still mapped and
  faulted in again every step.
- "system": glibc's own settings.

Measured on the 2-core CPU (scratch timings of benchmarks.peers' steps, issue 17), thread_arenas -> retain:
- HSTU at the reference's large ML-1M shapes (1.56 GiB of temporaries a step): the block was mapped and
  unmapped every step, 447k minor faults and 0.8 s of system time a step; with retain none. Steps: bf16
  products 2.0 -> 1.6 s, float32 2.6 -> 2.1 s (the same hour; the shared machine's speed drifts by 20%
  within the evening). Large Beauty 248 -> 218 ms; small ML-1M unchanged (430 ms); small Beauty 44 ->
  52-56 ms: its blocks fit a thread's arena, and on one heap the threads contend for its lock.
- bf16 CTR steps at FuxiCTR's configs (system / thread_arenas / retain, the trim threshold 1 GiB then,
  which these steps never reach): DLRM 46-47 / 27-29 / 27.5-30 ms; DCNv2 54 / 50-54 / 35-36 ms; WuKong
  320-327 / 307-328 / 270-289 ms. System time of the WuKong run 6.5 / 5.8 / 2.0-2.3 s.
So "retain" is the default and "thread_arenas" a choice for tiny models (issue 17).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
M_ARENA_MAX = -8
NEVER_TRIM = -1  # M_TRIM_THRESHOLD's value that turns trimming off (mallopt(3))
ENV = "SCALING_REC_MALLOC"
CHOICES = ("retain", "single_arena", "thread_arenas", "system")


def retain_freed_memory(single_arena: bool = True) -> bool:
    """Apply the "retain" settings (without the single arena: "thread_arenas"); True when applied (Linux with
    glibc)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    settings = ((M_ARENA_MAX, 1),) if single_arena else ()
    settings += ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM))
    return all([bool(libc.mallopt(param, value)) for param, value in settings])


def apply_default() -> bool:
    """The settings SCALING_REC_MALLOC names ("retain" when unset); True when any were applied."""
    choice = os.environ.get(ENV, "retain")
    if choice not in CHOICES:
        raise ValueError(f"{ENV}={choice!r}: expected one of {CHOICES}")
    return choice != "system" and retain_freed_memory(single_arena=choice != "thread_arenas")


# Transparent huge pages for the retained heap. glibc's malloc asks the kernel for them (madvise) when the
# tunable glibc.malloc.hugetlb=1 is set, and it reads GLIBC_TUNABLES only when a process starts, so a command
# line entry point restarts itself with it (restart_with_huge_pages). On the 2-core CPU (issue 17, scratch
# timings, each pair in the same minutes): HSTU large ML-1M bf16 step 1.83 -> 1.60 and 1.83 -> 1.72 s, WuKong
# at FuxiCTR's config 300 -> 260 and 290 -> 271 ms, DCNv2 42.5 -> 37.2 and 39.5 -> 38.0 ms: a step's buffers
# are walked with one TLB entry per 2 MiB instead of per 4 KiB page.
TUNABLES_ENV = "GLIBC_TUNABLES"
HUGE_PAGES = "glibc.malloc.hugetlb=1"
ADDED_ENV = "SCALING_REC_ADDED_TUNABLES"  # what restart_with_huge_pages added to GLIBC_TUNABLES
THP_SYSFS = "/sys/kernel/mm/transparent_hugepage/enabled"


def thp_mode(path: str = THP_SYSFS) -> str | None:
    """The kernel's transparent-huge-page mode ("always", "madvise" or "never"), None when it has none."""
    try:
        text = open(path).read()  # noqa: SIM115 (one short read of a sysfs file)
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else None


def _glibc_has_hugetlb() -> bool:
    """glibc.malloc.hugetlb exists from glibc 2.35 on."""
    name, version = platform.libc_ver()
    if platform.system() != "Linux" or name != "glibc":
        return False
    parts = version.split(".")
    return len(parts) >= 2 and (int(parts[0]), int(parts[1])) >= (2, 35)


def huge_pages_env(environ: dict[str, str], thp: str | None, glibc_ok: bool = True) -> dict[str, str] | None:
    """`environ` with glibc.malloc.hugetlb=1 added to GLIBC_TUNABLES, or None when there is nothing to add:
    the heap is not retained (SCALING_REC_MALLOC is "thread_arenas" or "system"), the kernel has no
    transparent huge pages (`thp` None or "never"), glibc is older than 2.35, or GLIBC_TUNABLES already sets
    glibc.malloc.hugetlb (GLIBC_TUNABLES=glibc.malloc.hugetlb=0 is how to opt out)."""
    if environ.get(ENV, "retain") not in ("retain", "single_arena") or thp in (None, "never") or not glibc_ok:
        return None
    tunables = environ.get(TUNABLES_ENV, "")
    if "glibc.malloc.hugetlb=" in tunables:
        return None
    return {**environ, TUNABLES_ENV: f"{tunables}:{HUGE_PAGES}" if tunables else HUGE_PAGES, ADDED_ENV: HUGE_PAGES}


def restart_with_huge_pages() -> None:
    """Run this process's command again (os.execv, same interpreter and arguments) with glibc.malloc.hugetlb=1,
    when huge_pages_env has something to add; otherwise return. Call it first thing in a command line entry
    point, never from library code: it replaces the process."""
    env = huge_pages_env(dict(os.environ), thp_mode(), _glibc_has_hugetlb())
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def without_added_tunables(environ: dict[str, str]) -> dict[str, str]:
    """`environ` without what restart_with_huge_pages added: the environment to start another program with
    (a peer we measure against runs with glibc's own settings)."""
    added = environ.get(ADDED_ENV)
    env = {k: v for k, v in environ.items() if k != ADDED_ENV}
    if added:
        kept = [t for t in env.get(TUNABLES_ENV, "").split(":") if t and t != added]
        if kept:
            env[TUNABLES_ENV] = ":".join(kept)
        else:
            env.pop(TUNABLES_ENV, None)
    return env
