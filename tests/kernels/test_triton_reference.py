"""The reference Triton HSTU kernel (generative-recommenders) computes our attention without bias.

benchmarks/hstu_attention.py times it beside ours on a GPU ('triton_reference'); this checks, on the
CPU, that the wiring there (benchmarks/triton_reference.py: alpha = 1, N = max_len, the same q, k, v and
offsets) gives our `hstu_attention_reference` without bias tables, forward and backward, on tiny jagged
inputs with an empty sequence and padding tokens. The kernel runs under TRITON_INTERPRET=1 in the
peer venv's python (torch and triton; no JAX there), driven as a subprocess. A second check compiles
the kernels for Hopper (sm_90) with that Triton, no GPU needed, as the GPU run will.

Where: SCALING_REC_GR_DIR (default ../peers/gr from the repo root) and SCALING_REC_GR_PYTHON (default
../peers/venv_hstu/bin/python; set up as ../shared/peers/README_hstu.md says, plus
`pip install --no-index --find-links <wheel mirror> triton==3.8.0`). Without them the parity test skips.
Tolerance: f32 both sides, max |theirs - ours| / max |ours| <= 1e-5 per output.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import triton_reference
from scaling_rec.kernels import hstu_attention_reference

ROOT = pathlib.Path(__file__).resolve().parents[2]
GR_DIR = pathlib.Path(os.environ.get("SCALING_REC_GR_DIR", ROOT.parent / "peers" / "gr"))
GR_PYTHON = pathlib.Path(os.environ.get("SCALING_REC_GR_PYTHON",
                                        ROOT.parent / "peers" / "venv_hstu" / "bin" / "python"))
LENGTHS = (5, 0, 17, 9, 1)  # 32 real tokens, one empty sequence
NUM_TOKENS, HEADS, DIM, MAX_LEN = 36, 2, 16, 32  # 4 padding tokens


def _peer_ready() -> str | None:
    """None when the checkout and a python with torch and triton exist, else why not."""
    if not (GR_DIR / triton_reference.KERNEL_FILE).is_file():
        return f"no generative-recommenders checkout at SCALING_REC_GR_DIR={GR_DIR}"
    if not GR_PYTHON.is_file():
        return f"no peer python at SCALING_REC_GR_PYTHON={GR_PYTHON}"
    probe = subprocess.run([str(GR_PYTHON), "-c", "import torch, triton"], capture_output=True, text=True)
    if probe.returncode:
        return f"{GR_PYTHON} cannot import torch and triton: {probe.stderr.strip()[-300:]}"
    return None


def test_unavailable_says_why(tmp_path):
    with pytest.raises(triton_reference.Unavailable, match="no generative-recommenders checkout"):
        triton_reference.load(tmp_path / "missing")


def test_triton_reference_matches_ours_without_bias(tmp_path):
    reason = _peer_ready()
    if reason:
        pytest.skip(reason)
    rng = np.random.default_rng(0)
    offsets = np.concatenate([[0], np.cumsum(LENGTHS)]).astype(np.int32)
    q, k, v, dout = (rng.normal(size=(NUM_TOKENS, HEADS, DIM)).astype(np.float32) for _ in range(4))
    np.savez(tmp_path / "in.npz", q=q, k=k, v=v, dout=dout, offsets=offsets, max_len=MAX_LEN)
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    run = subprocess.run([str(GR_PYTHON), "-m", "benchmarks.triton_reference", f"--gr_dir={GR_DIR}",
                          str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    theirs = np.load(tmp_path / "out.npz")
    assert str(theirs["expected_commit"]) == triton_reference.GR_COMMIT

    fn = lambda q_, k_, v_: hstu_attention_reference(q_, k_, v_, jnp.asarray(offsets), max_len=MAX_LEN)
    out, vjp = jax.vjp(fn, jnp.asarray(q), jnp.asarray(k), jnp.asarray(v))
    ours = dict(zip(("out", "dq", "dk", "dv"), (out, *vjp(jnp.asarray(dout))), strict=True))
    real = int(offsets[-1])
    for name, want in ours.items():
        want = np.asarray(want)[:real]
        got = theirs[name][:real]
        err = np.max(np.abs(got - want)) / np.max(np.abs(want))
        assert err <= 1e-5, f"{name}: max rel err {err:.2e}"


def test_triton_reference_compiles_for_hopper():
    reason = _peer_ready()
    if reason:
        pytest.skip(reason)
    run = subprocess.run([str(GR_PYTHON), "-m", "benchmarks.triton_reference", f"--gr_dir={GR_DIR}",
                          "--compile_arch=90"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    compiled = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(compiled) == {"fwd", "bwd"}
    assert all(c["shared_bytes"] > 0 for c in compiled.values())
