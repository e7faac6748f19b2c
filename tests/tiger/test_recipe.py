"""The paper recipe's pieces for TIGER (issue 19): label smoothing over each position's codes, Adafactor with
AdamW's weight decay, the lr-0.01-then-inverse-sqrt schedule, and new keys that leave older run ids alone."""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from experiments.tiger.beauty import PRESETS, get_config
from scaling_rec.errors import ConfigError
from scaling_rec.parallel.mesh import make_mesh
from scaling_rec.parallel.sharding import init_opt_state
from scaling_rec.schema import ADDED_KEYS
from scaling_rec.tiger_config import default_config, run_id, validate
from scaling_rec.train.step import learning_rate_schedule, make_optimizer
from scaling_rec.train.tiger_loop import code_xent, make_loss, train_and_evaluate
from tests.tiger.test_loop import _config, _data_dir

VOCAB = (5, 5, 3)  # the last position is short, like the collision token: its logits past 3 are -1e9


def _logits_and_codes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(4, len(VOCAB), max(VOCAB))).astype(np.float32) * 2.0
    for p, v in enumerate(VOCAB):
        logits[:, p, v:] = -1e9
    codes = np.stack([rng.integers(0, v, size=4) for v in VOCAB], axis=1).astype(np.int32)
    return logits, codes


def _numpy_smoothed_xent(logits: np.ndarray, codes: np.ndarray, eps: float) -> np.ndarray:
    """Cross-entropy against (1 - eps) one-hot + eps uniform over each position's own codes, in float64."""
    out = np.zeros(codes.shape)
    for b in range(codes.shape[0]):
        for p, v in enumerate(VOCAB):
            z = logits[b, p, :v].astype(np.float64)
            logp = z - z.max() - np.log(np.exp(z - z.max()).sum())
            target = np.full(v, eps / v)
            target[codes[b, p]] += 1.0 - eps
            out[b, p] = -(target * logp).sum()
    return out


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing_matches_a_numpy_reference(eps: float) -> None:
    logits, codes = _logits_and_codes()
    objective, xent = code_xent(jnp.asarray(logits), jnp.asarray(codes), VOCAB, eps)
    np.testing.assert_allclose(np.asarray(objective), _numpy_smoothed_xent(logits, codes, eps), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(xent), _numpy_smoothed_xent(logits, codes, 0.0), rtol=1e-5)


def test_no_smoothing_is_the_plain_cross_entropy_bit_for_bit() -> None:
    logits, codes = _logits_and_codes(1)
    objective, xent = code_xent(jnp.asarray(logits), jnp.asarray(codes), VOCAB, 0.0)
    plain = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(logits), jnp.asarray(codes))
    assert np.array_equal(np.asarray(objective), np.asarray(plain))
    assert np.array_equal(np.asarray(xent), np.asarray(plain))


def test_smoothing_needs_the_vocab_sizes() -> None:
    with pytest.raises(ValueError, match="vocab size per ID position"):
        make_loss(None, np.zeros((3, len(VOCAB)), np.int32), (), label_smoothing=0.1)


def test_new_keys_are_validated() -> None:
    c = default_config()
    c.train.label_smoothing = 1.0
    with pytest.raises(ConfigError, match="label_smoothing"):
        validate(c)
    c = default_config()
    c.train.optimizer = "sgd"
    with pytest.raises(ConfigError, match="train.optimizer"):
        validate(c)


def test_new_keys_at_their_defaults_keep_the_run_id() -> None:
    assert ADDED_KEYS["train.optimizer"] == "adamw" and ADDED_KEYS["train.label_smoothing"] == 0.0
    c = default_config()
    older = ml_collections.ConfigDict(c.to_dict())
    del older.train["optimizer"], older.train["label_smoothing"]
    assert run_id(c) == run_id(older)
    c.train.label_smoothing = 0.1
    assert run_id(c) != run_id(older)
    c.train.label_smoothing, c.train.optimizer = 0.0, "adafactor"
    assert run_id(c) != run_id(older)


def test_paper_schedule_is_lr_001_for_10k_steps_then_inverse_sqrt() -> None:
    """Rajput et al. 2023, Sec. 4.1: 0.01 for the first 10k steps, then inverse square root decay; the schedule
    reads 0-based steps and counts them from 1 (step s applies lr(s + 1))."""
    train = get_config("gpu_paper").train
    assert (train.optimizer, train.learning_rate, train.warmup_steps, train.decay_start) == ("adafactor", 0.01, 0,
                                                                                             10_000)
    assert train.grad_clip == 0.0  # the paper names no global-norm clip; Adafactor clips its own updates
    lr = learning_rate_schedule(train, train.num_steps)
    for step in (0, 1, 5000, 9998, 9999, 10_000, 39_999, 199_999):
        expected = 0.01 * min(1.0, (10_000 / (step + 1)) ** 0.5)
        assert float(lr(jnp.asarray(step, jnp.int32))) == pytest.approx(expected, rel=1e-6), step
    assert float(lr(jnp.asarray(39_999))) == pytest.approx(0.005, rel=1e-6)


