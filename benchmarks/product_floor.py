"""A step's matrix products alone: the floor under its time on this machine (issue 17).

`step_dots(fn, *args)` traces `fn` (a whole train step: forward, backward and update) and lists every
dot_general it runs, with its operand shapes, dtypes and dimension numbers; `floor_seconds(dots)` times all of
them, on random operands of those shapes, in one jitted call that does nothing else. XLA runs each product as
the library GEMM it would run inside the step, so the step cannot be faster than that call on the same
machine: peer step time / floor is the highest speed-up over the peer that any implementation of the same
products could show here. benchmarks.peers records it beside each measured ratio, so that a missed target
says whether it is out of reach or only not reached.

Loops: a scan's body counts `length` times. A while loop's trip count is not in the trace:
`step_dots_counted` runs the step once on real inputs, its while loops (those with products, outside other
loops) each carrying a counter, and counts their products by those trips (the HSTU step's chunked scoring
and attention tiles loop a data-dependent number of times); `step_dots` raises UnknownTripCount for them.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax._src.interpreters import partial_eval as pe  # dce_jaxpr: no public API for it (jax 0.10)
from jax.extend import core as jcore

# Operands of all the timed products together, at most (random arrays held at once).
MAX_OPERAND_BYTES = 2 << 30


class UnknownTripCount(ValueError):
    """A product inside a loop whose trip count the trace does not fix (while, cond)."""


@dataclasses.dataclass(frozen=True)
class Dot:
    """One dot_general of a traced step: operand shapes and dtypes, lax dimension numbers, the preferred
    element type, and how many times the step runs it (count: a scan's length, else 1)."""

    lhs_shape: tuple[int, ...]
    rhs_shape: tuple[int, ...]
    lhs_dtype: str
    rhs_dtype: str
    dimension_numbers: tuple
    preferred_element_type: Any
    count: int = 1

    @property
    def flops(self) -> float:
        """2 x (output elements) x (contracted length) x count."""
        (lc, rc), (lb, rb) = self.dimension_numbers
        free_l = [s for i, s in enumerate(self.lhs_shape) if i not in lc and i not in lb]
        free_r = [s for i, s in enumerate(self.rhs_shape) if i not in rc and i not in rb]
        out = math.prod(free_l) * math.prod(free_r) * math.prod(self.lhs_shape[i] for i in lb)
        return 2.0 * out * math.prod(self.lhs_shape[i] for i in lc) * self.count

    @property
    def operand_bytes(self) -> int:
        return (math.prod(self.lhs_shape) * np.dtype(self.lhs_dtype).itemsize
                + math.prod(self.rhs_shape) * np.dtype(self.rhs_dtype).itemsize)


def _sub_jaxprs(eqn: Any) -> Iterator[jcore.Jaxpr]:
    for value in eqn.params.values():
        for v in value if isinstance(value, tuple | list) else (value,):
            if isinstance(v, jcore.ClosedJaxpr):
                yield v.jaxpr
            elif isinstance(v, jcore.Jaxpr):
                yield v


def _has_dot(jaxpr: jcore.Jaxpr) -> bool:
    return any(e.primitive.name == "dot_general" or any(_has_dot(j) for j in _sub_jaxprs(e)) for e in jaxpr.eqns)


def _loop_with_products(eqn: Any) -> bool:
    """A while or cond whose body holds a product: its trip count is not in the trace."""
    return eqn.primitive.name in ("while", "cond") and any(_has_dot(j) for j in _sub_jaxprs(eqn))


def _walk(jaxpr: jcore.Jaxpr, count: int, out: list[Dot], trips: dict[int, int]) -> None:
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            lhs, rhs = (v.aval for v in eqn.invars)
            out.append(Dot(tuple(lhs.shape), tuple(rhs.shape), str(lhs.dtype), str(rhs.dtype),
                           eqn.params["dimension_numbers"], eqn.params.get("preferred_element_type"), count))
            continue
        subs = list(_sub_jaxprs(eqn))
        inner = count
        if name == "scan":
            inner = count * int(eqn.params["length"])
        elif _loop_with_products(eqn):
            if id(eqn) not in trips:
                raise UnknownTripCount(f"a product inside a {name}: its trip count is not in the trace")
            inner = count * trips[id(eqn)]
        for sub in subs:
            _walk(sub, inner, out, trips)


def _traced(fn: Callable, *args: Any) -> jcore.ClosedJaxpr:
    """fn's jaxpr after dead-code elimination: a product whose result no output needs (a derivative rule's
    cotangent of an input that is not differentiated) is not run by XLA either."""
    closed = jax.make_jaxpr(fn)(*args)
    jaxpr, _ = pe.dce_jaxpr(closed.jaxpr, [True] * len(closed.jaxpr.outvars), instantiate=True)
    return jcore.ClosedJaxpr(jaxpr, closed.consts)


def step_dots(fn: Callable, *args: Any) -> list[Dot]:
    """Every dot_general that fn(*args) runs (nested jits, custom derivative rules and scans included; a
    product in a while loop raises UnknownTripCount, see step_dots_counted), dead code left out."""
    dots: list[Dot] = []
    _walk(_traced(fn, *args).jaxpr, 1, dots, {})
    return dots


def _inline_jaxpr(eqn: Any) -> jcore.ClosedJaxpr | None:
    """The jaxpr of a call-like eqn (jit, custom_jvp/vjp call) that maps its operands to its results."""
    for key in ("jaxpr", "call_jaxpr"):
        sub = eqn.params.get(key)
        if isinstance(sub, jcore.ClosedJaxpr) and len(sub.jaxpr.invars) == len(eqn.invars):
            return sub
    return None


def _counted(eqn: Any) -> bool:
    """A while loop holding products: step_dots_counted gives it a trip counter."""
    return eqn.primitive.name == "while" and _loop_with_products(eqn)


def _has_counted_loop(jaxpr: jcore.Jaxpr) -> bool:
    return any(_counted(e) or ((sub := _inline_jaxpr(e)) is not None and _has_counted_loop(sub.jaxpr))
               for e in jaxpr.eqns)


def _eval_counting(jaxpr: jcore.Jaxpr, consts: Sequence[Any], args: Sequence[Any], counts: dict) -> list:
    """Evaluate `jaxpr` (under a jit trace), each while loop that holds products running with a trip counter
    (counts[id(eqn)]); calls that hold such loops are evaluated inline, everything else bound as it is."""
    env: dict = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        vals = [read(v) for v in eqn.invars]
        inline = _inline_jaxpr(eqn)
        if _counted(eqn):
            outs = _counted_while(eqn, vals, counts)
        elif inline is not None and _has_counted_loop(inline.jaxpr):
            outs = _eval_counting(inline.jaxpr, inline.consts, vals, counts)
        else:
            outs = eqn.primitive.bind(*vals, **eqn.params)
            outs = outs if eqn.primitive.multiple_results else [outs]
        env.update((v, x) for v, x in zip(eqn.outvars, outs, strict=True) if not isinstance(v, jcore.DropVar))
    return [read(v) for v in jaxpr.outvars]


def _counted_while(eqn: Any, vals: list, counts: dict) -> list:
    p = eqn.params
    nc, nb = p["cond_nconsts"], p["body_nconsts"]
    cond_consts, body_consts, init = vals[:nc], vals[nc:nc + nb], vals[nc + nb:]
    cj, bj = p["cond_jaxpr"], p["body_jaxpr"]

    # Loops nested in this one run uncounted (their products then have no count: UnknownTripCount).
    def cond(c):
        return _eval_counting(cj.jaxpr, cj.consts, [*cond_consts, *c[1]], {})[0]

    def body(c):
        return c[0] + 1, _eval_counting(bj.jaxpr, bj.consts, [*body_consts, *c[1]], {})

    n, outs = jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), list(init)))
    counts[id(eqn)] = n
    return outs


