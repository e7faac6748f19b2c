"""Parity of the HSTU attention paths (XLA, Pallas) with the dense reference.

The Pallas kernels run in interpret mode on CPU and compiled (Triton) on a GPU, where the f32
cases need JAX_DEFAULT_MATMUL_PRECISION=highest (TF32 matmuls miss the f32 tolerances, in the
kernel and in the reference alike): scripts/gpu_checks.sh sets it.

Tolerances (max |a - b| / max(1, max |b|)):
  f32 inputs:  values 1e-5, gradients 1e-4 (XLA path) / 1e-4, 5e-4 (Pallas, interpret mode).
  bf16 inputs: values and gradients 2e-2 against the reference run on the same bf16 inputs
               upcast to f32 (the kernels feed bf16 to the matmuls, accumulate in f32).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling_rec.errors import KernelArgumentError
from scaling_rec.kernels import hstu_attention, hstu_attention_reference, resolve_impl
from scaling_rec.kernels.hstu_pallas import KernelConfig, hstu_attention_pallas, prepare_side
from scaling_rec.kernels.hstu_reference import positions_from_offsets, segment_ids_from_offsets
from scaling_rec.kernels.hstu_xla import hstu_attention_xla, tile_schedule

NUM_BUCKETS = 16
INTERPRET = jax.default_backend() != "gpu"  # compiled Triton kernels on a GPU


@dataclasses.dataclass
class Case:
    """A random packed batch: q, k, v [T, H, D], offsets [B+1] and the bias inputs."""

    q: jax.Array
    k: jax.Array
    v: jax.Array
    offsets: jax.Array
    max_len: int
    pos_bias: jax.Array
    time_bias: jax.Array
    timestamps: jax.Array
    query_timestamps: jax.Array


def make_case(
    lengths: list[int], num_tokens: int, max_len: int, heads: int = 2, dim: int = 16,
    dtype: jnp.dtype = jnp.float32, seed: int = 0,
) -> Case:
    """Sequences of the given lengths packed into num_tokens (the rest is padding)."""
    assert sum(lengths) <= num_tokens and max(lengths) <= max_len
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    qkv = [jnp.asarray(rng.normal(size=(num_tokens, heads, dim)), dtype) for _ in range(3)]
    ts = np.zeros(num_tokens, np.int64)
    for s, e in zip(offsets[:-1], offsets[1:], strict=True):
        ts[s:e] = np.sort(rng.integers(0, 10**7, size=e - s))
    qts = ts + rng.integers(0, 10**5, size=num_tokens)
    return Case(
        *qkv,
        offsets=jnp.asarray(offsets),
        max_len=max_len,
        pos_bias=jnp.asarray(rng.normal(size=(2 * max_len - 1,)), jnp.float32),
        time_bias=jnp.asarray(rng.normal(size=(NUM_BUCKETS + 1,)), jnp.float32),
        timestamps=jnp.asarray(ts, jnp.int32),
        query_timestamps=jnp.asarray(qts, jnp.int32),
    )


def run(fn, c: Case, bias: bool = True, **kw) -> jax.Array:
    """Call an attention function on a case, with or without the bias tables."""
    extra = dict(pos_bias=c.pos_bias, time_bias=c.time_bias, timestamps=c.timestamps,
                 query_timestamps=c.query_timestamps) if bias else {}
    return fn(c.q, c.k, c.v, c.offsets, max_len=c.max_len, **extra, **kw)


def out_and_grads(fn, c: Case, bias: bool = True, **kw) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """out and the gradients of sum(out * w) (w fixed random) w.r.t. q, k, v and both tables.

    One jitted forward + backward (one compile): the tables' gradients are returned with bias.
    """
    w = jnp.asarray(np.random.default_rng(7).normal(size=c.q.shape), c.q.dtype)

    @jax.jit
    def f(q, k, v, pb, tb):
        cc = dataclasses.replace(c, q=q, k=k, v=v, pos_bias=pb, time_bias=tb)
        out, vjp = jax.vjp(lambda *a: run(fn, dataclasses.replace(cc, q=a[0], k=a[1], v=a[2],
                                                                 pos_bias=a[3], time_bias=a[4]),
                                          bias, **kw), q, k, v, pb, tb)
        return out, vjp(w)

    out, g = f(c.q, c.k, c.v, c.pos_bias, c.time_bias)
    return out, (g if bias else g[:3])


def assert_close(a: jax.Array, b: jax.Array, tol: float, what: str = "") -> None:
    """max |a - b| <= tol * max(1, max |b|), both in float32."""
    a32, b32 = np.asarray(a, np.float32), np.asarray(b, np.float32)
    err, scale = float(np.abs(a32 - b32).max()), max(1.0, float(np.abs(b32).max()))
    assert err <= tol * scale, f"{what}: max abs err {err:.3g} > {tol} * {scale:.3g}"


def upcast(c: Case) -> Case:
    """The same case with q, k, v in float32 (the bf16 ground truth)."""
    f = lambda x: x.astype(jnp.float32)
    return dataclasses.replace(c, q=f(c.q), k=f(c.k), v=f(c.v))


def check_parity(fn, c: Case, bias: bool, tol: float, tol_tables: float, what: str, **kw) -> None:
    """fn's output and gradients match the reference on c (bf16 cases: reference on f32 copies)."""
    ref_case = upcast(c) if c.q.dtype == jnp.bfloat16 else c
    out, g = out_and_grads(fn, c, bias, **kw)
    ref_kw = {key: kw[key] for key in ("positions",) if key in kw}  # the inputs fn shares with the reference
    out_ref, g_ref = out_and_grads(hstu_attention_reference, ref_case, bias, **ref_kw)
    assert out.shape == c.q.shape and out.dtype == c.q.dtype
    assert_close(out, out_ref, min(tol, 1e-5) if c.q.dtype == jnp.float32 else tol, f"{what} out")
    for gi, gi_ref, n in zip(g, g_ref, ["q", "k", "v", "pos_bias", "time_bias"], strict=False):
        assert gi.dtype == (c.q.dtype if n in "qkv" else jnp.float32), (n, gi.dtype)
        assert_close(gi, gi_ref, tol if n in "qkv" else tol_tables, f"{what} d{n}")


