"""The TIGER task of the training engine: item content -> semantic IDs -> seq2seq training with teacher
forcing -> beam-search evaluation.

Run directory (docs/CONTRACTS.md): the engine's, plus `semantic_ids.npz`. Protocol (Rajput et al. 2023,
Sec. 4): leave-one-out on the 5-core sequences (users with < 3 events dropped and counted), histories capped at
the last `data.max_items` items; every prefix of a training sequence is an example (history -> next item);
Recall@K / NDCG@K over all items from the constrained beam search (a target not among the W beams has rank W;
ties: metrics.beam_rank_counts; a run whose beams all tie is 'degenerate'). `train.time_limit_s` (or `max_steps`
of a call) stops with a 'partial' result that the next call resumes; `train.steps_per_call` = K > 1 runs K steps
per jitted call (same updates, fewer host round trips). Beam search is costly, so the task is tested at the end
(engine.Task.test_at_end): the parameters of the best validation NDCG@max(ks) are kept in `best/` and tested
then, with the last ones (result['best']: step, valid, test; result['eval']: the last step's test).
`eval.valid_users` / `eval.test_users` > 0 evaluate a seeded uniform sample of users (`eval_subset`), and
result['popularity_test'] is the most-popular-items floor on the same test users.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from scaling_rec import tiger_config
from scaling_rec.config import check_mesh
from scaling_rec.data.amazon_content import encode_items, load_item_content
from scaling_rec.data.registry import load_sequences
from scaling_rec.data.sequences import SequenceData
from scaling_rec.data.sources import cache_dir
from scaling_rec.data.splits import leave_one_out
from scaling_rec.flops import TRAIN_MULTIPLIER, param_counts, tiger_forward_flops
from scaling_rec.io import atomic_write_json
from scaling_rec.metrics import MetricAccumulator, beam_ranking_metrics, ranking_metrics_from_ranks
from scaling_rec.models.beam_search import build_prefix_table, make_search
from scaling_rec.models.rqvae import SemanticIds, semantic_ids
from scaling_rec.models.tiger import Tiger, history_tokens, model_spec, repeat_context
from scaling_rec.train import engine
from scaling_rec.train.logging import progress
from scaling_rec.train.step import TrainState


@dataclasses.dataclass(frozen=True, eq=False)
class Examples:
    """(history, target) pairs: history_BxS int32 encoder tokens, targets_B int32 items, users_B int64."""

    history_BxS: np.ndarray
    targets_B: np.ndarray
    users_B: np.ndarray


def training_pairs(train: SequenceData, max_items: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Every prefix of every training sequence: (histories of <= max_items items, next items, user index)."""
    hist, targets, users = [], [], []
    for u in range(train.num_users):
        seq = train.user_items(u)
        for i in range(1, len(seq)):
            hist.append(seq[max(0, i - max_items) : i])
            targets.append(seq[i])
            users.append(u)
    return hist, np.array(targets, np.int32), np.array(users, np.int64)


