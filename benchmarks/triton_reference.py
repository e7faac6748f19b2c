"""The reference Triton HSTU attention of generative-recommenders, run beside ours (issue 17).

The kernel (`triton_hstu_mha` in generative_recommenders/ops/triton/triton_hstu_attention.py, commit
GR_COMMIT) is imported at run time from a checkout outside this package, never copied into it:
`../peers/gr` on the CPU machine, `.peers/gr` (an ignored folder that the device tool carries) on a GPU.
This module needs numpy, torch and triton only (no JAX), so the peer venv's python can run it.

What it computes, against `scaling_rec.kernels.hstu_attention` (checked by tests/kernels/
test_triton_reference.py on tiny jagged inputs, TRITON_INTERPRET=1):
    theirs: out_i = sum_{j <= i, same sequence} SiLU(alpha * q_i . k_j) / N * v_j
    ours:   out_i = sum_{j <= i, same sequence} SiLU(q_i . k_j + rab(i, j)) / max_len * v_j
so with alpha = 1, N = max_len, the same q, k, v [T, H, D] and the same offsets (theirs as int64), the two
agree exactly when ours is called without bias tables. The reference kernel has no relative attention
bias at all (no position or time table, hence no bias gradients), so the like-for-like comparison is
ours without bias ('pallas_no_bias' in benchmarks/hstu_attention.py). Rows after offsets[-1] (padding)
are left unwritten by theirs (torch.empty) and are zeros in ours: compare real tokens only. The
reference's other options (num_targets, max_attn_len, contextual_seq_len, sort_by_length, TMA) stay
off; it autotunes its tiles per (2^floor(log2 B), H, D) on the first call of each shape.

CPU checks (the peer venv's python; in.npz holds q, k, v, dout float32 [T, H, D], offsets int [B+1],
max_len; out.npz gets out, dq, dk, dv), and a compile-only check for Hopper (no GPU needed):
    TRITON_INTERPRET=1 python -m benchmarks.triton_reference --gr_dir=../peers/gr in.npz out.npz
    python -m benchmarks.triton_reference --gr_dir=../peers/gr --compile_arch=90
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import operator
import os
import pathlib
import sys
import time
from types import ModuleType

import numpy as np

GR_COMMIT = "2e81fab69a497fb5e24cd23569adf1e78070e4ec"
KERNEL_FILE = "generative_recommenders/ops/triton/triton_hstu_attention.py"
KERNEL_MODULE = "generative_recommenders.ops.triton.triton_hstu_attention"


# Set on triton.language by load() where this Triton lacks them (recorded in provenance()).
SHIMS: list[str] = []


class Unavailable(RuntimeError):
    """The reference kernel cannot run here; str(self) says why."""


def _tma_api_absent(*args, **kwargs):
    raise RuntimeError("the reference's TMA path runs only with enable_tma=True, which is never set here")


def load(gr_dir: str | os.PathLike, interpret: bool = False) -> ModuleType:
    """Import the reference kernel module from the checkout gr_dir.

    interpret: for TRITON_INTERPRET=1 runs on CPU tensors. Triton's interpreter has no libdevice
    `fast_dividef`, which the kernel calls for its sigmoid: it is swapped for a plain division; it
    runs `and` / `or` as Python does, where the compiler makes them elementwise on block tensors (the
    kernel builds its causal mask so): see _interpret_like_the_compiler; and each autotuner keeps
    only its first tile configuration (the interpreter would run them all; the tile does not change
    the result). Compiled runs keep all three as the reference wrote them.
    Compiled or not: the kernel's TMA branches (dead: enable_tma stays False) name
    tl._experimental_descriptor_load / _store, which Triton 3.6 and 3.8 do not have, and Triton's check
    for early returns looks every `tl.<name>` up, dead branch or not, so the kernel does not compile
    (Triton 3.6, sm_90: AttributeError) unless the names exist: where absent they are set to a
    function that raises if ever called (SHIMS lists them).
    Raises Unavailable (missing checkout, torch or triton).
    """
    root = pathlib.Path(gr_dir).resolve()
    if not (root / KERNEL_FILE).is_file():
        raise Unavailable(f"no generative-recommenders checkout at {gr_dir!s} ({KERNEL_FILE} missing)")
    try:
        import torch  # noqa: F401
        import triton.language as tl
    except ImportError as e:
        raise Unavailable(f"torch / triton not importable: {e}") from e
    for name in ("_experimental_descriptor_load", "_experimental_descriptor_store"):
        if not hasattr(tl, name):
            setattr(tl, name, _tma_api_absent)
            SHIMS.append(f"triton.language.{name} (absent; the TMA path stays off)")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        mod = importlib.import_module(KERNEL_MODULE)
    except Exception as e:  # noqa: BLE001 - any import failure of the peer is a reason to report
        raise Unavailable(f"importing {KERNEL_MODULE} failed: {type(e).__name__}: {e}") from e
    if interpret:
        _interpret_like_the_compiler()
        mod.fast_dividef = operator.truediv
        for tuner in (mod._hstu_attn_fwd, mod._hstu_attn_bwd):
            tuner.configs = tuner.configs[:1]
    return mod


def _logical(is_and: bool, a, b):
    """`a and b` / `a or b` as Triton's compiler reads them: elementwise when either is a block."""
    import triton.language as tl

    if any(isinstance(x, tl.tensor) and x.type.is_block() for x in (a, b)):
        return a & b if is_and else a | b
    return (a and b) if is_and else (a or b)