# Jagged layouts: lengths including 1, empty sequences, lengths not multiples of any block,
# padding tokens after offsets[-1]. (name: lengths, T, max_len, bias)
JAGGED = {
    "mixed": ([1, 37, 0, 64, 5, 0, 20], 140, 64, True),
    "one_seq_full": ([48], 48, 48, True),
    "empties_and_ones_nobias": ([0, 1, 1, 0, 30, 1], 40, 32, False),
}


@pytest.mark.parametrize(("name", "block"), [("mixed", None), ("mixed", 16), ("one_seq_full", None),
                                           ("empties_and_ones_nobias", 16)])
def test_xla_matches_reference(name: str, block: int | None) -> None:
    lengths, num_tokens, max_len, bias = JAGGED[name]
    c = make_case(lengths, num_tokens, max_len)
    check_parity(hstu_attention_xla, c, bias, 1e-4, 1e-4, name, block=block)


def test_xla_explicit_positions_take_the_per_pair_bias() -> None:
    """Positions other than the within-sequence index (here reversed) must not be read as token distances: the
    per-pair gather runs and matches the reference; with the default positions both paths agree."""
    lengths, num_tokens, max_len, _ = JAGGED["mixed"]
    c = make_case(lengths, num_tokens, max_len, seed=3)
    seg = segment_ids_from_offsets(c.offsets, num_tokens)
    default = positions_from_offsets(c.offsets, seg)
    rev = jnp.where(seg < len(lengths), jnp.asarray(lengths + [0])[seg] - 1 - default, 0)
    for name, pos in (("reversed", rev), ("explicit default", default)):
        check_parity(hstu_attention_xla, c, True, 1e-4, 1e-4, name, positions=pos)
    out_default = run(hstu_attention_xla, c, block=16)
    assert_close(run(hstu_attention_xla, c, block=16, positions=default), out_default, 1e-6, "toeplitz vs gather")
    assert not np.allclose(run(hstu_attention_xla, c, block=16, positions=rev), out_default)


