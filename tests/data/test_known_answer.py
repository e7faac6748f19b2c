"""The known-answer generator: its Bayes cross-entropy against brute-force enumeration and Monte Carlo."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from scaling_rec.data import known_answer as ka
from scaling_rec.errors import ConfigError


def _brute_force_joint(hmm: ka.InterestHMM, seq: tuple[int, ...]) -> float:
    """p(x_1..x_n) by summing over every hidden path (no forward recursion)."""
    total = 0.0
    for path in itertools.product(range(hmm.num_interests), repeat=len(seq)):
        p = hmm.initial_K[path[0]] * hmm.emission_KxV[path[0], seq[0] - 1]
        for t in range(1, len(seq)):
            p *= hmm.transition_KxK[path[t - 1], path[t]] * hmm.emission_KxV[path[t], seq[t] - 1]
        total += p
    return total


def _exact_conditional_entropy(hmm: ka.InterestHMM, position: int) -> float:
    """H(X_position | X_1..X_{position-1}) by enumerating every sequence of `position` items."""
    items = range(1, hmm.num_items + 1)
    joint = {s: _brute_force_joint(hmm, s) for s in itertools.product(items, repeat=position)}
    h = 0.0
    for s, p in joint.items():
        prefix = sum(joint[s[:-1] + (i,)] for i in items)
        h -= p * np.log(p / prefix)
    return h


@pytest.fixture(scope="module")
def tiny() -> ka.InterestHMM:
    return ka.make_hmm(4, 2, length=4, p_stay=0.7, zipf_s=1.0, mix=0.3, seed=3)


def test_forward_predictive_equals_brute_force(tiny):
    seqs = np.array(list(itertools.product(range(1, 5), repeat=4)), np.int32)
    logp = ka.predictive_log_probs(tiny, seqs)
    for s, row in zip(seqs, logp, strict=True):
        np.testing.assert_allclose(row.sum(), np.log(_brute_force_joint(tiny, tuple(s))), rtol=1e-12)
    np.testing.assert_allclose(np.exp(logp[:, 0]).reshape(4, -1)[:, 0].sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(logp[:, 3]).reshape(-1, 4).sum(axis=1), 1.0, rtol=1e-12)  # x_4 given x_1..3


@pytest.mark.parametrize("position", [2, 4])
def test_monte_carlo_matches_enumeration(tiny, position):
    """The sampler and the forward filter together: the mean −log p of sampled sequences is the exact
    conditional entropy within 4 standard errors (and the SE is small enough to mean something)."""
    exact = _exact_conditional_entropy(tiny, position)
    mc = ka.bayes_cross_entropy(tiny, position, num_samples=200_000, seed=5)
    assert mc.se < 0.01 * exact
    assert abs(mc.mean - exact) < 4 * mc.se, (mc, exact)


def test_sampler_frequencies_match_the_model(tiny):
    """Empirical frequencies of whole sequences of 3 items match the brute-force joint probabilities."""
    items = ka.sample_items(tiny, 400_000, np.random.default_rng(0))[:, :3]
    codes = ((items[:, 0] - 1) * 4 + items[:, 1] - 1) * 4 + items[:, 2] - 1
    freq = np.bincount(codes, minlength=64) / len(codes)
    p = np.array([_brute_force_joint(tiny, s) for s in itertools.product(range(1, 5), repeat=3)])
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / len(codes)) + 1e-4)


def test_stream_is_prefix_stable_and_fresh():
    hmm = ka.make_hmm(50, 5, length=6, seed=1)
    a = ka.known_answer_items(hmm, 5000, seed=1)
    b = ka.known_answer_items(hmm, 9000, seed=1)
    np.testing.assert_array_equal(a, b[:5000])
    block = ka.BLOCK_USERS
    assert np.mean(np.all(b[:block] == b[block : 2 * block], axis=1)) < 0.01  # blocks are not copies
    assert not np.array_equal(a, ka.known_answer_items(hmm, 5000, seed=2))


def test_sequences_and_known_answer_order():
    data = ka.known_answer_sequences(300, 60, num_interests=6, length=8, seed=0)
    assert data.num_users == 300 and data.items.min() >= 1 and data.items.max() <= 60
    np.testing.assert_array_equal(np.diff(data.user_offsets), 8)
    hmm = ka.make_hmm(60, 6, length=8, seed=0)
    bayes = ka.bayes_cross_entropy(hmm, 7, num_samples=50_000).mean
    assert bayes < ka.unigram_cross_entropy(hmm) < np.log(60)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="length"):
        ka.make_hmm(10, 2, length=2)
    with pytest.raises(ConfigError, match="num_interests"):
        ka.make_hmm(10, 11)


def test_window_of_a_stationary_chain():
    """The predictive from the last c events of a long history has the conditional entropy of event c+1
    (the chain starts in its stationary law), and a longer context never hurts."""
    hmm = ka.make_hmm(40, 4, length=12, p_stay=0.8, mix=0.3, seed=2)
    late = ka.bayes_cross_entropy(hmm, 12, num_samples=100_000, seed=7, context=3)
    early = ka.bayes_cross_entropy(hmm, 4, num_samples=100_000, seed=8)
    assert abs(late.mean - early.mean) < 4 * np.hypot(late.se, early.se)
    full = ka.bayes_cross_entropy(hmm, 12, num_samples=100_000, seed=7)
    assert full.mean < late.mean


def test_the_known_answer_is_computed_on_the_users_the_loop_evaluates():
    """benchmarks.known_answer_report regenerates the first eval.max_users histories; they must be the
    loop's test examples (history window and target), or the floor would be another sample's."""
    from benchmarks.known_answer_report import known_answer
    from experiments.hstu.known_answer import get_config
    from scaling_rec.train.inputs import prepare

    c = get_config("quick")
    c.data.synthetic_users, c.eval.max_users = 600, 200
    test = prepare(c).test
    hmm = ka.make_hmm(c.data.synthetic_items, seed=c.seed)
    items = ka.known_answer_items(hmm, 200, c.seed)
    assert len(test) == 200
    for ex, row in zip(test, items, strict=True):
        np.testing.assert_array_equal(ex.items, row[-1 - c.data.max_len : -1])
        assert ex.targets[-1] == row[-1]
    info = known_answer(c.to_dict())
    assert info["eval_users"] == 200 and info["context"] == c.data.max_len
    expected = ka.bayes_cross_entropy_of(hmm, items, hmm.length, c.data.max_len).mean
    assert info["bayes_on_eval_targets"] == pytest.approx(expected)
    assert info["bayes_expected"] < info["unigram"] < info["chance"]