def step_dots_counted(fn: Callable, *args: Any) -> list[Dot]:
    """step_dots with every while loop's trip count measured: fn's traced step runs once, jitted, on `args`
    (real values: the counts depend on them), each while loop that holds products carrying a counter. Loops
    nested in other loops keep raising UnknownTripCount."""
    closed = _traced(fn, *args)

    def counted(*flat) -> dict:
        counts: dict = {}
        _eval_counting(closed.jaxpr, closed.consts, flat, counts)
        return counts

    trips = {k: int(v) for k, v in jax.jit(counted)(*jax.tree.leaves(args)).items()}
    dots: list[Dot] = []
    _walk(closed.jaxpr, 1, dots, trips)
    return dots


def _repeated(lhs: jax.Array, rhs: jax.Array, d: Dot) -> jax.Array:
    """d's product d.count times in a loop; each trip writes its index into one operand element, so that no
    trip is the previous one's (XLA would hoist a loop-invariant product out of the loop)."""
    def trip(i, carry):
        a, _ = carry
        a = a.at[(0,) * a.ndim].set(i.astype(a.dtype))
        return a, jax.lax.dot_general(a, rhs, d.dimension_numbers, preferred_element_type=d.preferred_element_type)

    first = jax.lax.dot_general(lhs, rhs, d.dimension_numbers, preferred_element_type=d.preferred_element_type)
    return jax.lax.fori_loop(1, d.count, trip, (lhs, first))[1]


def _products(dots: Sequence[Dot]) -> Callable:
    def run(operands):
        return [_repeated(a, b, d) for (a, b), d in zip(operands, dots, strict=True)]

    return run


def floor_seconds(dots: Sequence[Dot], reps: int = 10, seed: int = 0) -> dict[str, Any]:
    """Time the products of `dots` alone: one jitted call computing each of them (count times, in a loop of
    trips that differ, see _repeated) and returning their results. Returns {median_s, min_s, dot_gflop,
    dots}; ValueError when the operands exceed MAX_OPERAND_BYTES."""
    total = sum(d.operand_bytes for d in dots)
    if total > MAX_OPERAND_BYTES:
        raise ValueError(f"the products' operands take {total / 2**30:.1f} GiB (> {MAX_OPERAND_BYTES / 2**30:.0f})")
    key = jax.random.key(seed)
    operands = []
    for i, d in enumerate(dots):
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        operands.append((jax.random.normal(k1, d.lhs_shape).astype(d.lhs_dtype),
                         jax.random.normal(k2, d.rhs_shape).astype(d.rhs_dtype)))
    call = jax.jit(_products(dots))
    jax.block_until_ready(call(operands))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(call(operands))
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times),
            "dot_gflop": sum(d.flops for d in dots) / 1e9, "dots": sum(d.count for d in dots)}


def step_floor(fn: Callable, *args: Any, reps: int = 10, count_loops: bool = False) -> dict[str, Any]:
    """floor_seconds of step_dots(fn, *args) (count_loops: step_dots_counted, which needs real `args`), or
    {"skipped": why} when the trace cannot give them."""
    try:
        dots = step_dots_counted(fn, *args) if count_loops else step_dots(fn, *args)
        return floor_seconds(dots, reps)
    except (UnknownTripCount, ValueError) as e:
        return {"skipped": str(e)}