def test_xla_runs_only_live_tiles() -> None:
    """Blocks need [sequence start or window start, diagonal]; only tiles of needed chunks run."""
    block, max_len, num_tokens = 16, 64, 200
    lengths = [5, 40, 0, 64, 20]  # 129 tokens -> blocks 9..13 are pure padding
    offsets = jnp.asarray(np.concatenate([[0], np.cumsum(lengths)]), jnp.int32)
    seg = segment_ids_from_offsets(offsets, num_tokens)
    sched = tile_schedule(offsets, seg, max_len=max_len, block=block, group=2, num_blocks=14)
    assert np.asarray(sched.need_N).tolist() == [1, 2, 3, 2, 3, 4, 5, 2, 3, 0, 0, 0, 0, 0]
    # groups of the blocks sorted by need: (5,4) (3,3) (3,2) (2,2) (1,0) (0,0) (0,0); a group runs
    # distances 0 .. need of its first block - 1: 5 + 3 + 3 + 2 + 1 = 14 of the 7 * 5 tiles
    assert int(sched.num_tiles) == 14
    dist = np.asarray(sched.dist_S)[:14].tolist()
    assert dist == [0] * 5 + [1] * 4 + [2] * 3 + [3, 4]
    assert np.asarray(sched.grp_S)[:14].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 2, 0, 0]
    c = make_case(lengths, num_tokens, max_len, seed=2)
    for group in (2, 3):  # 3: the last group is part padding blocks
        check_parity(hstu_attention_xla, c, True, 1e-4, 1e-4, f"xla group {group}", block=block, group=group)


def test_padding_tokens_are_zero_and_jit_matches_eager() -> None:
    c = make_case([10, 3], 24, 16)
    f = lambda q, k, v, o: hstu_attention(q, k, v, o, max_len=16, impl="xla")
    eager, jitted = f(c.q, c.k, c.v, c.offsets), jax.jit(f)(c.q, c.k, c.v, c.offsets)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(eager[13:]).max()) == 0.0


def test_causality_future_tokens_do_not_change_past() -> None:
    c = make_case([20, 12], 32, 32)
    out = run(hstu_attention_xla, c)
    k2 = c.k.at[10:20].add(1.0)
    out2 = run(hstu_attention_xla, dataclasses.replace(c, k=k2))
    np.testing.assert_array_equal(np.asarray(out[:10]), np.asarray(out2[:10]))
    np.testing.assert_array_equal(np.asarray(out[20:]), np.asarray(out2[20:]))
    assert float(jnp.abs(out[10:20] - out2[10:20]).max()) > 0


def test_xla_bf16_matches_reference() -> None:
    c = make_case([1, 37, 0, 50], 100, 64, dtype=jnp.bfloat16, seed=3)
    check_parity(hstu_attention_xla, c, True, 2e-2, 2e-2, "xla bf16")


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_xla_tile_products_take_the_inputs_dtype(dtype: jnp.dtype) -> None:
    """With bfloat16 q, k, v the tiles' two forward and five backward products are dots of bfloat16 operands
    (XLA:CPU's compiled forward + backward); with float32 inputs none is."""
    if jax.default_backend() != "cpu":
        pytest.skip("the HLO checked here is XLA:CPU's")
    import re

    c = make_case([1, 37, 0, 50], 100, 64, dtype=dtype, seed=3)

    def f(q, k, v):
        out, vjp = jax.vjp(lambda *a: run(hstu_attention_xla, dataclasses.replace(c, q=a[0], k=a[1], v=a[2])),
                           q, k, v)
        return out, vjp(out)

    hlo = jax.jit(f).lower(c.q, c.k, c.v).compile().as_text()
    computations = re.findall(r"^%.*? \{\n.*?^\}", hlo, re.M | re.S)  # XLA:CPU wraps each dot in its own
    bf16_dots = [x for x in computations if " dot(" in x and x.splitlines()[0].count("bf16[") == 2]
    assert len(bf16_dots) == (7 if dtype == jnp.bfloat16 else 0), len(bf16_dots)


