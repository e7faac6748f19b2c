"""Analytic FLOPs vs XLA's cost analysis, and parameter counts vs the built models."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from scaling_rec.config import default_config
from scaling_rec.data.jagged import SequenceExample, pad_examples
from scaling_rec.flops import block_flops, param_counts
from scaling_rec.models.registry import build


def _config(family, d=64, blocks=2, heads=2, max_len=64):
    c = default_config()
    c.model.family = family
    c.data.max_len = max_len
    c.model.embed_dim, c.model.num_blocks, c.model.num_heads = d, blocks, heads
    c.model.qk_dim = c.model.v_dim = d // heads
    c.model.ffn_dim = 2 * d
    c.model.time_bias = False
    return c


@pytest.mark.parametrize("family", ["hstu", "sasrec"])
def test_analytic_forward_flops_match_xla_cost_analysis(family):
    """The encoder's matmul FLOPs on the padded layout (B·L tokens, L² pairs a sequence) agree with
    XLA's count within 15%: XLA also counts elementwise work (layer norms, SiLU/softmax, masks, bias
    adds: O(B·L·D + B·H·L²) with small constants), which the analytic convention leaves out; at
    D=64 and L=64 that is under ~15% of the matmul work. The check catches a missing or doubled
    matmul (each is >= 20% of the total here)."""
    c = _config(family)
    model = build(c, 100)
    b, length = 8, 64
    ex = [SequenceExample(np.ones(length, np.int32), np.ones(length, np.int32))] * b
    batch = pad_examples(ex, b, length)
    graphdef, state = nnx.split(model)

    def encode(state, batch):
        m = nnx.merge(graphdef, state)
        return m(batch)

    cost = jax.jit(encode).lower(state, batch).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    xla = float(cost["flops"])
    analytic = block_flops(c.model, tokens=b * length, pairs=b * length * length)
    assert analytic == pytest.approx(xla, rel=0.15), (analytic, xla)
    assert analytic <= xla * 1.02  # XLA counts a superset of the matmul work


@pytest.mark.parametrize("family", ["hstu", "sasrec"])
def test_param_counts_split_dense_and_embedding(family):
    c = _config(family, d=32, blocks=3, heads=2, max_len=20)
    model = nnx.eval_shape(lambda: build(c, 1000))
    counts = param_counts(model)
    assert model.items.table.shape[0] == 1024  # padded to a multiple of 64 rows, which no id reaches:
    assert counts.n_emb == 1001 * 32 + 20 * 32  # N_emb counts the 1000 items, row 0 and the positions
    d = 32
    if family == "hstu":
        per_block = d * 2 * (2 * 16 + 2 * 16) + (2 * 16 * d + d) + (2 * 20 - 1)  # time_bias off in _config
    else:
        per_block = 4 * (d * d + d) + (d * 64 + 64) + (64 * d + d)
    assert counts.n_dense == 3 * per_block


def test_param_counts_follow_one_rule_for_every_family():
    """N_emb = the rows ids reach x width for the CTR and TIGER tables as for the item table; the padding
    rows to a multiple of 64 are in neither count (they are in the parameter tree)."""
    from scaling_rec import ctr_config, tiger_config
    from scaling_rec.models.registry import build_ctr_model
    from scaling_rec.models.tiger import Tiger, model_spec

    vocab = (7, 30, 2)
    ctr = nnx.eval_shape(lambda: build_ctr_model(ctr_config.default_config().model, vocab, 0, nnx.Rngs(0)))
    tc = tiger_config.default_config()
    tc.model.update(d_model=16, num_layers=1, num_heads=2, head_dim=8, d_ff=32, user_buckets=5)
    tiger = nnx.eval_shape(lambda: Tiger(model_spec(tc), (4, 4, 4), nnx.Rngs(0)))
    for model, table, used in ((ctr, ctr.embedding.table, sum(vocab)), (tiger, tiger.embed, tiger.num_token_rows)):
        counts = param_counts(model)
        rows, width = table.table.shape
        assert rows == 64 and used < rows
        assert counts.n_emb == used * width
        every = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
        assert counts.n_dense == every - rows * width


def test_every_family_has_its_flops_in_this_module():
    """A family added to scaling_rec.families without a FLOP formula here fails (CTR: ctr_forward_flops;
    sequential: block_flops; TIGER: tiger_forward_flops); per-layer widths count as the equal widths do."""
    from scaling_rec import ctr_config, tiger_config
    from scaling_rec.families import CTR_FAMILIES, SEQUENCE_FAMILIES, TIGER_FAMILIES
    from scaling_rec.flops import ctr_forward_flops, tiger_forward_flops
    from scaling_rec.models.ctr_common import mlp_flops

    for family in CTR_FAMILIES:
        c = ctr_config.default_config()
        c.model.family = family
        assert ctr_forward_flops(c.model, num_fields=10) > ctr_forward_flops(c.model, num_fields=5) > 0
    for family in SEQUENCE_FAMILIES:
        assert block_flops(_config(family).model, tokens=10, pairs=55) > 0
    assert TIGER_FAMILIES == ("tiger",) and tiger_forward_flops(tiger_config.default_config(), 3) > 0
    assert mlp_flops(7, (16, 16), 2, 1) == mlp_flops(7, 16, 2, 1) == 2 * (7 * 16 + 16 * 16 + 16)


@pytest.mark.parametrize("family", ["hstu", "sasrec"])
def test_budget_counts_model_flops_on_either_layout(family):
    """A run's budget is model FLOPs (flops.py): the causal pairs of the real tokens and the loss's scored
    items, the same on the padded layout as on the jagged one, although dense attention executes the whole
    max_len² grid. Hand count: blocks · (per-token · n + per-pair · n(n+1)/2) + 2·D·(1 + K)·targets."""
    from types import SimpleNamespace

    from scaling_rec.train.loop import example_train_flops

    keys = np.array([[5, 5], [64, 63], [1, 1]], np.int64)
    inputs = SimpleNamespace(num_items=100, train_flop_keys=keys)
    counts = {}
    for layout in ("jagged", "padded"):
        c = _config(family)
        c.data.layout = layout
        counts[layout] = example_train_flops(c, inputs)
    np.testing.assert_array_equal(counts["padded"], counts["jagged"])
    m = _config(family).model
    d, h = m.embed_dim, m.num_heads
    if family == "hstu":
        per_token, per_pair = 2 * d * h * 2 * (m.v_dim + m.qk_dim) + 2 * h * m.v_dim * d, 2 * h * (m.qk_dim + m.v_dim)
    else:
        per_token, per_pair = 8 * d * d + 4 * d * m.ffn_dim, 4 * d
    n, t = keys[:, 0].astype(float), keys[:, 1].astype(float)
    scored = 1 + _config(family).train.num_negatives
    hand = 3 * (m.num_blocks * (per_token * n + per_pair * n * (n + 1) / 2) + 2 * d * scored * t)
    np.testing.assert_allclose(counts["jagged"], hand, rtol=1e-12)
