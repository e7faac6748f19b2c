"""benchmarks/product_floor.py: the products a traced step runs, counted against hand-written lists, and
their timing call; benchmarks.peers' ceiling from it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from benchmarks import peers, product_floor
from benchmarks.product_floor import Dot, UnknownTripCount, floor_seconds, step_dots, step_dots_counted


def _mlp_loss(params, x):
    h = jax.nn.relu(x @ params["w1"])
    return jnp.sum((h @ params["w2"]) ** 2)


def _params(d_in=6, width=5, d_out=3):
    k1, k2 = jax.random.split(jax.random.key(0))
    return {"w1": jax.random.normal(k1, (d_in, width)), "w2": jax.random.normal(k2, (width, d_out))}


def test_gradient_step_lists_forward_and_backward_products():
    params, x = _params(), jnp.ones((4, 6))
    dots = step_dots(jax.grad(_mlp_loss), params, x)
    # forward x w1, h w2; backward dW2 = h^T g, dh = g w2^T, dW1 = x^T dh (x is not differentiated).
    assert len(dots) == 5 and all(d.count == 1 for d in dots)
    assert sum(d.flops for d in dots) == 2 * (4 * 6 * 5 + 4 * 5 * 3) + 2 * (5 * 4 * 3 + 4 * 3 * 5 + 6 * 4 * 5)


def test_batched_product_flops():
    d = Dot((7, 4, 3), (7, 3, 5), "float32", "float32", (((2,), (1,)), ((0,), (0,))), None)
    assert d.flops == 2 * 7 * 4 * 5 * 3
    [traced] = step_dots(lambda a, b: jnp.einsum("bij,bjk->bik", a, b), jnp.ones((7, 4, 3)), jnp.ones((7, 3, 5)))
    assert (traced.lhs_shape, traced.rhs_shape, traced.dimension_numbers) == (d.lhs_shape, d.rhs_shape,
                                                                             d.dimension_numbers)
    assert traced.flops == d.flops


def test_scan_counts_its_length_and_nested_jit_and_custom_vjp_are_entered():
    @jax.custom_vjp
    def proj(x, w):
        return x @ w

    proj.defvjp(lambda x, w: (x @ w, (x, w)), lambda res, g: (g @ res[1].T, res[0].T @ g))

    def step(w, xs):
        def body(c, x):
            return c + jax.jit(proj)(x, w).sum(), None
        return jax.lax.scan(body, 0.0, xs)[0]

    w, xs = jnp.ones((3, 2)), jnp.ones((4, 5, 3))
    forward = step_dots(step, w, xs)
    assert [(d.lhs_shape, d.rhs_shape, d.count) for d in forward] == [((5, 3), (3, 2), 4)]
    backward = step_dots(jax.grad(step), w, xs)
    # only the rule's dW = x^T g in the reverse scan: its dx (xs is not differentiated) and the forward product
    # (the sum's cotangent does not depend on it) are dead code, which XLA would not run either
    assert [(d.lhs_shape, d.rhs_shape, d.count) for d in backward] == [((3, 5), (5, 2), 4)]


def test_product_in_a_while_loop_has_no_count():
    def f(x, w):
        return jax.lax.while_loop(lambda c: c[0] < x.sum(), lambda c: (c[0] + 1.0, c[1] @ w), (0.0, x))[1]

    with pytest.raises(UnknownTripCount, match="while"):
        step_dots(f, jnp.ones((2, 2)), jnp.ones((2, 2)))
    no_product = step_dots(lambda x: jax.lax.while_loop(lambda c: c < 3.0, lambda c: c + 1.0, x), 0.0)
    assert no_product == []
    assert product_floor.step_floor(f, jnp.ones((2, 2)), jnp.ones((2, 2)))["skipped"].startswith("a product inside")


def _loop(x, w, n):
    return jax.lax.fori_loop(0, n, lambda i, c: jnp.tanh(c @ w), x)


@jax.custom_vjp
def _looped(x, w, n):
    """A rule whose forward and backward loop n times (a data-dependent count) over one product each."""
    return _loop(x, w, n)


_looped.defvjp(lambda x, w, n: (_loop(x, w, n), (w, n)),
               lambda res, g: (jax.lax.fori_loop(0, res[1], lambda i, c: c @ res[0].T, g), jnp.zeros_like(res[0]),
                               None))


def _looped_loss(x, w, n):
    return jnp.sum(jax.jit(_looped)(x, w, n) ** 2)


@pytest.mark.parametrize("n", [2, 7])
def test_while_loops_are_counted_on_the_real_inputs(n):
    x, w = jnp.ones((4, 3)), jnp.eye(3) * 0.5
    grad = jax.jit(jax.grad(_looped_loss))
    with pytest.raises(UnknownTripCount):
        step_dots(grad, x, w, jnp.asarray(n))
    dots = step_dots_counted(grad, x, w, jnp.asarray(n))
    # forward loop (its output feeds the square) and backward loop, n products each, [4, 3] x [3, 3]
    assert sorted((d.lhs_shape, d.rhs_shape, d.count) for d in dots) == [((4, 3), (3, 3), n)] * 2
    assert sum(d.flops for d in dots) == 2 * n * 2 * 4 * 3 * 3


def test_floor_times_every_product_and_refuses_huge_operands(monkeypatch):
    dots = [Dot((64, 32), (32, 16), "float32", "float32", (((1,), (0,)), ((), ())), None, count=3),
            Dot((8, 16), (8, 16), "bfloat16", "bfloat16", (((0,), (0,)), ((), ())), jnp.float32)]
    r = floor_seconds(dots, reps=3)
    assert r["dots"] == 4 and r["dot_gflop"] == pytest.approx((3 * 2 * 64 * 16 * 32 + 2 * 16 * 16 * 8) / 1e9)
    assert 0 < r["min_s"] <= r["median_s"]
    monkeypatch.setattr(product_floor, "MAX_OPERAND_BYTES", 1000)
    with pytest.raises(ValueError, match="GiB"):
        floor_seconds(dots)


def test_peers_ceiling_at_the_product_floor():
    timing = {"peer": {"examples_per_s": 100.0},
              "ours": {"examples_per_s": 150.0, "useful_flops_per_s": 1e11, "useful_flops_per_step_mean": 1e10,
                       "examples_per_step_mean": 64.0}}
    rec = peers.case_record("fuxictr", "WuKong/frappe", timing, 4e11, {"product_floor": {"median_s": 0.4}})
    # a step of its products alone: 64 examples in 0.4 s = 160 ex/s against the peer's 100
    assert rec["ratio_at_product_floor"] == pytest.approx(1.6)
    # the useful FLOPs of a step (1e10) in 0.4 s against the 4e11 FLOP/s matmul rate
    assert rec["fraction_of_matmul_at_product_floor"] == pytest.approx(1e10 / 0.4 / 4e11)
    skipped = peers.case_record("fuxictr", "WuKong/frappe", timing, 4e11, {"product_floor": {"skipped": "why"}})
    assert "ratio_at_product_floor" not in skipped