def test_xla_long_sequence_max_len_2048() -> None:
    c = make_case([2048, 300, 1, 0], 2400, 2048, heads=1, dim=8, seed=5)
    check_parity(hstu_attention_xla, c, True, 1e-4, 1e-4, "xla long")


def test_dispatch_picks_xla_on_cpu_and_rejects_bad_args() -> None:
    assert resolve_impl("auto") == ("pallas" if jax.default_backend() == "gpu" else "xla")
    c = make_case([5], 8, 8)
    with pytest.raises(KernelArgumentError, match="impl"):
        hstu_attention(c.q, c.k, c.v, c.offsets, max_len=8, impl="cuda")
    with pytest.raises(KernelArgumentError, match="pos_bias"):
        hstu_attention(c.q, c.k, c.v, c.offsets, max_len=8, pos_bias=jnp.zeros(3))
    with pytest.raises(KernelArgumentError, match="timestamps"):
        hstu_attention(c.q, c.k, c.v, c.offsets, max_len=8, time_bias=jnp.zeros(3))
    if jax.default_backend() != "gpu":
        with pytest.raises(KernelArgumentError, match="interpret=True"):
            hstu_attention(c.q, c.k, c.v, c.offsets, max_len=8, impl="pallas")


def _temp_bytes(num_tokens: int, max_len: int, with_grad: bool) -> int:
    """Compiled temp memory of the XLA path (H=2, D=32, f32, position bias)."""
    x = jax.ShapeDtypeStruct((num_tokens, 2, 32), jnp.float32)
    offs = jax.ShapeDtypeStruct((num_tokens // max_len + 1,), jnp.int32)
    pb = jax.ShapeDtypeStruct((2 * max_len - 1,), jnp.float32)
    f = lambda q, k, v, o, p: jnp.sum(
        hstu_attention(q, k, v, o, max_len=max_len, impl="xla", pos_bias=p))
    if with_grad:
        f = jax.grad(f, argnums=(0, 1, 2, 4))
    compiled = jax.jit(f).lower(x, x, x, offs, pb).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


@pytest.mark.parametrize(("with_grad", "max_len"), [(False, 1024), (True, None)])
def test_xla_temp_memory_is_linear_in_tokens(with_grad: bool, max_len: int | None) -> None:
    """Packed sequences of max_len 1024 (forward), and one sequence of length T (with grads)."""
    sizes = (4096, 8192, 16384)
    mem = {t: _temp_bytes(t, max_len or t, with_grad) for t in sizes}
    print(f"XLA temp MiB (grad={with_grad}, max_len={max_len or 'T'}):",
          {t: round(m / 2**20, 1) for t, m in mem.items()})
    assert mem[16384] / mem[4096] < 6, mem


# ---- Pallas kernels (interpret mode on CPU) ----------------------------------------------------

PALLAS_CASES = {
    # name: (lengths, T, max_len, block, bias)
    "mixed_bias_b16": ([1, 37, 0, 64, 5, 0, 20], 140, 64, 16, True),
    "empties_ones_nobias_b16": ([0, 1, 1, 0, 30, 1], 40, 32, 16, False),
    "mixed_bias_b32": ([3, 0, 50, 1, 17], 80, 64, 32, True),
}


@pytest.mark.parametrize("name", sorted(PALLAS_CASES))
def test_pallas_matches_reference(name: str) -> None:
    lengths, num_tokens, max_len, block, bias = PALLAS_CASES[name]
    c = make_case(lengths, num_tokens, max_len, seed=11)
    check_parity(hstu_attention_pallas, c, bias, 1e-4, 5e-4, name, interpret=INTERPRET, block=block)


def test_pallas_via_dispatch_bf16() -> None:
    c = make_case([1, 37, 0, 50], 100, 64, dtype=jnp.bfloat16, seed=3)
    fn = functools.partial(hstu_attention, impl="pallas", interpret=INTERPRET)
    check_parity(fn, c, True, 2e-2, 2e-2, "pallas bf16")


def test_pallas_long_sequence_max_len_2048() -> None:
    c = make_case([2048, 300, 1, 0], 2400, 2048, heads=1, dim=8, seed=5)
    check_parity(hstu_attention_pallas, c, True, 1e-4, 5e-4, "pallas long", interpret=INTERPRET,
                 block=64)


def test_pallas_visits_only_needed_blocks() -> None:
    """Query blocks visit [seq start or window start, diagonal]; padding blocks visit nothing."""
    block, max_len = 16, 64
    lengths = [5, 40, 0, 64, 20]  # 129 tokens; T = 200 -> blocks 9..12 are pure padding
    offsets = jnp.asarray(np.concatenate([[0], np.cumsum(lengths)]), jnp.int32)
    cfg = KernelConfig(block=block, max_len=max_len, num_seq=len(lengths), num_tokens=200,
                       head_dim=16, use_pos=False, use_time=False, divisor=0.301, interpret=True)
    side = prepare_side(offsets, None, None, None, cfg)
    kv_lo, kv_hi = np.asarray(side.kv_lo), np.asarray(side.kv_hi)
    q_lo, q_hi = np.asarray(side.q_lo), np.asarray(side.q_hi)
    assert kv_lo.tolist()[:9] == [0, 0, 0, 2, 2, 2, 2, 6, 6]
    assert (kv_hi[:9] == np.arange(1, 10)).all() and (kv_hi[9:] == kv_lo[9:]).all()
    assert q_lo.tolist()[:9] == list(range(9)) and q_hi.tolist()[:9] == [3, 3, 7, 7, 7, 7, 9, 9, 9]
    assert (q_hi[9:] == q_lo[9:]).all()
    visited = int((kv_hi - kv_lo).sum())
    causal = 9 * 10 // 2
    print(f"key blocks visited {visited} of {causal} causal (flat) tiles")
    assert visited < causal


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_pallas_lowers_to_triton_for_gpu(dtype: jnp.dtype) -> None:
    """Cross-lower forward + backward for CUDA: every kernel op has a Triton lowering rule.

    This builds the Triton IR (not PTX): it catches unsupported ops or non power-of-two tiles
    without a GPU, but it is no substitute for running the kernels on one.
    """
    num_tokens, max_len = 300, 128
    x = jax.ShapeDtypeStruct((num_tokens, 2, 40), dtype)  # D = 40 is padded to 64 inside
    ints = jax.ShapeDtypeStruct((num_tokens,), jnp.int32)
    offs = jax.ShapeDtypeStruct((6,), jnp.int32)
    pb = jax.ShapeDtypeStruct((2 * max_len - 1,), jnp.float32)
    tb = jax.ShapeDtypeStruct((NUM_BUCKETS + 1,), jnp.float32)

    def loss(q, k, v, o, p, t, ts):
        out = hstu_attention_pallas(q, k, v, o, max_len=max_len, pos_bias=p, time_bias=t,
                                    timestamps=ts, query_timestamps=ts)
        return jnp.sum(out.astype(jnp.float32))

    grad = jax.grad(loss, argnums=(0, 1, 2, 4, 5))
    text = jax.jit(grad).trace(x, x, x, offs, pb, tb, ints).lower(
        lowering_platforms=("cuda",)).as_text()
    assert text.count("xla.gpu.triton") == 3  # forward, dq (+dS), dk/dv
