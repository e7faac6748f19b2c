"""Benchmark of jagged HSTU attention: XLA path vs Pallas kernels vs softmax attention vs the reference.

    python -m benchmarks.hstu_attention            # CPU: reduced set (4 min on 2 quiet cores, 16 loaded)
    (on CPU the padded softmax at L = 4096 takes ~13 GB and was OOM-killed once on a 24 GB host;
    --softmax_max_len=1024 skips it)
    python -m benchmarks.hstu_attention --full     # GPU: lengths 256 .. 16k

For each max length L (token budget T = max(L, --tokens)) and two layouts:
  padded: T / L sequences all of length L (what a padded batch computes);
  jagged: lengths from a log-normal (median L / 8, sigma 1, clipped to [1, L]) packed into T.
it times forward and forward+backward (grads of q, k, v and both bias tables) of
  xla      the blocked-window XLA path (`hstu_xla`);
  pallas   the fused kernels (GPU only: on CPU Pallas runs only in interpret mode, whose timing
           says nothing about speed, so it is skipped and the JSON says so);
  softmax  `jax.nn.dot_product_attention` (causal softmax) on the padded [B, L, H, D] shape of
           the same sequences (skipped where its L x L scores would not fit, see --softmax_max_len);
and, at the --triton_reference_lengths (default all), the like-for-like pair without bias tables:
  pallas_no_bias    the Pallas kernels without bias (grads of q, k, v), wherever pallas runs;
  triton_reference  generative-recommenders' Triton HSTU kernel (`triton_hstu_mha`, alpha 1, N = L,
                    no relative bias: it has none) on the same q, k, v and offsets, imported at run
                    time from the checkout --gr_dir (benchmarks/triton_reference.py; GPU, torch and
                    triton needed, else the JSON says why it was skipped);
and reports useful FLOP/s: 4 * H * D * (causal same-sequence pairs) per forward, x3 for fwd+bwd.
speedup_vs_xla = XLA time / Pallas time (fwd+bwd); vs_triton_reference = reference time / Pallas time
without bias (fwd+bwd; > 1 is ours faster). Writes benchmarks/results/hstu_attention_<backend>.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import triton_reference
from benchmarks.provenance import ROOT, command_line, provenance
from scaling_rec import host_memory
from scaling_rec.kernels import hstu_attention
from scaling_rec.kernels.hstu_pallas import hstu_attention_pallas

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
NUM_BUCKETS = 128


def sample_lengths(rng: np.random.Generator, max_len: int, num_tokens: int, jagged: bool) -> np.ndarray:
    """Sequence lengths filling at most num_tokens: all max_len (padded) or log-normal (jagged)."""
    if not jagged:
        return np.full(max(1, num_tokens // max_len), max_len, np.int64)
    lengths, total = [], 0
    while True:
        n = int(np.clip(round(rng.lognormal(np.log(max_len / 8), 1.0)), 1, max_len))
        if total + n > num_tokens:
            break
        lengths.append(n)
        total += n
    return np.asarray(lengths, np.int64)


def timeit(fn: Callable, args: tuple, reps: int) -> tuple[dict, object]:
    """Compile + one warm-up run, then `reps` timed runs: (seconds (median, min), last output)."""
    jitted = jax.jit(fn)
    t0 = time.perf_counter()
    result = jax.block_until_ready(jitted(*args))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        result = jax.block_until_ready(jitted(*args))
        times.append(time.perf_counter() - t0)
    stats = dict(median_s=float(np.median(times)), min_s=float(np.min(times)), first_call_s=compile_s)
    return stats, result


def measure(fwd: Callable, fwd_bwd: Callable, inputs: tuple, reps: int,
            fwd_flops: int) -> tuple[dict, tuple | None]:
    """Time fwd and fwd+bwd; (timings with useful TFLOP/s, (out, *grads)) or ({'error'}, None).

    A failure (compile error, out of memory) is recorded as the result, not raised.
    """
    try:
        t_fwd, out = timeit(fwd, inputs, reps)
        t_bwd, grads = timeit(fwd_bwd, inputs, reps)
    except Exception as e:  # noqa: BLE001 - any backend failure is a result to report
        return {"error": f"{type(e).__name__}: {str(e)[:500]}"}, None
    t_fwd["tflops_per_s"] = fwd_flops / t_fwd["median_s"] / 1e12
    t_bwd["tflops_per_s"] = 3 * fwd_flops / t_bwd["median_s"] / 1e12
    return {"fwd": t_fwd, "fwd_bwd": t_bwd}, (out, *grads)


def hstu_fns(impl: str, offsets: jax.Array, max_len: int, ts: jax.Array,
             interpret: bool = False, block: int | None = None,
             bias: bool = True) -> tuple[Callable, Callable]:
    """(forward, forward+backward) closures of hstu_attention.

    bias: both tables, fwd(q, k, v, pos_bias, time_bias) and grads of all five; else none,
      fwd(q, k, v) and grads of q, k, v.
    block: the Pallas kernels' tile (None: their default for max_len).
    """

    def fwd(q, k, v, pb=None, tb=None):
        if impl == "pallas":
            return hstu_attention_pallas(q, k, v, offsets, max_len=max_len, pos_bias=pb,
                                         timestamps=ts, time_bias=tb, interpret=interpret,
                                         block=block)
        return hstu_attention(q, k, v, offsets, max_len=max_len, impl=impl, pos_bias=pb,
                              timestamps=ts, time_bias=tb)

    def fwd_bwd(*args):
        return jax.grad(lambda *a: jnp.sum(fwd(*a).astype(jnp.float32)),
                        argnums=tuple(range(len(args))))(*args)

    if bias:
        return fwd, fwd_bwd
    return (lambda q, k, v: fwd(q, k, v)), (lambda q, k, v: fwd_bwd(q, k, v))


def softmax_fns(lengths: np.ndarray, implementation: str | None) -> tuple[Callable, Callable]:
    """Causal softmax attention on the padded [B, L, H, D] layout with key lengths.

    implementation: None (XLA's choice), 'xla' or 'cudnn' (jax.nn.dot_product_attention).
    """
    kv_len = jnp.asarray(lengths, jnp.int32)

    def fwd(q, k, v):
        return jax.nn.dot_product_attention(q, k, v, is_causal=True, key_value_seq_lengths=kv_len,
                                            implementation=implementation)

    def fwd_bwd(q, k, v):
        return jax.grad(lambda *a: jnp.sum(fwd(*a).astype(jnp.float32)), argnums=(0, 1, 2))(q, k, v)

    return fwd, fwd_bwd


def bench_case(args, max_len: int, jagged: bool, rng: np.random.Generator) -> dict:
    """All implementations on one (max_len, layout) case."""
    heads, dim, dtype = args.heads, args.dim, jnp.dtype(args.dtype)
    num_tokens = max(max_len, args.tokens)
    lengths = sample_lengths(rng, max_len, num_tokens, jagged)
    offsets = jnp.asarray(np.concatenate([[0], np.cumsum(lengths)]), jnp.int32)
    pairs = int((lengths * (lengths + 1) // 2).sum())
    fwd_flops = 4 * heads * dim * pairs
    mk = lambda *shape: jnp.asarray(rng.normal(size=shape), dtype)
    q, k, v = mk(num_tokens, heads, dim), mk(num_tokens, heads, dim), mk(num_tokens, heads, dim)
    pb = jnp.asarray(rng.normal(size=(2 * max_len - 1,)), jnp.float32)
    tb = jnp.asarray(rng.normal(size=(NUM_BUCKETS + 1,)), jnp.float32)
    ts = jnp.asarray(np.sort(rng.integers(0, 10**8, size=num_tokens)), jnp.int32)
    case = dict(max_len=max_len, layout="jagged" if jagged else "padded", tokens=num_tokens,
                real_tokens=int(lengths.sum()), num_sequences=int(len(lengths)),
                mean_length=float(lengths.mean()), causal_pairs=pairs, fwd_flops=fwd_flops,
                impls={})
    impls = ["xla"] + (["pallas"] if args.pallas else [])
    outputs = {}
    for impl in impls:
        fwd, fwd_bwd = hstu_fns(impl, offsets, max_len, ts, interpret=not args.on_gpu,
                                block=args.pallas_block)
        case["impls"][impl], outputs[impl] = measure(fwd, fwd_bwd, (q, k, v, pb, tb), args.reps,
                                                     fwd_flops)
    if outputs.get("pallas") is not None and outputs["xla"] is not None:
        case["pallas_vs_xla_max_rel_err"] = _rel_errors(outputs["pallas"], outputs["xla"])
    if args.triton_reference_lengths is None or max_len in args.triton_reference_lengths:
        bench_no_bias(args, case, offsets, (q, k, v), max_len)
    if max_len <= args.softmax_max_len:
        bsz = len(lengths)
        qp, kp, vp = (mk(bsz, max_len, heads, dim) for _ in range(3))
        fwd, fwd_bwd = softmax_fns(lengths, args.softmax_impl)
        case["impls"]["softmax_padded"], _ = measure(fwd, fwd_bwd, (qp, kp, vp), args.reps,
                                                     fwd_flops)
        case["impls"]["softmax_padded"]["implementation"] = args.softmax_impl or "xla default"
    else:
        case["impls"]["softmax_padded"] = {"skipped": f"max_len > --softmax_max_len "
                                           f"({args.softmax_max_len}): L x L scores too large here"}
    if "fwd_bwd" in case["impls"].get("pallas", {}) and "fwd_bwd" in case["impls"]["xla"]:
        xla_t = case["impls"]["xla"]["fwd_bwd"]["median_s"]
        case["speedup_vs_xla"] = xla_t / case["impls"]["pallas"]["fwd_bwd"]["median_s"]
    else:
        case["speedup_vs_xla"] = None
    return case


def bench_no_bias(args, case: dict, offsets: jax.Array, qkv: tuple, max_len: int) -> None:
    """The like-for-like pair without bias tables: pallas_no_bias and triton_reference, into case.

    Both see the same q, k, v and offsets; the reference's rows after offsets[-1] are unwritten, so
    their outputs are compared on the real tokens only (triton_reference_vs_pallas_no_bias_max_rel_err).
    """
    fwd_flops, impls = case["fwd_flops"], case["impls"]
    ours = None
    if args.pallas:
        fwd, fwd_bwd = hstu_fns("pallas", offsets, max_len, None, interpret=not args.on_gpu,
                                block=args.pallas_block, bias=False)
        impls["pallas_no_bias"], ours = measure(fwd, fwd_bwd, qkv, args.reps, fwd_flops)
    if args.triton_ref is None:
        impls["triton_reference"] = {"skipped": args.triton_ref_reason}
        return
    try:
        tensors = triton_reference.to_torch(*(np.asarray(x.astype(jnp.float32)) for x in qkv),
                                            np.asarray(offsets), args.dtype, "cuda")
        impls["triton_reference"], theirs = triton_reference.measure_gpu(
            args.triton_ref, *tensors, max_len, args.reps, fwd_flops)
    except Exception as e:  # noqa: BLE001 - any failure of the peer kernel is a result to report
        impls["triton_reference"] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
        return
    if ours is not None and "fwd_bwd" in impls["pallas_no_bias"]:
        real = case["real_tokens"]
        case["triton_reference_vs_pallas_no_bias_max_rel_err"] = _rel_errors(
            tuple(jnp.asarray(t[:real]) for t in theirs), tuple(o[:real] for o in ours),
            names=("out", "dq", "dk", "dv"))
        case["vs_triton_reference"] = (impls["triton_reference"]["fwd_bwd"]["median_s"]
                                       / impls["pallas_no_bias"]["fwd_bwd"]["median_s"])


def _rel_errors(got: tuple, want: tuple,
                names: tuple = ("out", "dq", "dk", "dv", "d_pos_bias", "d_time_bias")) -> dict:
    """max |got - want| / max |want| per output (names in order)."""
    return {n: float(jnp.max(jnp.abs(g.astype(jnp.float32) - w.astype(jnp.float32)))
                     / max(float(jnp.max(jnp.abs(w.astype(jnp.float32)))), 1e-30))
            for n, g, w in zip(names, got, want, strict=True)}


def load_triton_reference(args) -> None:
    """args.triton_ref: the reference kernel module where it can run (GPU), else None and the reason."""
    args.triton_ref, args.triton_ref_reason, args.triton_ref_provenance = None, None, None
    if not args.on_gpu:
        args.triton_ref_reason = ("no GPU: the reference Triton kernel is timed on a GPU only; its CPU "
                                  "parity with ours is tests/kernels/test_triton_reference.py")
        return
    try:
        module = triton_reference.load(args.gr_dir)
        import torch

        if not torch.cuda.is_available():
            raise triton_reference.Unavailable("torch sees no CUDA device")
        args.triton_ref_provenance = triton_reference.provenance(args.gr_dir)
        args.triton_ref = module
    except triton_reference.Unavailable as e:
        args.triton_ref_reason = str(e)


def main() -> None:
    backend = jax.default_backend()
    on_gpu = backend == "gpu"
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="lengths 256..16k (default on GPU)")
    p.add_argument("--lengths", type=int, nargs="*", default=None)
    p.add_argument("--tokens", type=int, default=32768 if on_gpu else 8192, help="token budget T")
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--dtype", default="bfloat16" if on_gpu else "float32")
    p.add_argument("--reps", type=int, default=5 if on_gpu else 2)
    p.add_argument("--softmax_max_len", type=int, default=16384 if on_gpu else 4096)
    p.add_argument("--softmax_impl", default="cudnn" if on_gpu else None,
                   help="jax.nn.dot_product_attention implementation (cudnn on GPU)")
    p.add_argument("--out", default=None)
    p.add_argument("--pallas_interpret", action="store_true",
                   help="off GPU: run the Pallas kernels in interpret mode (a smoke test of this "
                        "script; the timings mean nothing)")
    p.add_argument("--pallas_block", type=int, default=None,
                   help="tile of the Pallas kernels (default: hstu_pallas.default_block)")
    p.add_argument("--gr_dir", default=str(ROOT / ".peers" / "gr"),
                   help="generative-recommenders checkout for triton_reference (default: the ignored "
                        ".peers/gr of this repo, which the device tool carries)")
    p.add_argument("--triton_reference_lengths", type=int, nargs="*", default=None,
                   help="max lengths that time pallas_no_bias and triton_reference (default: all)")
    args = p.parse_args()
    args.on_gpu = on_gpu
    args.pallas = on_gpu or args.pallas_interpret
    load_triton_reference(args)
    full = [256, 512, 1024, 2048, 4096, 8192, 16384]
    lengths = args.lengths or (full if (args.full or on_gpu) else [256, 1024, 4096, 16384])
    rng = np.random.default_rng(0)
    out = pathlib.Path(args.out) if args.out else RESULTS_DIR / f"hstu_attention_{backend}.json"
    cases = []
    for max_len in lengths:
        for jagged in (False, True):
            case = bench_case(args, max_len, jagged, rng)
            cases.append(case)
            summary = {name: r["fwd_bwd"]["median_s"] if "fwd_bwd" in r else
                       r.get("error", r.get("skipped")) for name, r in case["impls"].items()}
            print(f"L={max_len:6d} {case['layout']:6s} T={case['tokens']} fwd+bwd s: {summary} "
                  f"speedup_vs_xla={case['speedup_vs_xla']} "
                  f"vs_triton_reference={case.get('vs_triton_reference')}", flush=True)
            write_result(out, args, lengths, cases, complete=False)
    write_result(out, args, lengths, cases, complete=True)
    print(f"wrote {out}")


def write_result(out: pathlib.Path, args: argparse.Namespace, lengths: list[int], cases: list[dict],
                 complete: bool) -> None:
    """Write the JSON atomically (after every case, so a cut-off run keeps what it measured)."""
    result = dict(
        benchmark="hstu_attention",
        command=command_line("benchmarks.hstu_attention"),
        provenance=provenance(),
        config=dict(heads=args.heads, dim=args.dim, dtype=args.dtype, tokens=args.tokens,
                    reps=args.reps, lengths=lengths, softmax_impl=args.softmax_impl,
                    pallas_block=args.pallas_block,
                    softmax_max_len=args.softmax_max_len, jagged_lengths="lognormal(median L/8, "
                    "sigma 1) clipped to [1, L]", bias="position + time tables",
                    flops="useful: 4*H*D*causal pairs per fwd, x3 for fwd+bwd",
                    triton_reference_lengths=args.triton_reference_lengths),
        pallas=("timed (compiled Triton kernels)" if args.on_gpu else
                "interpret mode (smoke test, timings meaningless)" if args.pallas else
                "not timed: no GPU; on CPU Pallas runs only in interpret mode, whose speed is "
                "meaningless. Correctness is covered by tests/kernels (interpret mode)."),
        speedup_vs_xla={str(c["max_len"]) + "_" + c["layout"]: c["speedup_vs_xla"] for c in cases},
        triton_reference=dict(
            timed=args.triton_ref is not None, reason=args.triton_ref_reason,
            provenance=args.triton_ref_provenance,
            compared_with="pallas_no_bias: both without bias tables (the reference has none), same q, "
                          "k, v and offsets, alpha 1, N = max_len, grads of q, k, v; 'pallas' adds "
                          "both tables and their gradients; its first_call_s includes its autotuning"),
        vs_triton_reference={str(c["max_len"]) + "_" + c["layout"]: c.get("vs_triton_reference")
                             for c in cases},
        complete=complete,
        cases=cases,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.rename(out)


if __name__ == "__main__":
    host_memory.restart_with_huge_pages()
    main()
