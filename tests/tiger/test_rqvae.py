"""RQ-VAE / RQ-KMeans semantic IDs: reconstruction improves with levels, unique IDs, deterministic k-means init."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling_rec.models.rqvae import (
    RQVAE,
    SemanticIds,
    append_collision_token,
    residual_kmeans,
    semantic_ids,
    train_rqvae,
)


def _clustered(n: int = 256, d: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, d)) * 3.0
    return (centres[rng.integers(8, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_rqvae_decode_error_decreases_with_levels() -> None:
    x = _clustered()
    model, hist = train_rqvae(x, steps=150, batch_size=128, learning_rate=3e-3, latent=8, levels=3,
                              codebook_size=16, reset_every=50, log_every=50)
    assert hist[-1]["loss"] < hist[0]["loss"] * 1.01 and np.isfinite(hist[-1]["loss"])
    xj = jnp.asarray(x)
    codes = model.encode_codes(xj)
    assert codes.shape == (256, 3) and codes.dtype == jnp.int32
    errs = [float(jnp.square(model.decode_codes(codes, lv) - xj).sum(-1).mean()) for lv in (1, 2, 3)]
    assert errs[0] > errs[1] > errs[2], errs
    # Latent residual norms shrink level by level too.
    _, _, residuals = model.quantize(model.encode(xj))
    norms = jnp.square(residuals).sum(-1).mean(0)
    assert bool(jnp.all(norms[1:] < norms[:-1])), norms


def test_rqkmeans_residual_error_decreases_with_levels() -> None:
    x = _clustered()
    books, codes = residual_kmeans(x, levels=3, codebook_size=8)
    errs = [np.square(x - books[np.arange(lv)[None, :], codes[:, :lv]].sum(1)).sum(-1).mean() for lv in (1, 2, 3)]
    assert errs[0] > errs[1] > errs[2]


def test_kmeans_init_is_deterministic_and_uses_only_the_first_batch() -> None:
    x = _clustered()
    a = RQVAE(12, nnx.Rngs(params=0), latent=8, levels=2, codebook_size=16)
    b = RQVAE(12, nnx.Rngs(params=0), latent=8, levels=2, codebook_size=16)
    before = np.asarray(a.codebooks[...]).copy()
    a.kmeans_init(x[:64], seed=3)
    b.kmeans_init(x[:64], seed=3)
    np.testing.assert_array_equal(np.asarray(a.codebooks[...]), np.asarray(b.codebooks[...]))
    assert not np.allclose(before, np.asarray(a.codebooks[...]))
    # The codebooks are residual k-means of the first batch's latents, nothing else.
    z = np.asarray(a.encode(jnp.asarray(x[:64])), np.float64)
    expected, _ = residual_kmeans(z, 2, 16, seed=3, iters=10)
    np.testing.assert_allclose(np.asarray(a.codebooks[...]), expected, rtol=1e-5, atol=1e-5)
    # Training twice from the same data gives the same codes (init and minibatches are seeded).
    m1, _ = train_rqvae(x, steps=5, batch_size=64, latent=8, levels=2, codebook_size=16)
    m2, _ = train_rqvae(x, steps=5, batch_size=64, latent=8, levels=2, codebook_size=16)
    np.testing.assert_array_equal(np.asarray(m1.encode_codes(jnp.asarray(x))), np.asarray(m2.encode_codes(x)))


def test_dead_codes_are_reset() -> None:
    x = _clustered()
    m = RQVAE(12, nnx.Rngs(params=0), latent=8, levels=2, codebook_size=16)
    m.codebooks[...] = m.codebooks[...].at[:, 1:].set(1e3)  # only code 0 is ever chosen
    assert m.reset_dead_codes(x) == 30
    assert len(np.unique(np.asarray(m.encode_codes(jnp.asarray(x)))[:, 0])) > 8


def test_collision_token_makes_every_id_unique(tmp_path) -> None:
    codes = np.array([[1, 2, 3], [1, 2, 3], [0, 0, 0], [1, 2, 3], [0, 0, 1]])
    full = append_collision_token(codes)
    assert full[:, -1].tolist() == [0, 1, 0, 2, 0]
    assert len({tuple(r) for r in full}) == len(full)
    x = np.zeros((301, 4), np.float32)
    x[1:] = np.random.default_rng(0).normal(size=(300, 4))
    ids = semantic_ids(x, "random", levels=2, codebook_size=4)  # 300 items in 16 prefixes: many collisions
    assert ids.codes.shape == (301, 3) and (ids.codes[0] == -1).all()
    assert ids.stats["collision_rate"] > 0.9 and ids.stats["unique_after_last_token"]
    assert len({tuple(r) for r in ids.codes[1:]}) == 300
    assert ids.vocab_sizes == (4, 4, ids.stats["max_collisions"])
    ids.save(tmp_path / "ids.npz")
    back = SemanticIds.load(tmp_path / "ids.npz")
    np.testing.assert_array_equal(back.codes, ids.codes)
    assert back.vocab_sizes == ids.vocab_sizes and back.method == "random"
