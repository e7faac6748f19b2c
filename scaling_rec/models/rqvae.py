"""Semantic IDs for TIGER: RQ-VAE, RQ-KMeans and random IDs, plus the collision-disambiguating token.

RQ-VAE (Rajput et al. 2023, "Recommender Systems with Generative Retrieval", Sec. 3.1, Fig. 3; residual
quantisation of Zeghidour et al. 2021): an MLP encoder maps an item's content vector x [D] to a latent
z [d]; L codebooks of K entries quantise it level by level, r_0 = z, c_l = argmin_k ||r_l - e_{l,k}||,
r_{l+1} = r_l - e_{l,c_l}; the decoder reconstructs x from z_hat = sum_l e_{l,c_l}. Loss (Sec. 3.1):
  L = ||x - x_hat||^2 + sum_l ( ||sg[r_l] - e_{l,c_l}||^2 + beta ||r_l - sg[e_{l,c_l}]||^2 ),
with the straight-through estimator for z_hat. Paper shape: 768 -> 512 -> 256 -> 128 -> 32 (ReLU),
L = 3, K = 256, beta = 0.25, codebooks initialised by k-means on the first batch. Here the hidden
widths scale with D (2/3, 1/3, 1/6 of D), dead codes are re-seeded, and items whose L codes collide get
a 4th token 0, 1, 2, ... (Sec. 3.1, "collisions") so that every item has a unique ID.

RQ-KMeans: the same residual scheme with k-means on the content vectors themselves (no training).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from scaling_rec.errors import ConfigError, DataFormatError
from scaling_rec.metrics import codebook_usage, collision_rate
from scaling_rec.models.layers import Dense, param

HIDDEN_FRACTIONS = (2 / 3, 1 / 3, 1 / 6)  # 768 -> 512 -> 256 -> 128 in the paper


# ------------------------------------------------------------------------------------------
# k-means (host, numpy; deterministic given the seed)
# ------------------------------------------------------------------------------------------


def _sq_dists(x_NxD: np.ndarray, c_KxD: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances [N, K] (float64)."""
    return np.maximum((x_NxD**2).sum(1)[:, None] - 2.0 * x_NxD @ c_KxD.T + (c_KxD**2).sum(1)[None, :], 0.0)


