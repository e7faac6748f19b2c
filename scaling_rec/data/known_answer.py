"""Known-answer data: user histories from a hidden-Markov interest model whose best achievable
held-out cross-entropy is computable, so a fitted loss floor can be checked against the truth.

The process (every parameter drawn from `seed`):
- Catalogue: items 1..V with Zipf popularity pop(i) ∝ rank(i)^-zipf_s (ranks a random permutation).
- Interests: each item belongs to one of K interests (a random, near-equal split of the catalogue).
  Interest k emits item i with probability
      e_k(i) = (1 − mix) · pop(i)·[i ∈ k] / pop(k) + mix · pop(i),
  i.e. the popular items of the interest, plus the catalogue's popularity with weight `mix`.
- Hidden chain: the first interest is uniform over K (the chain's stationary law); then the user keeps
  the interest with probability `p_stay` and otherwise draws a new one uniformly (itself included):
  A = p_stay·I + (1 − p_stay)/K.
- Every history has exactly `length` events.

The quantity a trained model is evaluated on (docs/CONTRACTS.md leave-one-out, a softmax over the whole
catalogue, `eval/test/xent`): the cross-entropy −log q(x_n | history) of the last event x_n of each
history, where the model sees the `context` = data.max_len most recent events before it. The best any
predictor of x_n from those events can do is the Bayes predictive p(x_n | x_{n−context}..x_{n−1}),
computed exactly by the forward algorithm (Rabiner 1989, §III-A) started from the chain's stationary law
(the chain starts in it, so the process is stationary and the window is as good a start as event 1).
Its expected cross-entropy is the conditional entropy H(X_{c+1} | X_1..X_c) with c = context: the known
answer. `bayes_cross_entropy` estimates it by Monte Carlo over many sampled histories (exact −log p per
history, with a standard error); `bayes_cross_entropy_of` takes it over the very users a run is evaluated
on, which removes the evaluation's own sampling noise from the comparison. It decreases with c towards
the entropy rate H(X) = lim_c H(X_{c+1} | X_1..X_c); with a finite context the conditional entropy, not
the rate, is what the evaluation measures.

Fresh data: users are generated in blocks of `BLOCK_USERS`, block b from the generator seeded with
(seed, b), so the first U users are the same whatever U is asked for; a study asks for as many users as
its largest budget consumes, so no run sees a history twice.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from scaling_rec.data.sequences import SequenceData
from scaling_rec.errors import ConfigError

BLOCK_USERS = 4096
NAME = "known-answer"


@dataclasses.dataclass(frozen=True)
class InterestHMM:
    """The hidden-Markov interest model.

    initial_K: first-interest probabilities; transition_KxK: A[j, k] = P(next = k | now = j);
    emission_KxV: e_k(i) for items i = 1..V (column i-1); length: events per history.
    """

    initial_K: np.ndarray
    transition_KxK: np.ndarray
    emission_KxV: np.ndarray
    length: int

    @property
    def num_items(self) -> int:
        return int(self.emission_KxV.shape[1])

    @property
    def num_interests(self) -> int:
        return int(self.emission_KxV.shape[0])


def make_hmm(num_items: int = 1000, num_interests: int = 64, *, length: int = 20, p_stay: float = 0.9,
             zipf_s: float = 1.0, mix: float = 0.1, seed: int = 0) -> InterestHMM:
    """The model of the module docstring, all random choices from `seed`."""
    if not 1 <= num_interests <= num_items:
        raise ConfigError(f"num_interests must lie in 1..num_items={num_items}, got {num_interests}.")
    if length < 3:
        raise ConfigError(f"length must be >= 3 (leave-one-out needs 3 events per user), got {length}.")
    if not (0.0 <= p_stay <= 1.0 and 0.0 <= mix <= 1.0) or zipf_s < 0:
        raise ConfigError(f"need p_stay, mix in [0, 1] and zipf_s >= 0; got {p_stay}, {mix}, {zipf_s}.")
    rng = np.random.default_rng([seed, 2**31 - 1])
    ranks = rng.permutation(num_items) + 1
    pop_V = ranks.astype(np.float64) ** -zipf_s
    pop_V /= pop_V.sum()
    group_V = rng.permutation(np.arange(num_items) % num_interests)
    member_KxV = group_V[None, :] == np.arange(num_interests)[:, None]
    own_KxV = member_KxV * pop_V[None, :]
    own_KxV /= own_KxV.sum(axis=1, keepdims=True)
    emission = (1.0 - mix) * own_KxV + mix * pop_V[None, :]
    transition = p_stay * np.eye(num_interests) + (1.0 - p_stay) / num_interests
    return InterestHMM(np.full(num_interests, 1.0 / num_interests), transition, emission, length)


def sample_items(hmm: InterestHMM, num_users: int, rng: np.random.Generator) -> np.ndarray:
    """int32 [U, length] item ids 1..V of `num_users` independent histories."""
    cum_KxV = np.cumsum(hmm.emission_KxV, axis=1)
    cum_KxV[:, -1] = 1.0
    cum_trans = np.cumsum(hmm.transition_KxK, axis=1)
    cum_trans[:, -1] = 1.0
    state_U = np.searchsorted(np.cumsum(hmm.initial_K), rng.random(num_users) * (1 - 1e-12), side="right")
    items_UxL = np.empty((num_users, hmm.length), np.int32)
    for t in range(hmm.length):
        if t:
            state_U = _draw_rows(cum_trans, state_U, rng)
        items_UxL[:, t] = _draw_rows(cum_KxV, state_U, rng) + 1
    return items_UxL


def _draw_rows(cum_RxC: np.ndarray, rows_U: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per entry of rows_U from row rows_U[u] of the cumulative table."""
    u_U = rng.random(rows_U.size)
    cols = cum_RxC.shape[1]
    flat = (cum_RxC + np.arange(cum_RxC.shape[0])[:, None]).ravel()
    idx = np.searchsorted(flat, u_U + rows_U, side="right") - rows_U * cols
    return np.minimum(idx, cols - 1)