def _interpret_like_the_compiler() -> None:
    """Make the interpreter's rewrite of jit functions turn `and` / `or` into _logical calls.

    The interpreter already parses each jit function and rewrites its AST before running it; this
    extends that rewrite. Both operands are evaluated (no short cut), which the reference's scalar
    conditions allow.
    """
    import ast

    from triton.runtime import interpreter

    class BoolOpsAsCompiled(interpreter.ASTTransformer):
        def visit_Assign(self, node: ast.Assign) -> ast.Assign:
            node.value = self.visit(node.value)  # the base class rewrites the value unvisited
            return super().visit_Assign(node)

        def visit_BoolOp(self, node: ast.BoolOp) -> ast.expr:
            self.generic_visit(node)
            is_and = ast.Constant(value=isinstance(node.op, ast.And))
            expr = node.values[0]
            for value in node.values[1:]:
                expr = ast.Call(func=ast.Name(id="_scaling_rec_logical", ctx=ast.Load()),
                                args=[is_and, expr, value], keywords=[])
            return expr

    # The rewriter copies the interpreter module's globals into each rewritten function's globals.
    interpreter._scaling_rec_logical = _logical
    interpreter.FunctionRewriter.ast_transformer = BoolOpsAsCompiled()


def provenance(gr_dir: str | os.PathLike) -> dict:
    """Which reference ran: the checkout as given, the expected commit, the kernel file's sha256,
    the versions and the names load() had to set."""
    import torch
    import triton

    digest = hashlib.sha256((pathlib.Path(gr_dir) / KERNEL_FILE).read_bytes()).hexdigest()
    return dict(checkout=str(gr_dir), expected_commit=GR_COMMIT, kernel_sha256=digest,
                torch=torch.__version__, triton=triton.__version__, shims=list(SHIMS))


def attention(mod: ModuleType, q, k, v, offsets, max_len: int):
    """Their kernel with our semantics: alpha = 1, N = max_len, no targets, window or context."""
    return mod.triton_hstu_mha(N=max_len, alpha=1.0, q=q, k=k, v=v, seq_offsets=offsets)


def forward_backward(mod: ModuleType, q, k, v, offsets, max_len: int, dout) -> tuple:
    """(out, dq, dk, dv) for the cotangent dout; q, k, v are not modified."""
    import torch

    leaves = [x.detach().requires_grad_(True) for x in (q, k, v)]
    out = attention(mod, *leaves, offsets, max_len)
    grads = torch.autograd.grad(out, leaves, grad_outputs=dout)
    return (out.detach(), *grads)


def to_torch(q: np.ndarray, k: np.ndarray, v: np.ndarray, offsets: np.ndarray, dtype: str,
             device: str) -> tuple:
    """Our float32 numpy q, k, v (exact upcasts of the benchmark's arrays) and offsets, as theirs."""
    import torch

    tdtype = getattr(torch, dtype)
    qkv = [torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device=device, dtype=tdtype)
           for x in (q, k, v)]
    return (*qkv, torch.from_numpy(np.asarray(offsets, np.int64)).to(device))


