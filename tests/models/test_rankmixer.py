"""RankMixer: token mixing and per-token FFNs vs plain numpy, shapes, parameter and FLOP counts vs XLA,
the experiment file's presets and sweep, and a tiny synthetic train through the CTR loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments.rankmixer import frappe
from scaling_rec import ctr_config
from scaling_rec.data.ctr import synthetic_ctr
from scaling_rec.errors import ConfigError
from scaling_rec.flops import ctr_forward_flops, param_counts
from scaling_rec.models.ctr.rankmixer import per_token_dense, token_mixing
from scaling_rec.models.registry import build_ctr_model
from scaling_rec.sweep.spec import expand
from scaling_rec.train.ctr_loop import train_and_evaluate

VOCAB = (11, 7, 5, 9, 13)


def _config(num_tokens=4, token_dim=16, num_layers=2, ffn_mult=2, mlp_width=16, mlp_depth=1, embed_dim=8,
            **model):
    c = ctr_config.default_config()
    c.model.family = "rankmixer"
    c.model.num_tokens, c.model.token_dim, c.model.num_layers, c.model.ffn_mult = num_tokens, token_dim, num_layers, \
        ffn_mult
    c.model.mlp_width, c.model.mlp_depth, c.model.embed_dim = mlp_width, mlp_depth, embed_dim
    for k, v in model.items():
        c.model[k] = v
    ctr_config.validate(c)
    return c


def _inputs(b: int, num_dense: int):
    rng = np.random.default_rng(0)
    cat = jnp.asarray(np.stack([rng.integers(v, size=b) for v in VOCAB], 1), jnp.int32)
    return cat, (jnp.asarray(rng.normal(size=(b, num_dense)), jnp.float32) if num_dense else None)


def _numpy_token_mixing(x: np.ndarray, heads: int) -> np.ndarray:
    """Output token h = [x_1^h, ..., x_T^h], x_t^h the h-th of `heads` equal slices of token t (§3.3.1)."""
    b, t, d = x.shape
    w = d // heads
    return np.stack([np.stack([np.concatenate([x[i, j, h * w:(h + 1) * w] for j in range(t)])
                               for h in range(heads)]) for i in range(b)])


@pytest.mark.parametrize("t,d,h", [(4, 8, 4), (3, 12, 3), (4, 12, 2), (5, 10, 5)])
def test_token_mixing_matches_numpy(t, d, h):
    x = np.random.default_rng(t * d).normal(size=(2, t, d)).astype(np.float32)
    got = np.asarray(token_mixing(jnp.asarray(x), h))
    np.testing.assert_array_equal(got, _numpy_token_mixing(x, h))


def test_token_mixing_with_t_heads_is_a_block_transpose_and_its_own_inverse():
    """With H = T (the paper's setting) output token h, slice t is input token t, slice h; so mixing
    twice returns the input, and every input entry appears exactly once."""
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4, 8)), jnp.float32)
    mixed = token_mixing(x, 4)
    assert mixed.shape == x.shape
    np.testing.assert_array_equal(token_mixing(mixed, 4), x)
    np.testing.assert_array_equal(np.sort(np.asarray(mixed).ravel()), np.sort(np.asarray(x).ravel()))
    np.testing.assert_array_equal(mixed[:, 2, 6:8], x[:, 3, 4:6])


def test_per_token_dense_uses_each_tokens_own_weights():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    w = rng.normal(size=(3, 4, 5)).astype(np.float32)
    bias = rng.normal(size=(3, 5)).astype(np.float32)
    want = np.stack([np.stack([x[i, t] @ w[t] + bias[t] for t in range(3)]) for i in range(2)])
    np.testing.assert_allclose(per_token_dense(jnp.asarray(x), jnp.asarray(w), jnp.asarray(bias)), want,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_dense", [0, 3])
@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_shapes_finite_jit_and_eager_and_param_counts(num_dense, norm):
    c = _config(norm=norm)
    model = build_ctr_model(c.model, VOCAB, num_dense, nnx.Rngs(0))
    cat, num = _inputs(16, num_dense)
    graphdef, state = nnx.split(model)
    eager = model(cat, num)
    jitted = jax.jit(lambda s, a, n: nnx.merge(graphdef, s)(a, n))(state, cat, num)
    assert eager.shape == (16,) and bool(jnp.all(jnp.isfinite(eager)))
    np.testing.assert_allclose(eager, jitted, rtol=1e-5, atol=1e-5)
    assert model.tokens(cat, num).shape == (16, 4, 16)
    train = model(cat, num, train=True, dropout_key=jax.random.key(1))
    assert train.shape == (16,) and bool(jnp.all(jnp.isfinite(train)))
    # Parameters by hand: tokenizer T x ceil(E/T) x D + T x D; per block 2 LN (the last one scale-only
    # before batch norm) and the per-token FFN; output MLP D -> 16 -> 1 (no hidden bias under batch norm).
    t, d, k, e = 4, 16, 2, len(VOCAB) * 8 + num_dense
    chunk = -(-e // t)
    block = 2 * 2 * d + t * (d * k * d + k * d + k * d * d + d)
    head = d * 16 + (0 if norm == "batch" else 16) + 2 * 16 + 16 + 1
    want = t * chunk * d + t * d + 2 * block - (d if norm == "batch" else 0) + head
    counts = param_counts(model)
    assert counts.n_dense == want and counts.n_emb == sum(VOCAB) * 8


def test_token_dim_must_split_into_t_heads():
    c = _config()
    c.model.token_dim = 18
    with pytest.raises(ConfigError, match="token_dim.*multiple of.*num_tokens"):
        build_ctr_model(c.model, VOCAB, 0, nnx.Rngs(0))


@pytest.mark.parametrize("num_dense,overrides", [
    (0, {}), (3, {"num_tokens": 8, "num_layers": 3, "ffn_mult": 4}), (0, {"norm": "layer", "mlp_depth": 2}),
])
def test_forward_flops_match_xla(num_dense, overrides):
    """Analytic FLOPs (the tokenizer's, the per-token FFNs' and the output MLP's matmuls) vs XLA's count
    for the jitted eval forward, as tests/ctr/test_models.py does for the other CTR families: within 5%
    at realistic widths (XLA adds the layer norms, GELU, residuals, mean pool: O(T·k·D) against
    O(T·k·D²)); the analytic count never exceeds XLA's."""
    kw = {"num_tokens": 4, "token_dim": 128, "ffn_mult": 4, "mlp_width": 256, "mlp_depth": 1, **overrides}
    c = _config(**kw)
    model = build_ctr_model(c.model, VOCAB, num_dense, nnx.Rngs(0))
    b = 32
    cat, num = _inputs(b, num_dense)
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda s, a, n: nnx.merge(graphdef, s)(a, n))
    cost = fn.lower(state, cat, num).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    xla, ours = cost["flops"] / b, ctr_forward_flops(c.model, len(VOCAB), num_dense)
    assert ours <= xla * 1.001, f"analytic {ours:.0f} > XLA {xla:.0f} FLOPs/example"
    assert xla / ours - 1 < 0.05, f"XLA {xla:.0f} vs analytic {ours:.0f} FLOPs/example"


@pytest.mark.parametrize("preset", frappe.PRESETS)
def test_presets_validate(preset):
    ctr_config.validate(frappe.get_config(preset))


def test_sweep_expands_to_valid_ladder_points():
    specs = expand(frappe.get_config("sweep"), frappe.get_sweep("sweep"))
    assert len(specs) == frappe.SWEEP_RUNGS * len(frappe.SWEEP_EPOCHS)
    assert {s.size for s in specs} == {f"rankmixer/r{r}" for r in range(frappe.SWEEP_RUNGS)}
    assert all(s.family == "rankmixer" for s in specs)


def test_tiny_train_learns(tmp_path):
    """A few seconds through the CTR loop on planted synthetic interactions: the loss falls and the
    test AUC clears chance."""
    data, _ = synthetic_ctr(3000, seed=0)
    c = frappe.get_config("tiny")
    c.model.num_layers, c.model.mlp_depth = 1, 1
    c.train.batch_size, c.train.num_epochs, c.train.num_steps, c.train.eval_every = 128, 0.0, 96, 32
    c.train.learning_rate, c.eval.patience, c.logging.progress = 1e-2, 0, False
    result = train_and_evaluate(c, tmp_path, data=data)
    assert result["status"] == "ok" and result["family"] == "rankmixer"
    assert result["final_train_loss"] < np.log(2)
    assert result["eval"]["test/auc"] > 0.6  # chance = 0.5