def known_answer_items(hmm: InterestHMM, num_users: int, seed: int) -> np.ndarray:
    """int32 [U, length]: users 0..U-1 of the stream of `seed` (block b of BLOCK_USERS from (seed, b))."""
    blocks = -(-num_users // BLOCK_USERS)
    out = [sample_items(hmm, BLOCK_USERS, np.random.default_rng([seed, b])) for b in range(blocks)]
    return np.concatenate(out)[:num_users] if out else np.zeros((0, hmm.length), np.int32)


def known_answer_sequences(num_users: int, num_items: int = 1000, *, seed: int = 0, name: str = NAME,
                           **hmm_kwargs: float) -> SequenceData:
    """`num_users` histories of make_hmm(num_items, seed=seed, **hmm_kwargs) as SequenceData (no timestamps)."""
    hmm = make_hmm(num_items, seed=seed, **hmm_kwargs)
    items = known_answer_items(hmm, num_users, seed)
    return SequenceData(
        name=name, num_items=num_items, num_users=num_users, items=items.ravel(), timestamps=None, ratings=None,
        user_offsets=np.arange(num_users + 1, dtype=np.int64) * hmm.length,
        source=f"known-answer(seed={seed}, V={num_items}, K={hmm.num_interests}, length={hmm.length}, {hmm_kwargs})",
    ).validate()


def predictive_log_probs(hmm: InterestHMM, items_UxL: np.ndarray) -> np.ndarray:
    """float64 [U, L]: log p(x_t | x_1..x_{t-1}) of each event under the model (forward algorithm,
    normalised at each step; Rabiner 1989 eqs. 19-20)."""
    alpha_UxK = np.broadcast_to(hmm.initial_K, (items_UxL.shape[0], hmm.num_interests))
    out = np.empty(items_UxL.shape, np.float64)
    for t in range(items_UxL.shape[1]):
        if t:
            alpha_UxK = alpha_UxK @ hmm.transition_KxK
        joint_UxK = alpha_UxK * hmm.emission_KxV[:, items_UxL[:, t] - 1].T
        p_U = joint_UxK.sum(axis=1)
        out[:, t] = np.log(p_U)
        alpha_UxK = joint_UxK / p_U[:, None]
    return out


@dataclasses.dataclass(frozen=True)
class KnownAnswer:
    """Bayes cross-entropy (nats) at one position: mean, standard error, number of histories."""

    position: int
    mean: float
    se: float
    count: int


def bayes_cross_entropy_of(hmm: InterestHMM, items_UxL: np.ndarray, position: int,
                           context: int | None = None) -> KnownAnswer:
    """Mean −log p(x_position | the `context` events before it) (1-based position; context None: all
    earlier events) over the given histories."""
    lo = 0 if context is None else max(position - 1 - context, 0)
    nll_U = -predictive_log_probs(hmm, items_UxL[:, lo:position])[:, -1]
    n = nll_U.size
    return KnownAnswer(position, float(nll_U.mean()), float(nll_U.std(ddof=1) / np.sqrt(n)), n)


def bayes_cross_entropy(hmm: InterestHMM, position: int, num_samples: int = 200_000, seed: int = 1,
                        context: int | None = None) -> KnownAnswer:
    """E[−log p(x_position | the `context` events before it)] by Monte Carlo over `num_samples` fresh
    histories (exact predictive per history); `seed` should differ from the training stream's."""
    items = sample_items(hmm, num_samples, np.random.default_rng([seed, 2**31 - 2]))
    return bayes_cross_entropy_of(hmm, items, position, context)


def unigram_cross_entropy(hmm: InterestHMM) -> float:
    """Entropy (nats) of the marginal item distribution: the best context-free predictor."""
    marginal_V = hmm.initial_K @ hmm.emission_KxV
    return float(-(marginal_V * np.log(marginal_V)).sum())
