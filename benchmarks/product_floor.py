"""A step's matrix products alone: the floor under its time on this machine (issue 17).

`step_dots(fn, *args)` traces `fn` (a whole train step: forward, backward and update) and lists every
dot_general it runs, with its operand shapes, dtypes and dimension numbers; `floor_seconds(dots)` times all of
them, on random operands of those shapes, in one jitted call that does nothing else. XLA runs each product as
the library GEMM it would run inside the step, so the step cannot be faster than that call on the same
machine: peer step time / floor is the highest speed-up over the peer that any implementation of the same
products could show here. benchmarks.peers records it beside each measured ratio, so that a missed target
says whether it is out of reach or only not reached.

Loops: a scan's body counts `length` times; a while loop's trip count is not in the trace, so a step with
products inside one raises UnknownTripCount (the chunked losses and the attention tiles use such loops).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
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
        return self.count * (math.prod(self.lhs_shape) * np.dtype(self.lhs_dtype).itemsize
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


def _walk(jaxpr: jcore.Jaxpr, count: int, out: list[Dot]) -> None:
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            lhs, rhs = (v.aval for v in eqn.invars)
            out.append(Dot(tuple(lhs.shape), tuple(rhs.shape), str(lhs.dtype), str(rhs.dtype),
                           eqn.params["dimension_numbers"], eqn.params.get("preferred_element_type"), count))
            continue
        subs = list(_sub_jaxprs(eqn))
        if name in ("while", "cond") and any(_has_dot(j) for j in subs):
            raise UnknownTripCount(f"a product inside a {name}: its trip count is not in the trace")
        inner = count * int(eqn.params["length"]) if name == "scan" else count
        for sub in subs:
            _walk(sub, inner, out)


def step_dots(fn: Callable, *args: Any) -> list[Dot]:
    """Every dot_general that fn(*args) runs (nested jits, custom derivative rules and scans included), after
    dead-code elimination: a product whose result no output needs (a derivative rule's cotangent of an input
    that is not differentiated) is not run by XLA either."""
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    jaxpr, _ = pe.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars), instantiate=True)
    dots: list[Dot] = []
    _walk(jaxpr, 1, dots)
    return dots


def _products(dots: Sequence[Dot]) -> Callable:
    def run(operands):
        it = iter(operands)
        return [jax.lax.dot_general(*next(it), d.dimension_numbers, preferred_element_type=d.preferred_element_type)
                for d in dots for _ in range(d.count)]

    return run


def floor_seconds(dots: Sequence[Dot], reps: int = 10, seed: int = 0) -> dict[str, Any]:
    """Time the products of `dots` alone: one jitted call computing each of them (count times, each time on
    its own random operands, so that none is computed once for several) and returning every result.
    Returns {median_s, min_s, dot_gflop, dots}; ValueError when their operands exceed MAX_OPERAND_BYTES."""
    total = sum(d.operand_bytes for d in dots)
    if total > MAX_OPERAND_BYTES:
        raise ValueError(f"the products' operands take {total / 2**30:.1f} GiB (> {MAX_OPERAND_BYTES / 2**30:.0f})")
    key = jax.random.key(seed)
    operands = []
    for i, d in enumerate(dots):
        for j in range(d.count):
            k1, k2 = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, i), j))
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


def step_floor(fn: Callable, *args: Any, reps: int = 10) -> dict[str, Any]:
    """floor_seconds of step_dots(fn, *args), or {"skipped": why} when the trace cannot give them."""
    try:
        return floor_seconds(step_dots(fn, *args), reps)
    except (UnknownTripCount, ValueError) as e:
        return {"skipped": str(e)}