def prepare_data(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Sequences -> leave-one-out; reports users dropped for having < 3 events (count and events)."""
    data = load_sequences(config.data.name, config.data.data_dir or None, download=False)
    split = leave_one_out(data)
    if split.num_dropped_users:
        progress(f"[tiger] dropped {split.num_dropped_users} users with < 3 interactions "
                 f"({split.num_dropped_events} events); leave-one-out needs 3 (train, valid, test).")
    return {"data": data, "split": split}


def load_or_make_ids(config: ml_collections.ConfigDict, run_dir: pathlib.Path, num_items: int, *,
                     write: bool = True) -> SemanticIds:
    """The run's semantic IDs: run_dir/semantic_ids.npz if present, else a shared cache keyed by the content
    and ids config, else computed (content -> encoder -> tokenizer, seeded: the same on every process) and,
    when `write`, saved in both places."""
    run_file = run_dir / "semantic_ids.npz"
    stats_file = run_dir / "semantic_ids_stats.json"
    if run_file.exists() and stats_file.exists():
        return SemanticIds.load(run_file, json.loads(stats_file.read_text()))
    content = load_item_content(config.data.name, config.data.data_dir or None, num_items=num_items)
    key = tiger_config.run_id(ml_collections.ConfigDict({"ids": config.ids.to_dict(), "seed": config.seed,
                                                          "enc": [config.data.encoder, config.data.encoder_dim],
                                                          "content": content.fingerprint()}))
    cached = cache_dir() / "semantic_ids" / f"{config.data.name}_{config.ids.method}_{key}.npz"
    cached_stats = cached.with_suffix(".json")
    if cached.exists() and cached_stats.exists():
        ids = SemanticIds.load(cached, json.loads(cached_stats.read_text()))
    else:
        t0 = time.time()
        x = encode_items(content, config.data.encoder, config.data.encoder_dim, seed=config.seed)
        i = config.ids
        ids = semantic_ids(x, i.method, levels=i.levels, codebook_size=i.codebook_size, seed=config.seed,
                           rqvae_steps=i.rqvae_steps, rqvae_batch=i.rqvae_batch, rqvae_lr=i.rqvae_lr, latent=i.latent,
                           beta=i.beta)
        ids.stats.update({"content": content.summary(), "encoder": config.data.encoder,
                          "encoder_dim": config.data.encoder_dim, "seconds": time.time() - t0})
        if write:
            ids.save(cached)
            atomic_write_json(cached_stats, ids.stats)
    if write:
        ids.save(run_file)
        atomic_write_json(stats_file, ids.stats)
    return ids


def eval_subset(n: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of the evaluation users: all `n` when limit <= 0 or limit >= n, else a seeded uniform
    sample of `limit` (the same for every split of one seed). The first users of the 5-core files are not a
    fair sample: popularity reaches 64% of its all-user Recall@10 on the first 1,500 Beauty users."""
    if limit <= 0 or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 20230519]).choice(n, limit, replace=False))


def make_examples(config, ids: SemanticIds, hist: list[np.ndarray], targets: np.ndarray, users: np.ndarray,
                  keep: np.ndarray | None = None) -> Examples:
    """Encoder inputs of (history, target) pairs; only the pairs `keep` (indices) when given."""
    if keep is not None:
        hist, targets, users = [hist[i] for i in keep], targets[keep], users[keep]
    tok = history_tokens(ids.codes, hist, users, ids.vocab_sizes, config.model.user_buckets, config.data.max_items)
    return Examples(tok, targets, users)


