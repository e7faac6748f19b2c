"""scaling_rec.hardware: /proc/cpuinfo parsing, the native-bfloat16 decision and the slow-path warning."""

from __future__ import annotations

import warnings

import pytest

from scaling_rec import hardware
from scaling_rec.models import layers

ICE_LAKE = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor @ 2.80GHz
flags\t\t: fpu fma avx avx2 avx512f avx512_vnni
processor\t: 1
model name\t: other
flags\t\t: fpu
"""
SAPPHIRE_RAPIDS = ("model name\t: Intel(R) Xeon(R) Platinum 8481C\n"
                   "flags\t\t: avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile\n")
GRAVITON = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd bf16 i8mm\n"


def test_parse_cpuinfo_takes_the_first_processor():
    info = hardware.parse_cpuinfo(ICE_LAKE)
    assert info["model"] == "Intel(R) Xeon(R) Processor @ 2.80GHz"
    assert info["flags"] == ["avx", "avx2", "avx512_vnni", "avx512f", "fma", "fpu"]
    assert hardware.parse_cpuinfo(GRAVITON) == {"model": "", "flags": ["asimd", "bf16", "fp", "i8mm"]}
    assert hardware.parse_cpuinfo("") == {"model": "", "flags": []}


@pytest.mark.parametrize(("text", "machine", "native"), [
    (ICE_LAKE, "x86_64", False), (SAPPHIRE_RAPIDS, "x86_64", True), (GRAVITON, "aarch64", None)])
def test_native_bf16_follows_the_cpu_flags(monkeypatch, text, machine, native):
    monkeypatch.setattr(hardware, "cpu_info", lambda: {**hardware.parse_cpuinfo(text), "cpuinfo": True})
    monkeypatch.setattr(hardware.platform, "machine", lambda: machine)
    assert hardware.native_bf16_matmul("cpu") is native
    assert hardware.native_bf16_matmul("gpu") is True
    assert hardware.fastest_matmul_dtype("cpu") == ("bfloat16" if native else "float32")
    warning = hardware.slow_bf16_warning("bfloat16", "cpu")
    assert (warning is not None) == (native is False)
    assert hardware.slow_bf16_warning("float32", "cpu") is None


def test_dense_layers_warn_once_about_slow_bfloat16(monkeypatch):
    monkeypatch.setattr(hardware, "native_bf16_matmul", lambda backend=None: False)
    layers._warn_slow_dtype.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layers.check_matmul_dtype("bfloat16")
        layers.check_matmul_dtype("bfloat16")
        layers.check_matmul_dtype("float32")
    layers._warn_slow_dtype.cache_clear()
    assert [type(w.message) for w in caught] == [hardware.SlowPathWarning]
    assert caught[0].filename == __file__  # the warning points at the caller's line, not at the library's


def test_this_machine_is_described():
    info = hardware.cpu_info()
    assert isinstance(info["model"], str) and info["model"]
    assert set(info["flags"]) <= set(hardware.MATMUL_FLAGS)