def kmeans(x_NxD: np.ndarray, k: int, *, seed: int = 0, iters: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding (Arthur & Vassilvitskii 2007): (centroids [k, D], codes [N]).

    Deterministic for a given (x, k, seed). With fewer distinct points than k, the surplus centroids
    repeat points (their clusters stay empty). An emptied cluster is re-seeded at the point farthest
    from its centroid.
    """
    x = np.asarray(x_NxD, np.float64)
    n = x.shape[0]
    if n == 0 or k < 1:
        raise ConfigError(f"kmeans: needs points and k >= 1, got {n} points and k={k}")
    rng = np.random.default_rng(seed)
    cent = np.empty((k, x.shape[1]))
    cent[0] = x[rng.integers(n)]
    d2 = _sq_dists(x, cent[:1])[:, 0]
    for j in range(1, k):
        total = d2.sum()
        idx = rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)
        cent[j] = x[idx]
        d2 = np.minimum(d2, _sq_dists(x, cent[j : j + 1])[:, 0])
    codes = np.zeros(n, np.int64)
    for it in range(iters):
        dist = _sq_dists(x, cent)
        new = dist.argmin(1)
        if it > 0 and np.array_equal(new, codes):
            break
        codes = new
        counts = np.bincount(codes, minlength=k)
        sums = np.zeros_like(cent)
        np.add.at(sums, codes, x)
        used = counts > 0
        cent[used] = sums[used] / counts[used][:, None]
        if not used.all() and n >= k:
            err = dist[np.arange(n), codes]
            far = np.argsort(-err, kind="stable")[: int((~used).sum())]
            cent[~used] = x[far]
    return cent, _sq_dists(x, cent).argmin(1)


def residual_kmeans(x_NxD: np.ndarray, levels: int, codebook_size: int, *, seed: int = 0,
                    iters: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """RQ-KMeans: k-means on the residuals, level by level. Returns (codebooks [L, K, D], codes [N, L])."""
    r = np.asarray(x_NxD, np.float64).copy()
    books, codes = [], []
    for level in range(levels):
        cent, c = kmeans(r, codebook_size, seed=seed + level, iters=iters)
        books.append(cent)
        codes.append(c)
        r = r - cent[c]
    return np.stack(books), np.stack(codes, 1)


# ------------------------------------------------------------------------------------------
# RQ-VAE
# ------------------------------------------------------------------------------------------


def hidden_widths(d_in: int, latent: int) -> tuple[int, ...]:
    """Encoder hidden widths scaled to the input: 768 -> (512, 256, 128) as in the paper (Sec. 4.1)."""
    return tuple(max(latent, round(d_in * f)) for f in HIDDEN_FRACTIONS)


class RQVAE(nnx.Module):
    """RQ-VAE (module docstring): MLP encoder/decoder and L residual codebooks [L, K, latent]."""

    def __init__(self, d_in: int, rngs: nnx.Rngs, *, latent: int = 32, levels: int = 3, codebook_size: int = 256,
                 beta: float = 0.25, hidden: tuple[int, ...] | None = None) -> None:
        widths = (d_in, *(hidden or hidden_widths(d_in, latent)), latent)
        self.encoder = nnx.List([Dense(a, b, ("embed", "mlp"), rngs)
                                  for a, b in zip(widths[:-1], widths[1:], strict=True)])
        rev = widths[::-1]
        self.decoder = nnx.List([Dense(a, b, ("mlp", "embed"), rngs) for a, b in zip(rev[:-1], rev[1:], strict=True)])
        self.codebooks = param(rngs, nnx.initializers.normal(1.0), (levels, codebook_size, latent),
                               ("layers", "codebook", None))
        self.levels, self.codebook_size, self.beta = levels, codebook_size, beta

    @staticmethod
    def _mlp(layers: Any, x: jax.Array) -> jax.Array:
        for i, layer in enumerate(layers):
            x = layer(x)
            if i < len(layers) - 1:
                x = jax.nn.relu(x)
        return x

    def encode(self, x_NxD: jax.Array) -> jax.Array:
        """Latent z [N, latent] of content vectors [N, D]."""
        return self._mlp(self.encoder, x_NxD)

    def decode(self, z_Nxd: jax.Array) -> jax.Array:
        """Reconstruction [N, D] of latents [N, latent]."""
        return self._mlp(self.decoder, z_Nxd)

    def quantize(self, z_Nxd: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Residual quantisation: (codes int32 [N, L], chosen entries [N, L, d], residuals r_l [N, L, d])."""
        books = self.codebooks[...]
        r = z_Nxd
        codes, chosen, residuals = [], [], []
        for level in range(self.levels):
            e_Kxd = books[level]
            d2_NxK = (r * r).sum(-1, keepdims=True) - 2.0 * r @ e_Kxd.T + (e_Kxd * e_Kxd).sum(-1)[None, :]
            c_N = jnp.argmin(d2_NxK, axis=-1).astype(jnp.int32)
            q_Nxd = jnp.take(e_Kxd, c_N, axis=0)
            codes.append(c_N)
            chosen.append(q_Nxd)
            residuals.append(r)
            r = r - q_Nxd
        return jnp.stack(codes, 1), jnp.stack(chosen, 1), jnp.stack(residuals, 1)

    def encode_codes(self, x_NxD: jax.Array) -> jax.Array:
        """Semantic codes int32 [N, L] of content vectors."""
        return self.quantize(self.encode(x_NxD))[0]

    def decode_codes(self, codes_NxL: jax.Array, levels: int | None = None) -> jax.Array:
        """Reconstruction [N, D] from the first `levels` codes (all when None): decode(sum_l e_{l,c_l})."""
        books = self.codebooks[...]
        n = self.levels if levels is None else levels
        z = sum(jnp.take(books[level], codes_NxL[:, level], axis=0) for level in range(n))
        return self.decode(z)

    def __call__(self, x_NxD: jax.Array) -> dict[str, jax.Array]:
        """Loss terms (Sec. 3.1): 'loss', 'recon' (mean squared error per item), 'commit', and 'codes'."""
        z = self.encode(x_NxD)
        codes, chosen, residuals = self.quantize(z)
        sg = jax.lax.stop_gradient
        codebook_term = jnp.square(sg(residuals) - chosen).sum(-1).sum(-1)
        commit_term = jnp.square(residuals - sg(chosen)).sum(-1).sum(-1)
        z_q = chosen.sum(1)
        z_hat = z + sg(z_q - z)  # straight-through
        recon = jnp.square(self.decode(z_hat) - x_NxD).sum(-1)
        loss = recon + codebook_term + self.beta * commit_term
        return {"loss": loss.mean(), "recon": recon.mean(), "commit": commit_term.mean(), "codes": codes}

    def kmeans_init(self, x_NxD: np.ndarray, seed: int = 0) -> None:
        """Sets every codebook by residual k-means on the encoder outputs of one batch (the first)."""
        z = np.asarray(self.encode(jnp.asarray(x_NxD, jnp.float32)), np.float64)
        books, _ = residual_kmeans(z, self.levels, self.codebook_size, seed=seed, iters=10)
        self.codebooks[...] = jnp.asarray(books, jnp.float32)

    def reset_dead_codes(self, x_NxD: np.ndarray, seed: int = 0) -> int:
        """Re-seeds codes no item of `x_NxD` uses with the residuals of the worst-quantised items.

        Returns the number of codes reset (over all levels). Level by level: the residuals r_l of all
        items are recomputed after earlier levels changed.
        """
        books = np.asarray(self.codebooks[...], np.float64)
        r = np.asarray(self.encode(jnp.asarray(x_NxD, jnp.float32)), np.float64)
        rng = np.random.default_rng(seed)
        reset = 0
        for level in range(self.levels):
            d2 = _sq_dists(r, books[level])
            c = d2.argmin(1)
            dead = np.flatnonzero(np.bincount(c, minlength=self.codebook_size) == 0)
            if dead.size:
                err = d2[np.arange(r.shape[0]), c]
                worst = np.argsort(-err, kind="stable")[: max(4 * dead.size, dead.size)]
                pick = rng.choice(worst, size=min(dead.size, worst.size), replace=False)
                books[level, dead[: pick.size]] = r[pick]
                reset += int(pick.size)
                c = _sq_dists(r, books[level]).argmin(1)
            r = r - books[level, c]
        self.codebooks[...] = jnp.asarray(books, jnp.float32)
        return reset


def train_rqvae(x_NxD: np.ndarray, *, steps: int, batch_size: int = 1024, learning_rate: float = 1e-3,
                latent: int = 32, levels: int = 3, codebook_size: int = 256, beta: float = 0.25,
                reset_every: int = 200, seed: int = 0, log_every: int = 0) -> tuple[RQVAE, list[dict]]:
    """Fits an RQ-VAE to item vectors x [N, D] (rows of real items only): AdamW, minibatches by a seeded
    permutation, k-means init on the first batch, dead-code reset every `reset_every` steps.

    Returns (model, history of {'step', 'loss', 'recon', 'dead_reset'} every `log_every` steps).
    """
    x = np.asarray(x_NxD, np.float32)
    rng = np.random.default_rng(seed)
    model = RQVAE(x.shape[1], nnx.Rngs(params=seed), latent=latent, levels=levels, codebook_size=codebook_size,
                  beta=beta)
    b = min(batch_size, x.shape[0])
    order = rng.permutation(x.shape[0])
    model.kmeans_init(x[order[:b]], seed=seed)
    opt = nnx.Optimizer(model, optax.adamw(learning_rate, weight_decay=1e-4), wrt=nnx.Param)

    @nnx.jit
    def step(model: RQVAE, opt: nnx.Optimizer, xb: jax.Array) -> dict[str, jax.Array]:
        def loss_fn(m: RQVAE) -> tuple[jax.Array, dict]:
            out = m(xb)
            return out["loss"], out

        (_, out), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        opt.update(model, grads)
        return {k: out[k] for k in ("loss", "recon", "commit")}

    history: list[dict] = []
    pos, resets = b, 0
    for t in range(1, steps + 1):
        if pos + b > x.shape[0]:
            order, pos = rng.permutation(x.shape[0]), 0
        out = step(model, opt, jnp.asarray(x[order[pos : pos + b]]))
        pos += b
        if reset_every and t % reset_every == 0 and t < steps:
            resets += model.reset_dead_codes(x, seed=seed + t)
        if log_every and (t % log_every == 0 or t == steps):
            history.append({"step": t, **{k: float(v) for k, v in out.items()}, "dead_reset": resets})
    return model, history


# ------------------------------------------------------------------------------------------
# Semantic IDs
# ------------------------------------------------------------------------------------------


def append_collision_token(codes_NxL: np.ndarray) -> np.ndarray:
    """Adds a last token k = 0, 1, 2, ... counting earlier items (by row order) with the same L codes.

    Every row of the result [N, L+1] is unique (TIGER Sec. 3.1: collisions get an extra code).
    """
    codes = np.asarray(codes_NxL, np.int64)
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    group_start = np.r_[0, np.flatnonzero(np.diff(inverse[order])) + 1]
    rank_sorted = np.arange(codes.shape[0]) - np.repeat(group_start, np.diff(np.r_[group_start, codes.shape[0]]))
    extra = np.empty(codes.shape[0], np.int64)
    extra[order] = rank_sorted
    return np.concatenate([codes, extra[:, None]], axis=1)


@dataclasses.dataclass(frozen=True, eq=False)
class SemanticIds:
    """Each item's semantic ID.

    Attributes:
      codes: int32 [num_items + 1, L + 1]; row i = item i's tokens (row 0, the padding item, is -1).
      vocab_sizes: tokens per position (K for the L levels, max collisions + 1 for the last).
      method: 'rqvae' | 'rqkmeans' | 'random'.
      stats: codebook usage / perplexity per level, collision rate before the last token,
        reconstruction loss (RQ-VAE), for the result.
    """

    codes: np.ndarray
    vocab_sizes: tuple[int, ...]
    method: str
    stats: dict

    @property
    def num_items(self) -> int:
        return int(self.codes.shape[0] - 1)

    @property
    def length(self) -> int:
        """Tokens per ID (L + 1)."""
        return int(self.codes.shape[1])

    def save(self, path: str | os.PathLike) -> None:
        """Writes an .npz (codes, vocab sizes, method) atomically; stats go to the run's result."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, codes=self.codes, vocab_sizes=np.array(self.vocab_sizes), method=np.array(self.method))
            os.replace(tmp, path)
        except BaseException:
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike, stats: dict | None = None) -> SemanticIds:
        try:
            with np.load(path) as z:
                return cls(z["codes"], tuple(int(v) for v in z["vocab_sizes"]), str(z["method"]), stats or {})
        except (OSError, KeyError, ValueError) as e:
            raise DataFormatError(f"{path}: not a semantic-ID file ({e}); delete it to recompute.") from None


def make_semantic_ids(codes_NxL: np.ndarray, codebook_size: int, method: str, extra: dict | None = None) -> SemanticIds:
    """Semantic IDs of items 1..N from their L codes [N, L]: adds the collision token and the stats."""
    codes = np.asarray(codes_NxL, np.int64)
    usage = codebook_usage(codes, codebook_size)
    full = append_collision_token(codes)
    stats = {
        "codebook_usage": np.asarray(usage["usage_L"]).round(4).tolist(),
        "codebook_perplexity": np.asarray(usage["perplexity_L"]).round(2).tolist(),
        "collision_rate": collision_rate(codes),
        "max_collisions": int(full[:, -1].max() + 1),
        "unique_after_last_token": bool(collision_rate(full) == 0.0),
        **(extra or {}),
    }
    table = np.full((codes.shape[0] + 1, full.shape[1]), -1, np.int32)
    table[1:] = full
    sizes = (codebook_size,) * codes.shape[1] + (int(full[:, -1].max()) + 1,)
    return SemanticIds(table, sizes, method, stats)


def semantic_ids(x_VxD: np.ndarray, method: str, *, levels: int = 3, codebook_size: int = 256, seed: int = 0,
                 rqvae_steps: int = 3000, rqvae_batch: int = 1024, rqvae_lr: float = 1e-3, latent: int = 32,
                 beta: float = 0.25) -> SemanticIds:
    """Semantic IDs of the items whose content vectors are rows 1.. of x [num_items + 1, D] (row 0 padding).

    method 'rqvae' (trained, module docstring), 'rqkmeans' (residual k-means of x), 'random' (uniform codes,
    the paper's random-ID ablation, Sec. 4.3).
    """
    x = np.asarray(x_VxD, np.float32)[1:]
    if method == "rqvae":
        model, hist = train_rqvae(x, steps=rqvae_steps, batch_size=rqvae_batch, learning_rate=rqvae_lr,
                                  latent=latent, levels=levels, codebook_size=codebook_size, beta=beta, seed=seed,
                                  log_every=max(rqvae_steps // 10, 1))
        xj = jnp.asarray(x)
        codes = np.asarray(model.encode_codes(xj))
        recon = [float(jnp.square(model.decode_codes(jnp.asarray(codes), lv) - xj).sum(-1).mean())
                 for lv in range(1, levels + 1)]
        extra = {"recon_mse_by_levels": recon, "rqvae_history": hist,
                 "content_sq_norm": float(np.square(x).sum(-1).mean())}
    elif method == "rqkmeans":
        books, codes = residual_kmeans(x, levels, codebook_size, seed=seed)
        recon = [float(np.square(x - books[np.arange(lv)[None, :], codes[:, :lv]].sum(1)).sum(-1).mean())
                 for lv in range(1, levels + 1)]
        extra = {"recon_mse_by_levels": recon, "content_sq_norm": float(np.square(x).sum(-1).mean())}
    elif method == "random":
        codes = np.random.default_rng(seed).integers(0, codebook_size, size=(x.shape[0], levels))
        extra = {}
    else:
        raise ConfigError(f"tiger.ids.method={method!r}: choose 'rqvae', 'rqkmeans' or 'random'.")
    return make_semantic_ids(codes, codebook_size, method, extra)