def popularity_metrics(train: SequenceData, targets: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """Recall@K / NDCG@K of recommending the most frequent training items to everyone (a floor), for the
    target items `targets` [U], over items 1..num_items. Items of equal count are tied: each metric is its
    expectation over their random order (the rule of scaling_rec.metrics), so an unseen target ranks among
    all unseen items, not by its id."""
    counts = np.sort(np.bincount(train.items, minlength=train.num_items + 1)[1:])
    target_counts = np.bincount(train.items, minlength=train.num_items + 1)[targets]
    above = np.searchsorted(counts, target_counts, side="right")
    greater = counts.size - above
    tied = above - np.searchsorted(counts, target_counts, side="left") - 1
    sums = ranking_metrics_from_ranks(greater, np.ones(len(targets), bool), ks, tied_B=tied)
    n = float(sums["num_examples"])
    out = {f"recall@{k}": float(sums[f"hr@{k}"]) / n for k in ks}
    out.update({f"ndcg@{k}": float(sums[f"ndcg@{k}"]) / n for k in ks})
    return out


def eval_pairs(split_part: Any, max_items: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(histories of <= max_items items, targets, user index) of a valid/test split. The user index is the
    user's position among the kept users, as in `training_pairs` (split.train, valid and test hold the same
    users in the same order): split_part.user_index counts the users leave-one-out dropped, so after a dropped
    user it gave every later user another user's token at evaluation."""
    h = split_part.history
    return ([h.user_items(u)[-max_items:] for u in range(h.num_users)], split_part.targets.astype(np.int32),
            np.arange(h.num_users, dtype=np.int64))


def train_batch(ex: Examples, idx: np.ndarray) -> dict[str, np.ndarray]:
    """The host batch of examples `idx` [B] (or [B, K]: K steps' batches side by side, for a multi-step
    call): history_BxS int32 encoder tokens ([B, K, S]), targets_B int32 items ([B, K])."""
    return {"history_BxS": ex.history_BxS[idx], "targets_B": ex.targets_B[idx]}


def code_xent(logits_BxLxV: jax.Array, codes_BxL: jax.Array, vocab_sizes: tuple[int, ...],
              label_smoothing: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """(objective_BxL, xent_BxL) in nats: the cross-entropy of each code and the objective trained on.

    With label_smoothing = e > 0 the target of position p is (1 - e) on the code plus e spread uniformly over
    that position's vocab_sizes[p] codes (Szegedy et al. 2016, Sec. 7), not over the padded V_max: the
    model's logits past V_p are -1e9 (scaling_rec.models.tiger), which a uniform target over V_max would
    make infinite. At e = 0 the objective is the cross-entropy itself.
    """
    xent_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, codes_BxL)
    if not label_smoothing:
        return xent_BxL, xent_BxL
    sizes_1xLx1 = jnp.asarray(vocab_sizes)[None, :, None]
    valid_1xLxV = jnp.arange(logits_BxLxV.shape[-1])[None, None, :] < sizes_1xLx1
    logp_BxLxV = jax.nn.log_softmax(logits_BxLxV, axis=-1)
    uniform_BxL = -jnp.where(valid_1xLxV, logp_BxLxV, 0.0).sum(-1) / sizes_1xLx1[..., 0].astype(jnp.float32)
    return (1.0 - label_smoothing) * xent_BxL + label_smoothing * uniform_BxL, xent_BxL


def make_loss(graphdef: nnx.GraphDef, codes_table: np.ndarray, vocab_sizes: tuple[int, ...] = (),
              label_smoothing: float = 0.0) -> engine.LossFn:
    """The engine's loss: teacher forcing on the target items' codes (codes_table: int32 [num_items + 1, L],
    each item's codes, padding row 0), `code_xent` with `label_smoothing` (which needs the IDs'
    `vocab_sizes`, one per position; ValueError without them); the metrics are 'loss' (the mean
    objective in nats per code, the cross-entropy when label_smoothing = 0) and 'xent_by_position' float32
    [L] (the plain cross-entropy, comparable across label smoothings)."""

    def loss_fn(params: nnx.State, rest: nnx.State, batch: dict[str, jax.Array], key: jax.Array):
        codes_BxL = jnp.take(codes_table, batch["targets_B"], axis=0)
        logits_BxLxV = nnx.merge(graphdef, params, rest)(batch["history_BxS"], codes_BxL, key)
        objective_BxL, xent_BxL = code_xent(logits_BxLxV, codes_BxL, vocab_sizes, label_smoothing)
        loss = objective_BxL.mean()
        return loss, ({"loss": loss, "xent_by_position": xent_BxL.mean(0)}, rest)

    if label_smoothing and len(vocab_sizes) != codes_table.shape[1]:
        raise ValueError(f"label_smoothing={label_smoothing} needs one vocab size per ID position "
                         f"({codes_table.shape[1]}); got vocab_sizes={vocab_sizes}.")
    return loss_fn


class TigerTask(engine.Task):
    """Data: the sequences' leave-one-out split (`prepare_data`); the run's semantic IDs are made (or read)
    once the run directory exists; FLOPs: `flops.tiger_forward_flops` x TRAIN_MULTIPLIER."""

    schema = tiger_config
    test_at_end = True

    def __init__(self, config: ml_collections.ConfigDict, data: dict[str, Any], run_dir: pathlib.Path,
                 main: bool) -> None:
        super().__init__(config, data, run_dir, main)
        split, mi = data["split"], config.data.max_items
        self.ids = ids = load_or_make_ids(config, run_dir, data["data"].num_items, write=main)
        progress(f"[tiger] ids {ids.method}: vocab {ids.vocab_sizes}, collision rate "
                 f"{ids.stats['collision_rate']:.4f}, usage {ids.stats['codebook_usage']}")
        self.train_ex = make_examples(config, ids, *training_pairs(split.train, mi))
        n_eval = split.test.history.num_users
        self.examples = {
            "valid": make_examples(config, ids, *eval_pairs(split.valid, mi),
                                   eval_subset(n_eval, config.eval.valid_users, config.seed)),
            "test": make_examples(config, ids, *eval_pairs(split.test, mi),
                                  eval_subset(n_eval, config.eval.test_users, config.seed))}
        self.n_train = len(self.train_ex.targets_B)
        self.select_metric = f"ndcg@{max(config.eval.ks)}"

    @classmethod
    def validate(cls, config: ml_collections.ConfigDict) -> None:
        tiger_config.validate(config)
        check_mesh(config, jax.device_count())

    @staticmethod
    def load(config: ml_collections.ConfigDict) -> dict[str, Any]:
        return prepare_data(config)

    def model(self) -> nnx.Module:
        return Tiger(model_spec(self.config), self.ids.vocab_sizes, nnx.Rngs(params=self.config.seed))

    def counts(self, abstract: nnx.Module) -> tuple[int, int]:
        counts = param_counts(abstract)
        return counts.n_dense, counts.n_emb

    def plan(self, abstract: nnx.Module) -> engine.Plan:
        t = self.config.train
        fwd = tiger_forward_flops(self.config, self.ids.length)
        return engine.Plan.uniform(t.num_steps, self.n_train / t.batch_size, t.eval_every, t.batch_size,
                                   TRAIN_MULTIPLIER * fwd)

    def loss(self, graphdef: nnx.GraphDef) -> engine.LossFn:
        return make_loss(graphdef, np.maximum(self.ids.codes, 0), self.ids.vocab_sizes,
                         self.config.train.label_smoothing)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        return train_batch(self.train_ex, engine.epoch_rows(self.config.seed, step, self.n_train,
                                                            self.config.train.batch_size))

    def start(self, graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh) -> None:
        """The constrained beam search over the items' code prefixes, on (params, rest)."""
        W, EB = self.config.eval.beam_width, self.config.eval.batch_size
        table = build_prefix_table(self.ids.codes[1:], vocab=max(self.ids.vocab_sizes))
        self.children, self.item_of_node = table.arrays()

        def encode_fn(variables, hist):
            return repeat_context(nnx.merge(graphdef, *variables).context(hist), W), variables

        def logits_fn(ctx, tokens, step):
            c, variables = ctx
            return nnx.merge(graphdef, *variables).step_logits(c, tokens, step)

        self.search = make_search(encode_fn, logits_fn, batch_size=EB, beam_width=W, length=self.ids.length)

    def evaluate(self, state: TrainState, split: str) -> dict[str, float]:
        ex, EB = self.examples[split], self.config.eval.batch_size
        acc = MetricAccumulator()
        for s in range(0, len(ex.targets_B), EB):
            hist, tgt = ex.history_BxS[s : s + EB], ex.targets_B[s : s + EB]
            valid = np.arange(EB) < len(tgt)
            hist = np.pad(hist, ((0, EB - len(tgt)), (0, 0)))
            tgt = np.pad(tgt, (0, EB - len(tgt)))
            items, scores, _ = self.search((state.params, state.rest), jnp.asarray(hist), self.children,
                                           self.item_of_node)
            acc.update(beam_ranking_metrics(items, scores, jnp.asarray(tgt), jnp.asarray(valid),
                                            tuple(self.config.eval.ks)))
        # MRR is left out: over a truncated list of W beams it is not the full-ranking MRR.
        return {k.replace("hr@", "recall@"): v for k, v in acc.result().items() if not k.startswith("mrr")}

    def log_fields(self, metrics: dict[str, np.ndarray]) -> dict[str, Any]:
        return {"xent_by_position": np.asarray(metrics["xent_by_position"]).round(4).tolist()}

    def describe(self) -> str:
        return f"TIGER {self.config.model.arch}, train pairs={self.n_train:,}"

    def result_fields(self, state: TrainState | None, meta: dict[str, Any]) -> dict[str, Any]:
        c, ids, split = self.config, self.ids, self.data["split"]
        return {
            "arch": c.model.arch, "encoder": c.data.encoder, "encoder_dim": c.data.encoder_dim,
            "ids_method": ids.method, "ids_stats": {k: v for k, v in ids.stats.items() if k != "rqvae_history"},
            "id_vocab_sizes": list(ids.vocab_sizes), "unique_examples": self.n_train, "best": meta.get("best"),
            "popularity_test": popularity_metrics(split.train, self.examples["test"].targets_B, tuple(c.eval.ks)),
            "num_valid_users_in_curve": len(self.examples["valid"].targets_B),
            "num_test_users": len(self.examples["test"].targets_B), "dropped_users": split.num_dropped_users,
            "beam_width": c.eval.beam_width,
        }


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       max_steps: int | None = None) -> dict[str, Any]:
    """Runs, resumes or returns the finished TIGER run of `config` (engine.run); `max_steps`: stop this call
    with a 'partial' result after that many steps (rounded up to whole calls)."""
    return engine.run(TigerTask, config, workdir, partial_after_steps=max_steps)