def test_adafactor_weight_decay_is_scaled_by_the_learning_rate() -> None:
    """With zero gradients Adafactor's step is 0, so the update is the decay alone: -lr x weight_decay x p
    (AdamW's coupling), not optax.adafactor's -weight_decay x p."""
    train = ml_collections.ConfigDict(dict(optimizer="adafactor", learning_rate=0.01, warmup_steps=0,
                                           decay_start=10_000, weight_decay=0.1, grad_clip=1.0))
    opt = make_optimizer(train)
    params = {"w": jnp.arange(1.0, 7.0).reshape(2, 3), "b": jnp.ones(3)}
    updates, _ = opt.update(jax.tree.map(jnp.zeros_like, params), opt.init(params), params)
    for k in params:
        np.testing.assert_allclose(np.asarray(updates[k]), -0.01 * 0.1 * np.asarray(params[k]), rtol=1e-6)


def test_adafactor_lowers_a_least_squares_loss_with_factored_moments() -> None:
    """A 128 x 130 weight (optax factors the second moments of dims >= 128) and a bias, 30 jitted steps."""
    rng = np.random.default_rng(0)
    x, w_true = jnp.asarray(rng.normal(size=(64, 128))), jnp.asarray(rng.normal(size=(128, 130)) * 0.1)
    y = x @ w_true
    train = ml_collections.ConfigDict(dict(optimizer="adafactor", learning_rate=0.1, warmup_steps=0,
                                           decay_start=10_000, weight_decay=0.0, grad_clip=1.0))
    opt = make_optimizer(train)
    params = {"w": jnp.asarray(rng.normal(size=(128, 130)) * 0.1), "b": jnp.zeros(130)}

    def loss(p):
        return jnp.mean((x @ p["w"] + p["b"][None, :] - y) ** 2)

    @jax.jit
    def step(p, s):
        updates, s = opt.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, updates), s

    state, first = opt.init(params), float(loss(params))
    assert state[1][0].v_row["w"].shape == (128,)  # factored: row and column statistics, not a full moment
    for _ in range(30):
        params, state = step(params, state)
    assert float(loss(params)) < 0.5 * first


def test_adafactor_state_is_placed_beside_sharded_parameters() -> None:
    """The engine's explicit placement: full-shape moments take their parameter's sharding, Adafactor's factored
    rows and columns (another shape) are replicated instead of failing on the parameter's spec."""
    mesh = make_mesh(1, 1, 1)
    train = ml_collections.ConfigDict(dict(optimizer="adafactor", learning_rate=0.01, warmup_steps=0,
                                           decay_start=10_000, weight_decay=0.0, grad_clip=0.0))
    opt = make_optimizer(train)
    params = {"w": jax.device_put(jnp.ones((128, 130)), NamedSharding(mesh, P(None, "tensor"))),
              "b": jax.device_put(jnp.ones(130), NamedSharding(mesh, P("tensor")))}
    state = init_opt_state(opt, params, mesh)
    factored = state[0]
    assert factored.v_row["w"].shape == (128,) and factored.v_row["w"].sharding.spec == P()
    assert factored.v["b"].shape == (130,) and factored.v["b"].sharding.spec == P("tensor")


@pytest.mark.slow
def test_adafactor_with_label_smoothing_trains_tiger(tmp_path: pathlib.Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALING_REC_CACHE", str(tmp_path / "cache"))
    c = _config(_data_dir(tmp_path / "data"))
    c.train.update(optimizer="adafactor", learning_rate=0.01, warmup_steps=0, decay_start=4, label_smoothing=0.1,
                   num_steps=30, eval_every=30, log_every=5)
    r = train_and_evaluate(c, tmp_path / "run")
    log = tmp_path / "run" / "runs" / r["run_id"] / "metrics.jsonl"
    losses = [row["loss"] for row in map(json.loads, log.read_text().splitlines()) if "loss" in row]
    assert r["status"] == "ok" and len(losses) >= 2
    assert np.isfinite(losses).all() and losses[-1] < losses[0] - 0.2, losses


def test_ablation_presets_are_valid_and_differ_in_one_thing_each() -> None:
    ladder = [p for p in PRESETS if p.startswith("gpu_paper")]
    assert ladder[0] == "gpu_paper" and len(ladder) >= 4
    for p in ladder:
        validate(get_config(p))
    ids = {run_id(get_config(p)) for p in ladder}
    assert len(ids) == len(ladder)
