"""What the machine's processor offers the matmuls: its model name, the vector and matrix extensions that
decide how fast a bfloat16 product runs, and the matmul dtype that is fastest here.

On a CPU, XLA runs a product of bfloat16 operands on native instructions only where the processor has them
(AMX-BF16 on Sapphire Rapids and later, AVX512-BF16 on Cooper Lake and Zen 4): there it is 4-5x the float32
rate; elsewhere (e.g. Ice Lake, AVX-512 without BF16) the operands are widened in software and the product
runs at about half the float32 rate (issue 17: 1,000-1,200 against ~250 GFLOP/s on the first, ~140 against
~280 on the second). Accelerators (GPU, TPU) always have a bfloat16 path.
"""

from __future__ import annotations

import functools
import pathlib
import platform
import sys

import flax
import jax

import scaling_rec

# The ISA flags (as /proc/cpuinfo names them) that decide how XLA:CPU can run a float32 or bfloat16 product.
MATMUL_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


class SlowPathWarning(UserWarning):
    """A setting that runs slower on this machine than its alternative (e.g. bfloat16 products on a CPU
    without native bfloat16)."""


def parse_cpuinfo(text: str) -> dict[str, object]:
    """{'model': the first 'model name', 'flags': the first processor's flags (sorted)} of /proc/cpuinfo
    text; ARM kernels say 'Features' for 'flags'. Missing fields give '' and []."""
    model, flags = "", []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = sorted(value.split())
    return {"model": model, "flags": flags}


@functools.cache
def cpu_info() -> dict[str, object]:
    """This machine's processor: {'model': name, 'flags': the MATMUL_FLAGS it has, 'cpuinfo': whether
    /proc/cpuinfo was readable} (elsewhere than Linux the model is platform.processor() and flags are [])."""
    path = pathlib.Path("/proc/cpuinfo")
    try:
        info = parse_cpuinfo(path.read_text())
    except OSError:
        return {"model": platform.processor() or platform.machine(), "flags": [], "cpuinfo": False}
    return {"model": info["model"] or platform.machine(), "cpuinfo": True,
            "flags": [f for f in MATMUL_FLAGS if f in info["flags"]]}


def native_bf16_matmul(backend: str | None = None) -> bool | None:
    """Whether a bfloat16 product runs on native instructions on `backend` (jax's default when None): True
    on accelerators and on CPUs with AMX-BF16 or AVX512-BF16, False on other x86 CPUs, None where the CPU's
    flags cannot be read (not Linux, or a non-x86 CPU whose bfloat16 support is not checked here)."""
    if (backend or jax.default_backend()) != "cpu":
        return True
    info = cpu_info()
    if not info["cpuinfo"] or platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    return any(f in info["flags"] for f in NATIVE_BF16_FLAGS)


def fastest_matmul_dtype(backend: str | None = None) -> str:
    """'bfloat16' where native_bf16_matmul says so, else 'float32' (model.matmul_dtype's choices)."""
    return "bfloat16" if native_bf16_matmul(backend) else "float32"


def slow_bf16_warning(dtype: str, backend: str | None = None) -> str | None:
    """The warning a model built with matmul dtype `dtype` deserves here: bfloat16 on a CPU known to lack
    native bfloat16 products (None otherwise)."""
    if dtype != "bfloat16" or native_bf16_matmul(backend) is not False:
        return None
    return (f"model.matmul_dtype='bfloat16' on a CPU without AMX-BF16 or AVX512-BF16 ({cpu_info()['model']}): "
            "XLA widens the operands in software and the products run at about half the float32 rate; "
            "set model.matmul_dtype='float32' here (scaling_rec.hardware).")


def caller_stacklevel() -> int:
    """The warnings.warn stacklevel of the innermost frame outside scaling_rec, flax and jax, as seen from
    the function that calls warnings.warn: a warning raised deep in a model's constructor points at the
    line of the caller's code that built the model."""
    libraries = tuple(str(pathlib.Path(m.__file__).parent) for m in (scaling_rec, flax, jax))
    frame, level = sys._getframe(1), 1  # the caller of this function: the one that calls warnings.warn
    while frame is not None and frame.f_code.co_filename.startswith(libraries):
        frame, level = frame.f_back, level + 1
    return level
