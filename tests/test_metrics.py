"""Metrics against plain-numpy references: ranks (ties, exclusion, padding), K boundaries, expected metrics
over tie orders (a collapsed model scores like a random ranking), beam lists, SE, AUC and its ties,
logloss, codebooks."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling_rec import metrics

# Jitted once per shape: far cheaper on CPU than op-by-op eager dispatch of the same code.
_rank = jax.jit(metrics.rank_of_target, static_argnames="ties")
_usage = jax.jit(metrics.codebook_usage, static_argnums=1)

# ---------------------------------------------------------------------------- references


def _reference_ranks(scores, targets, exclude, ties):
    """Loop reference: mask excluded items (never the target) and padding to -inf, then count."""
    B, V = scores.shape
    out = np.zeros(B, np.float64)
    for b in range(B):
        s = scores[b].astype(np.float64).copy()
        s[0] = -np.inf
        if exclude is not None:
            for h in exclude[b]:
                if h > 0 and h != targets[b]:
                    s[h] = -np.inf
        keep = np.isfinite(s)
        keep[targets[b]] = False
        t = scores[b, targets[b]]
        greater = np.sum(s[keep] > t)
        equal = np.sum(s[keep] == t)
        out[b] = {"optimistic": greater, "pessimistic": greater + equal, "expected": greater + equal / 2}[ties]
    return out


def _reference_metrics(ranks, valid, ks):
    r = ranks[valid]
    per = {}
    for k in ks:
        per[f"hr@{k}"] = np.array([1.0 if x < k else 0.0 for x in r])
        per[f"ndcg@{k}"] = np.array([1.0 / math.log2(x + 2) if x < k else 0.0 for x in r])
    per["mrr"] = np.array([1.0 / (x + 1) for x in r])
    return per


def _auc_quadratic(labels, scores):
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _tied_scores(rng, B, V):
    """Integer-valued scores from a small range, so ties are frequent."""
    return rng.integers(0, 6, size=(B, V)).astype(np.float32)


# ---------------------------------------------------------------------------- ranks


@pytest.mark.parametrize("ties", ["optimistic", "pessimistic", "expected"])
@pytest.mark.parametrize("use_jit", [False, True])
def test_rank_matches_reference_with_ties_and_exclusion(ties, use_jit):
    rng = np.random.default_rng(0)
    B, V, H = 16, 41, 7
    scores = _tied_scores(rng, B, V)
    targets = rng.integers(1, V, size=B).astype(np.int32)
    exclude = rng.integers(0, V, size=(B, H)).astype(np.int32)  # zeros and duplicates included
    exclude[:4, 0] = targets[:4]  # the target is in the history: never excluded
    exclude[4:8, :] = 0  # all-padding histories
    fn = functools.partial(metrics.rank_of_target, ties=ties)
    if use_jit:
        fn = jax.jit(fn)
    got = np.asarray(fn(scores, targets, exclude))
    np.testing.assert_array_equal(got, _reference_ranks(scores, targets, exclude, ties))
    no_excl = np.asarray(fn(scores, targets))
    np.testing.assert_array_equal(no_excl, _reference_ranks(scores, targets, None, ties))
    assert got.dtype == (np.float32 if ties == "expected" else np.int32)


def test_rank_random_continuous_scores_all_conventions_agree():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(8, 100)).astype(np.float32)
    targets = rng.integers(1, 100, size=8)
    ranks = [np.asarray(_rank(scores, targets, ties=t)) for t in ("optimistic", "pessimistic")]
    np.testing.assert_array_equal(ranks[0], ranks[1])
    np.testing.assert_array_equal(ranks[0], _reference_ranks(scores, targets, None, "optimistic"))


def test_padding_column_is_never_ranked():
    scores = np.array([[100.0, 1.0, 3.0, 2.0], [100.0, 5.0, 5.0, 0.0]], np.float32)
    targets = np.array([3, 1], np.int32)
    np.testing.assert_array_equal(_rank(scores, targets, ties="optimistic"), [1, 0])
    np.testing.assert_array_equal(_rank(scores, targets, ties="pessimistic"), [1, 1])
    np.testing.assert_array_equal(_rank(scores, targets), [1.0, 0.5])


def test_exclusion_masks_history_but_not_target():
    scores = np.array([[0.0, 9.0, 8.0, 7.0, 1.0]], np.float32)
    targets = np.array([3], np.int32)
    assert int(_rank(scores, targets)[0]) == 2
    assert int(_rank(scores, targets, np.array([[1, 0, 0]]))[0]) == 1
    assert int(_rank(scores, targets, np.array([[1, 2, 3, 1]]))[0]) == 0
    # negative ids are ignored rather than wrapping around to the last item
    assert int(_rank(scores, targets, np.array([[-4, -1]]))[0]) == 2


def test_collapsed_model_and_nan_target():
    V = 11
    flat = np.zeros((2, V), np.float32)
    targets = np.array([4, 7], np.int32)
    np.testing.assert_array_equal(_rank(flat, targets, ties="optimistic"), [0, 0])
    np.testing.assert_array_equal(_rank(flat, targets, ties="pessimistic"), [V - 2] * 2)
    np.testing.assert_array_equal(_rank(flat, targets), [(V - 2) / 2] * 2)
    nan_target = np.arange(V, dtype=np.float32)[None, :].repeat(2, 0)
    nan_target[0, 4] = np.nan  # NaN target score: worst rank
    nan_target[1, 9] = np.nan  # NaN competitor: counted as below
    got = np.asarray(_rank(nan_target, targets, np.array([[2, 0], [0, 0]])))
    np.testing.assert_array_equal(got, [V - 3, 2])


def test_rank_realistic_size_runs_jitted():
    rng = np.random.default_rng(2)
    B, V = 512, 30_001
    scores = jnp.asarray(rng.normal(size=(B, V)).astype(np.float32))
    targets = jnp.asarray(rng.integers(1, V, size=B).astype(np.int32))
    exclude = jnp.asarray(rng.integers(0, V, size=(B, 50)).astype(np.int32))
    ranks = jax.jit(metrics.rank_of_target)(scores, targets, exclude)
    assert ranks.shape == (B,) and bool(jnp.all((ranks >= 0) & (ranks <= V - 2)))
    # a target scored above everything has rank 0
    top = scores.at[jnp.arange(B), targets].set(100.0)
    assert int(jax.jit(metrics.rank_of_target)(top, targets, exclude).max()) == 0


# ---------------------------------------------------------------------------- metrics from ranks


def test_k_boundaries_and_exact_values():
    ranks = jnp.array([0, 1, 9, 10, 49, 50, 199, 200], jnp.int32)
    valid = jnp.ones(8, bool)
    sums = metrics.ranking_metrics_from_ranks(ranks, valid, ks=(1, 10, 50, 200))
    assert float(sums["hr@1"]) == 1.0
    assert float(sums["hr@10"]) == 3.0  # ranks 0, 1, 9
    assert float(sums["hr@50"]) == 5.0
    assert float(sums["hr@200"]) == 7.0
    np.testing.assert_allclose(float(sums["ndcg@10"]), 1.0 + 1 / math.log2(3) + 1 / math.log2(11), rtol=1e-6)
    one = metrics.ranking_metrics_from_ranks(jnp.array([0]), jnp.array([True]), ks=(1,))
    assert float(one["ndcg@1"]) == 1.0 and float(one["mrr"]) == 1.0


@pytest.mark.parametrize("half", [False, True])
def test_metric_sums_match_reference_and_ignore_invalid(half):
    rng = np.random.default_rng(3)
    B = 300
    ranks = rng.integers(0, 400, size=B).astype(np.float32)
    if half:
        ranks = ranks + 0.5 * rng.integers(0, 2, size=B)
    valid = rng.random(B) < 0.7
    ranks_garbage = np.where(valid, ranks, -1.0).astype(np.float32)  # invalid rows: nonsense ranks
    ks = (10, 50, 200)
    sums = jax.jit(metrics.ranking_metrics_from_ranks, static_argnames="ks")(ranks_garbage, valid, ks=ks)
    ref = _reference_metrics(ranks, valid, ks)
    assert float(sums["num_examples"]) == valid.sum()
    for name, values in ref.items():
        np.testing.assert_allclose(float(sums[name]), values.sum(), rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(float(sums[name + "_sumsq"]), (values**2).sum(), rtol=1e-5, err_msg=name)
    assert set(sums) == {"num_examples"} | set(ref) | {n + "_sumsq" for n in ref}


def test_ranking_metrics_composes_rank_and_sums():
    rng = np.random.default_rng(4)
    scores = _tied_scores(rng, 32, 60)
    targets = rng.integers(1, 60, size=32)
    valid = np.arange(32) < 30
    fn = jax.jit(metrics.ranking_metrics, static_argnames=("ks", "ties"))
    for ties in ("optimistic", "pessimistic"):
        got = fn(scores, targets, valid, None, ks=(5,), ties=ties)
        ref = _reference_metrics(_reference_ranks(scores, targets, None, ties), valid, (5,))
        np.testing.assert_allclose(float(got["ndcg@5"]), ref["ndcg@5"].sum(), rtol=1e-5)


def _expected_reference(scores, targets, exclude, ks):
    """Brute force of the 'expected' rule: each metric averaged over every rank the target can take among
    its tied competitors (g .. g + e), from `_reference_metrics` of the optimistic and pessimistic ranks."""
    g = _reference_ranks(scores, targets, exclude, "optimistic").astype(int)
    e = _reference_ranks(scores, targets, exclude, "pessimistic").astype(int) - g
    per = {name: np.zeros(len(g)) for name in _reference_metrics(np.zeros(1), np.ones(1, bool), ks)}
    for b in range(len(g)):
        positions = np.arange(g[b], g[b] + e[b] + 1, dtype=np.float64)
        for name, values in _reference_metrics(positions, np.ones(len(positions), bool), ks).items():
            per[name][b] = values.mean()
    return per


@pytest.mark.parametrize("with_exclusion", [False, True])
def test_expected_rule_is_the_mean_over_tie_orders(with_exclusion):
    rng = np.random.default_rng(5)
    B, V = 48, 50
    scores = _tied_scores(rng, B, V)
    targets = rng.integers(1, V, size=B).astype(np.int32)
    exclude = rng.integers(0, V, size=(B, 6)).astype(np.int32) if with_exclusion else None
    valid = np.ones(B, bool)
    ks = (1, 5, 10, 200)
    got = jax.jit(metrics.ranking_metrics, static_argnames=("ks", "ties"))(scores, targets, valid, exclude, ks=ks)
    ref = _expected_reference(scores, targets, exclude, ks)
    for name, values in ref.items():
        np.testing.assert_allclose(float(got[name]), values.sum(), rtol=2e-5, err_msg=name)
        np.testing.assert_allclose(float(got[name + "_sumsq"]), (values**2).sum(), rtol=2e-5, err_msg=name)
    equal = _reference_ranks(scores, targets, exclude, "pessimistic") - _reference_ranks(
        scores, targets, exclude, "optimistic")
    assert float(got["tie_fraction"]) == np.sum(equal > 0)


def test_collapsed_model_scores_like_a_random_ranking_not_perfectly():
    """Issue 14: every item scored equally (loss = ln V, HSTU at lr 1e30) gave HR@10 = NDCG@10 = MRR = 1.0."""
    B, V = 6, 129
    flat = np.full((B, V), 0.25, np.float32)
    targets = np.arange(1, B + 1) * 20
    sums = metrics.ranking_metrics(flat, targets, np.ones(B, bool), ks=(10, 200))
    mean = {k: float(v) / B for k, v in sums.items()}
    n = V - 1  # the target's rank is uniform on 0 .. V - 2
    assert mean["hr@10"] == pytest.approx(10 / n) and mean["hr@200"] == pytest.approx(1.0)
    assert mean["ndcg@10"] == pytest.approx(sum(1 / math.log2(r + 2) for r in range(10)) / n, rel=1e-6)
    assert mean["mrr"] == pytest.approx(sum(1 / (r + 1) for r in range(n)) / n, rel=1e-5)
    assert mean["tie_fraction"] == 1.0 and mean["tied_share"] == 1.0
    gamed = metrics.ranking_metrics(flat, targets, np.ones(B, bool), ks=(10,), ties="optimistic")
    assert float(gamed["hr@10"]) / B == 1.0  # what the old default reported
    assert float(metrics.ranking_metrics(flat, targets, np.ones(B, bool), ks=(10,), ties="pessimistic")["hr@10"]) == 0


def test_without_ties_every_rule_gives_identical_sums():
    rng = np.random.default_rng(6)
    scores = rng.normal(size=(64, 300)).astype(np.float32)
    targets = rng.integers(1, 300, size=64)
    valid = np.arange(64) < 60
    fn = jax.jit(metrics.ranking_metrics, static_argnames=("ks", "ties"))
    got = {t: jax.device_get(fn(scores, targets, valid, None, ks=(10, 50), ties=t))
           for t in ("expected", "optimistic", "pessimistic")}
    assert got["expected"] == got["optimistic"] == got["pessimistic"]
    assert float(got["expected"]["tie_fraction"]) == 0.0 and float(got["expected"]["tied_share"]) == 0.0


def test_beam_ranks_ties_within_and_at_the_end_of_the_list():
    items = np.array([[5, 7, 9, 2], [5, 7, 9, 2], [5, 7, 9, 2], [5, 7, 9, 0], [5, 7, 9, 2]], np.int32)
    scores = np.array([[-1.0, -2.0, -2.0, -3.0],   # target 9 ties with 7 inside the list: rank 1 or 2
                       [-1.0, -2.0, -3.0, -3.0],   # target 9 ties with the last item: the tie may go on
                       [-1.0, -1.0, -1.0, -1.0],   # collapsed: every beam equal
                       [-1.0, -2.0, -3.0, -np.inf],  # fewer items than beams, no tie
                       [-1.0, -2.0, -3.0, -4.0]], np.float32)  # target 4 not listed
    targets = np.array([9, 9, 9, 9, 4], np.int32)
    greater, tied, tie_at_target = (np.asarray(x) for x in metrics.beam_rank_counts(items, scores, targets))
    np.testing.assert_array_equal(greater, [1, 4, 4, 2, 4])
    np.testing.assert_array_equal(tied, [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(tie_at_target, [True, True, True, False, False])
    sums = metrics.beam_ranking_metrics(items, scores, targets, np.ones(5, bool), ks=(2, 3))
    assert float(sums["hr@2"]) == pytest.approx(0.5)  # only the first row, half of its two orders
    assert float(sums["hr@3"]) == pytest.approx(2.0)  # rows 0 and 3
    assert float(sums["tie_fraction"]) == 3.0
    assert float(sums["tied_share"]) == 1.0  # the collapsed row; the others' first item stands alone


def test_collapsed_beams_hit_nothing_and_untied_beams_match_plain_ranks():
    from scaling_rec.models.beam_search import ranks_in_beams

    items = np.tile(np.arange(1, 11, dtype=np.int32), (4, 1))
    targets = np.array([1, 3, 10, 11], np.int32)
    flat = metrics.beam_ranking_metrics(items, np.zeros((4, 10), np.float32), targets, np.ones(4, bool), ks=(5, 10))
    assert float(flat["hr@10"]) == 0.0 and float(flat["tied_share"]) == 4.0
    distinct = -np.arange(10, dtype=np.float32)[None, :].repeat(4, 0)
    got = jax.device_get(metrics.beam_ranking_metrics(items, distinct, targets, np.ones(4, bool), ks=(5, 10)))
    plain = jax.device_get(metrics.ranking_metrics_from_ranks(ranks_in_beams(items, targets), np.ones(4, bool),
                                                              ks=(5, 10)))
    assert {k: v for k, v in got.items() if not k.startswith("tie")} == plain


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="ties"):
        metrics.rank_of_target(np.zeros((2, 3)), np.ones(2, np.int32), ties="random")
    with pytest.raises(ValueError, match="ties"):
        metrics.ranking_metrics(np.zeros((2, 3)), np.ones(2, np.int32), np.ones(2, bool), ties="half")
    with pytest.raises(ValueError, match="ks"):
        metrics.ranking_metrics_from_ranks(jnp.zeros(3), jnp.ones(3, bool), ks=(0,))
    with pytest.raises(ValueError, match=r"\[B\]"):
        metrics.ranking_metrics_from_ranks(jnp.zeros(3), jnp.ones(4, bool))


# ---------------------------------------------------------------------------- accumulation, SE


def test_standard_error_formula_by_hand():
    # x = [0, 1, 1, 0]: mean 1/2, sample variance 1/3, SE = sqrt(1/3 / 4)
    mean, se = metrics.mean_and_standard_error(2.0, 2.0, 4)
    assert mean == 0.5 and se == pytest.approx(math.sqrt(1 / 12))
    assert math.isnan(metrics.mean_and_standard_error(1.0, 1.0, 1)[1])
    with pytest.raises(ValueError, match="no valid examples"):
        metrics.mean_and_standard_error(0.0, 0.0, 0)


def test_accumulator_over_batches_equals_one_pass():
    rng = np.random.default_rng(5)
    all_ranks, all_valid = [], []
    acc = metrics.MetricAccumulator()
    for _ in range(5):
        ranks = rng.integers(0, 300, size=64).astype(np.int32)
        valid = rng.random(64) < 0.8
        acc.update(metrics.ranking_metrics_from_ranks(ranks, valid))
        all_ranks.append(ranks)
        all_valid.append(valid)
    res = acc.result()
    ref = _reference_metrics(np.concatenate(all_ranks), np.concatenate(all_valid), metrics.DEFAULT_KS)
    n = int(np.concatenate(all_valid).sum())
    assert res["num_examples"] == n
    for name, values in ref.items():
        np.testing.assert_allclose(res[name], values.mean(), rtol=1e-5, err_msg=name)
        se = values.std(ddof=1) / math.sqrt(n)
        np.testing.assert_allclose(res[name + "_se"], se, rtol=1e-4, err_msg=name)
    with pytest.raises(ValueError, match="no valid examples"):
        metrics.MetricAccumulator().result()


# ---------------------------------------------------------------------------- CTR


def test_auc_hand_cases():
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert metrics.auc([0, 1], [0.5, 0.5]) == 0.5
    assert metrics.auc([1, 0, 1], [2.0, 1.0, 1.0]) == 0.75  # one win, one tie
    assert metrics.auc([0, 0, 1], [3.0, 2.0, 1.0]) == 0.0


def test_auc_matches_quadratic_reference_with_ties():
    rng = np.random.default_rng(6)
    for n, levels in [(50, 3), (200, 20), (300, 10_000)]:
        labels = rng.integers(0, 2, size=n)
        scores = rng.integers(0, levels, size=n) / levels
        assert metrics.auc(labels, scores) == pytest.approx(_auc_quadratic(labels, scores), abs=1e-12)


def test_auc_rejects_degenerate_inputs():
    with pytest.raises(ValueError, match="both classes"):
        metrics.auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        metrics.auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="0/1"):
        metrics.auc([0, 2], [0.1, 0.2])


def test_auc_tie_stats_and_constant_predictions():
    y = np.array([0, 1, 1, 0, 1])
    assert metrics.auc_tie_stats(y, [0.1, 0.2, 0.3, 0.4, 0.5]) == {"tied_share": 0.0, "tie_fraction": 0.0}
    # one tied (positive, negative) pair out of 6: the scores 0.2 of examples 0 and 1
    assert metrics.auc_tie_stats(y, [0.2, 0.2, 0.3, 0.1, 0.5]) == {"tied_share": pytest.approx(1 / 6),
                                                                    "tie_fraction": pytest.approx(2 / 5)}
    constant = np.full(5, 3.0)  # a collapsed CTR model: AUC exactly chance, every pair tied
    assert metrics.auc(y, constant) == 0.5
    assert metrics.auc_tie_stats(y, constant) == {"tied_share": 1.0, "tie_fraction": 1.0}
    assert metrics.logloss_from_logits(y, np.zeros(5)) == pytest.approx(math.log(2))


def test_logloss_hand_cases_and_clip():
    assert metrics.logloss([1, 0], [0.9, 0.2]) == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2)
    assert metrics.logloss([1, 0], [0.0, 1.0]) == pytest.approx(-math.log(1e-7), rel=1e-9)
    assert metrics.logloss([1, 0], [0.0, 1.0], eps=1e-3) == pytest.approx(-math.log(1e-3), rel=1e-9)
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=3.0, size=100)
    labels = rng.integers(0, 2, size=100)
    probs = 1.0 / (1.0 + np.exp(-logits))
    ref = -np.mean([math.log(p) if y else math.log(1 - p) for p, y in zip(probs, labels, strict=True)])
    assert metrics.logloss(labels, probs) == pytest.approx(ref, rel=1e-9)
    assert metrics.logloss_from_logits(labels, logits) == pytest.approx(ref, rel=1e-9)
    assert metrics.logloss_from_logits([1, 0], [-1000.0, 1000.0]) == 1000.0  # exact, no overflow


# ---------------------------------------------------------------------------- codebooks


def test_codebook_usage_hand_case():
    codes = np.array([[0, 1], [0, 2], [1, 3], [1, 3]])
    out = _usage(codes, 4)
    np.testing.assert_allclose(out["usage_L"], [0.5, 0.75])
    # level 0: (1/2, 1/2) -> perplexity 2; level 1: (1/4, 1/4, 1/2) -> exp(1.5 log 2) = 2^1.5
    np.testing.assert_allclose(out["perplexity_L"], [2.0, 2.0**1.5], rtol=1e-6)
    uniform = np.arange(16)[:, None] % 8
    np.testing.assert_allclose(_usage(uniform, 8)["perplexity_L"], [8.0], rtol=1e-6)
    one_code = _usage(np.zeros((5, 3), np.int32), 8)
    np.testing.assert_allclose(one_code["perplexity_L"], [1.0] * 3)
    np.testing.assert_allclose(one_code["usage_L"], [1 / 8] * 3)


def test_collision_rate():
    assert metrics.collision_rate(np.array([[1, 2], [1, 2], [1, 3], [2, 2]])) == 0.5
    assert metrics.collision_rate(np.array([[1, 2, 0], [1, 2, 1]])) == 0.0
    assert metrics.collision_rate(np.zeros((3, 2))) == 1.0
    rng = np.random.default_rng(8)
    codes = rng.integers(0, 3, size=(200, 3))
    tuples = [tuple(c) for c in codes]
    ref = np.mean([tuples.count(t) > 1 for t in tuples])
    assert metrics.collision_rate(codes) == ref