def measure_gpu(mod: ModuleType, q, k, v, offsets, max_len: int, reps: int,
                fwd_flops: int) -> tuple[dict, tuple]:
    """Time forward and forward+backward (grads of q, k, v for a cotangent of ones) on the GPU.

    The layout of benchmarks.hstu_attention.measure: the first call (autotuning and compilation
    included) is first_call_s, then `reps` calls each closed by torch.cuda.synchronize().
    Returns (timings with useful TFLOP/s, (out, dq, dk, dv) as float32 numpy).
    """
    import torch

    dout = torch.ones_like(q)

    def timed(fn) -> tuple[dict, object]:
        t0 = time.perf_counter()
        result = fn()
        torch.cuda.synchronize()
        first = time.perf_counter() - t0
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            result = fn()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return dict(median_s=float(np.median(times)), min_s=float(np.min(times)),
                    first_call_s=first), result

    with torch.no_grad():
        t_fwd, _ = timed(lambda: attention(mod, q, k, v, offsets, max_len))
    t_bwd, outs = timed(lambda: forward_backward(mod, q, k, v, offsets, max_len, dout))
    t_fwd["tflops_per_s"] = fwd_flops / t_fwd["median_s"] / 1e12
    t_bwd["tflops_per_s"] = 3 * fwd_flops / t_bwd["median_s"] / 1e12
    return {"fwd": t_fwd, "fwd_bwd": t_bwd}, tuple(o.float().cpu().numpy() for o in outs)


def compile_check(mod: ModuleType, arch: int, dim: int = 64) -> dict:
    """Compile the first tile configuration of the forward and backward kernels, bf16 with head
    dimension dim, for CUDA compute capability arch (90: Hopper) with the reference's own options
    (no targets, window, context, sorting or TMA); no GPU needed (Triton's wheel brings ptxas).

    Returns {'fwd' | 'bwd': {'config', 'num_warps', 'num_stages', 'shared_bytes'}}; raises
    triton's CompilationError where the kernel does not compile with this Triton.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    pointers = {n: "*bf16" for n in ("Q", "K", "V", "Out", "DOut", "DQ", "DK", "DV")}
    pointers.update(seq_offsets="*i64", LOCK="*i32")
    constants = dict(workspace_ptr=None, tma_workspace_ptr=None, sort_by_length_indices=None,
                     num_targets=None, HAS_MULTIPLE_TARGETS=False, IS_DELTA_Q=False, ALLOW_TF32=False,
                     BLOCK_D_Q=dim, BLOCK_D_V=dim, HAS_CONTEXTUAL_SEQ_LEN=False, HAS_MAX_ATTN_LEN=False,
                     HAS_SORT_BY_LENGTH_INDICES=False, ENABLE_TMA=False, TMA_DESC_SIZE=128,
                     ENABLE_BUFFER_OPS_ASSUMES=False)
    result = {}
    for name, tuner in (("fwd", mod._hstu_attn_fwd), ("bwd", mod._hstu_attn_bwd)):
        cfg = tuner.configs[0]
        values = {**constants, **cfg.kwargs}
        args = tuner.fn.arg_names
        signature = {a: pointers.get(a) or ("constexpr" if a in values else "fp32" if a == "alpha"
                                            else "i32") for a in args}
        kernel = triton.compile(ASTSource(tuner.fn, signature, {a: values[a] for a in args if a in values}),
                                target=GPUTarget("cuda", arch, 32),
                                options=dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages))
        result[name] = dict(config=dict(cfg.kwargs), num_warps=cfg.num_warps, num_stages=cfg.num_stages,
                            shared_bytes=kernel.metadata.shared)
    return result


def main() -> None:
    """The CPU checks' worker: parity (in.npz -> out.npz on CPU tensors) or --compile_arch."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--gr_dir", required=True)
    p.add_argument("--compile_arch", type=int, default=None,
                   help="instead: compile the kernels for this CUDA compute capability (90) and print "
                        "what compile_check returns")
    p.add_argument("inputs", nargs="?")
    p.add_argument("outputs", nargs="?")
    a = p.parse_args()
    if a.compile_arch is not None:
        print(json.dumps(compile_check(load(a.gr_dir), a.compile_arch)))
        return
    if os.environ.get("TRITON_INTERPRET") != "1" or not a.outputs:
        p.error("the parity run takes in.npz out.npz and TRITON_INTERPRET=1 (the kernel on CPU tensors)")
    mod = load(a.gr_dir, interpret=True)
    import torch

    data = np.load(a.inputs)
    q, k, v, offsets = to_torch(data["q"], data["k"], data["v"], data["offsets"], "float32", "cpu")
    dout = torch.from_numpy(np.ascontiguousarray(data["dout"], np.float32))
    outs = forward_backward(mod, q, k, v, offsets, int(data["max_len"]), dout)
    np.savez(a.outputs, **{n: o.numpy() for n, o in zip(("out", "dq", "dk", "dv"), outs, strict=True)},
             **{k: np.asarray(str(val)) for k, val in provenance(a.gr_dir).items()})


if __name__ == "__main__":
    main()
