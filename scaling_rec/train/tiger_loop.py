"""One TIGER run: item content -> semantic IDs -> seq2seq training with teacher forcing -> beam-search eval.

Run directory (docs/CONTRACTS.md): `<workdir>/runs/<run_id>/{config.json, metrics.jsonl, result.json, ckpt/,
semantic_ids.npz}`. Protocol (Rajput et al. 2023, Sec. 4): leave-one-out on the 5-core sequences (users
with < 3 events dropped and counted), histories capped at the last `data.max_items` items; every prefix of
a training sequence is an example (history -> next item); Recall@K / NDCG@K over all items from the
constrained beam search (a target not among the W beams has rank W; ties: metrics.beam_rank_counts; a run
whose beams all tie is 'degenerate'). Training is resumable in chunks:
`train.time_limit_s` (or `max_steps` of a call) stops at a step boundary with a checkpoint, the learning
curve so far and a test evaluation of where the run stands (status 'partial'); the next call resumes.
Batches and dropout are keyed by the global step, so a resumed run equals an uninterrupted one; with
`train.steps_per_call` = K > 1 each jitted call runs K steps (same updates, fewer host round trips).
Model selection: the parameters of the best validation NDCG@max(ks) are kept in `best/` and tested at the
end as well (result['best']: step, valid, test); result['eval'] is the last step's test. `eval.valid_users`
/ `eval.test_users` > 0 evaluate a seeded uniform sample of users (`eval_subset`), and result
['popularity_test'] is the most-popular-items floor on the same test users.
Parallelism as in the sequence loop: parameters sharded on the mesh of `config.mesh` by the logical-axis
rules (the token table row-split), each training batch split over ('data', 'fsdp'); `train.batch_size` must
divide over data x fsdp (ConfigError before anything is written or compiled).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Callable
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
from scaling_rec.io import atomic_write_json, read_run_result
from scaling_rec.metrics import MetricAccumulator, beam_ranking_metrics, ranking_metrics_from_ranks
from scaling_rec.models.beam_search import build_prefix_table, make_search
from scaling_rec.models.rqvae import SemanticIds, semantic_ids
from scaling_rec.models.tiger import Tiger, history_tokens, model_spec, repeat_context
from scaling_rec.parallel.mesh import make_mesh_from_config
from scaling_rec.parallel.rules import rules_for
from scaling_rec.parallel.sharding import create_sharded, init_opt_state, place_batch, replicated
from scaling_rec.provenance import data_provenance
from scaling_rec.train.bookkeeping import (
    best_valid,
    final_status,
    open_run_dir,
    resume,
    run_provenance,
    run_times,
    write_result,
)
from scaling_rec.train.checkpoint import Checkpointer
from scaling_rec.train.logging import RunLogger, progress
from scaling_rec.train.loop import FINISHED


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
    h = split_part.history
    return ([h.user_items(u)[-max_items:] for u in range(h.num_users)], split_part.targets.astype(np.int32),
            split_part.user_index)


def make_lr_schedule(train: ml_collections.ConfigDict) -> Callable[[jax.Array], jax.Array]:
    """Learning rate of a 0-based int step: linear warm-up over `warmup_steps`, then constant or, with
    `decay_start` > 0, inverse-square-root decay from step `decay_start` on (float32 scalar)."""

    def lr_schedule(step: jax.Array) -> jax.Array:
        s = step.astype(jnp.float32) + 1.0
        warm = jnp.minimum(1.0, s / max(train.warmup_steps, 1))
        if not train.decay_start:
            return train.learning_rate * warm
        return train.learning_rate * warm * jnp.sqrt(train.decay_start / jnp.maximum(s, train.decay_start))

    return lr_schedule


def make_optimizer(train: ml_collections.ConfigDict,
                   lr_schedule: Callable[[jax.Array], jax.Array]) -> optax.GradientTransformation:
    """Global-norm clipping (when `grad_clip` > 0), then AdamW with decoupled `weight_decay`."""
    return optax.chain(optax.clip_by_global_norm(train.grad_clip) if train.grad_clip > 0 else optax.identity(),
                       optax.adamw(lr_schedule, weight_decay=train.weight_decay))


def train_batch(ex: Examples, idx: np.ndarray) -> dict[str, np.ndarray]:
    """The host batch of examples `idx` [B] (or [B, K]: K steps' batches side by side, for a multi-step
    call): history_BxS int32 encoder tokens ([B, K, S]), targets_B int32 items ([B, K])."""
    return {"history_BxS": ex.history_BxS[idx], "targets_B": ex.targets_B[idx]}


def make_train_step(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, rest: nnx.State,
                    tx: optax.GradientTransformation, codes_table: jax.Array,
                    lr_schedule: Callable[[jax.Array], jax.Array], state_sharding: Any, steps: int = 1) -> Callable:
    """The jitted teacher-forcing step: step(state, batch) -> (state, metrics).

    state: {'params', 'opt', 'step'}, kept on `state_sharding` (a matching tree of shardings) in and out;
    batch: `train_batch` placed on the mesh (its [B] axis split over the data-parallel axes);
    codes_table: int32 [num_items + 1, L], each item's codes (padding row 0). Dropout is keyed by
    (config.seed, state['step']). Metrics: loss (mean cross-entropy in nats per code), grad_norm, lr
    (of this step) and xent_by_position float32 [L].
    steps > 1: one call runs `steps` consecutive steps in a `lax.scan` (one dispatch and one host-to-device
    copy instead of `steps`: the small model is otherwise bound by the host on a GPU); the batch leaves are
    [B, steps, ...] (step k's batch in column k, so the data-parallel split of B holds) and every metric
    gains a leading [steps] axis. The parameters follow the same sequence of updates as `steps` single calls.
    """
    base_key = jax.random.key(config.seed)

    def loss_fn(params: nnx.State, hist_BxS: jax.Array, codes_BxL: jax.Array,
                key: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits_BxLxV = nnx.merge(graphdef, params, rest)(hist_BxS, codes_BxL, key)
        xent_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, codes_BxL)
        return xent_BxL.mean(), xent_BxL

    def train_step(state: dict[str, Any], batch: dict[str, jax.Array]) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        key = jax.random.fold_in(base_key, state["step"])
        codes_BxL = jnp.take(codes_table, batch["targets_B"], axis=0)
        (loss, xent_BxL), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], batch["history_BxS"], codes_BxL, key)
        updates, opt = tx.update(grads, state["opt"], state["params"])
        new = {"params": optax.apply_updates(state["params"], updates), "opt": opt, "step": state["step"] + 1}
        return new, {"loss": loss, "grad_norm": optax.global_norm(grads), "lr": lr_schedule(state["step"]),
                     "xent_by_position": xent_BxL.mean(0)}

    def train_steps(state: dict[str, Any], batch: dict[str, jax.Array]) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        return jax.lax.scan(train_step, state, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), batch))

    fn = train_step if steps == 1 else train_steps
    return jax.jit(fn, in_shardings=(state_sharding, None), out_shardings=(state_sharding, None))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       max_steps: int | None = None) -> dict[str, Any]:
    """Runs, resumes or returns the finished TIGER run of `config` (module docstring)."""
    tiger_config.validate(config)
    check_mesh(config, jax.device_count())
    rid = tiger_config.run_id(config)
    run_dir = pathlib.Path(workdir) / "runs" / rid
    done = read_run_result(run_dir)
    if done is not None and done.get("status") in FINISHED:
        return done
    main = open_run_dir(run_dir, config)
    t_start = time.time()
    d = prepare_data(config)
    split, num_items = d["split"], d["data"].num_items
    ids = load_or_make_ids(config, run_dir, num_items, write=main)
    progress(f"[{rid}] ids {ids.method}: vocab {ids.vocab_sizes}, collision rate {ids.stats['collision_rate']:.4f}, "
             f"usage {ids.stats['codebook_usage']}")
    L = ids.length
    train_ex = make_examples(config, ids, *training_pairs(split.train, config.data.max_items))
    n_eval = split.test.history.num_users
    valid_ex = make_examples(config, ids, *eval_pairs(split.valid, config.data.max_items),
                             eval_subset(n_eval, config.eval.valid_users, config.seed))
    test_ex = make_examples(config, ids, *eval_pairs(split.test, config.data.max_items),
                            eval_subset(n_eval, config.eval.test_users, config.seed))
    codes_table = jnp.asarray(np.maximum(ids.codes, 0))
    spec = model_spec(config)
    mesh = make_mesh_from_config(config)
    model = create_sharded(lambda: Tiger(spec, ids.vocab_sizes, nnx.Rngs(params=config.seed)), mesh,
                           rules_for(config))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    counts = param_counts(model)
    n_dense, n_emb = counts.n_dense, counts.n_emb
    n_params = n_dense + n_emb
    t = config.train
    lr_schedule = make_lr_schedule(t)
    tx = make_optimizer(t, lr_schedule)
    state = {"params": params, "opt": init_opt_state(tx, params, mesh),
             "step": jax.device_put(jnp.asarray(0, jnp.int32), replicated(mesh))}
    K = t.steps_per_call
    train_step = make_train_step(config, graphdef, rest, tx, jax.device_put(codes_table, replicated(mesh)),
                                 lr_schedule, jax.tree.map(lambda x: x.sharding, state), steps=K)

    W, EB = config.eval.beam_width, config.eval.batch_size
    table = build_prefix_table(ids.codes[1:], vocab=max(ids.vocab_sizes))
    children, item_of_node = table.arrays()

    def encode_fn(p, hist):
        return repeat_context(nnx.merge(graphdef, p, rest).context(hist), W), p

    def logits_fn(ctx, tokens, step):
        c, p = ctx
        return nnx.merge(graphdef, p, rest).step_logits(c, tokens, step)

    search = make_search(encode_fn, logits_fn, batch_size=EB, beam_width=W, length=L)

    def evaluate(p, ex: Examples) -> dict[str, float]:
        acc = MetricAccumulator()
        n = len(ex.targets_B)
        for s in range(0, n, EB):
            hist, tgt = ex.history_BxS[s : s + EB], ex.targets_B[s : s + EB]
            valid = np.arange(EB) < len(tgt)
            hist = np.pad(hist, ((0, EB - len(tgt)), (0, 0)))
            tgt = np.pad(tgt, (0, EB - len(tgt)))
            items, scores, _ = search(p, jnp.asarray(hist), children, item_of_node)
            acc.update(beam_ranking_metrics(items, scores, jnp.asarray(tgt), jnp.asarray(valid), tuple(config.eval.ks)))
        # MRR is left out: over a truncated list of W beams it is not the full-ranking MRR.
        return {k.replace("hr@", "recall@"): v for k, v in acc.result().items() if not k.startswith("mrr")}

    ckpt, best_ckpt = Checkpointer(run_dir / "ckpt"), Checkpointer(run_dir / "best", max_to_keep=1)
    meta: dict[str, Any] = {"curve": [], "wall_time_s": 0.0, "examples_seen": 0.0, "best": None}
    start, state, meta = resume(ckpt, state, meta, rid)
    # best/ is saved before ckpt/: a run killed between the two (or whose newer ckpt was set aside as corrupt)
    # holds a best step beyond `start`, which the replay would save again and orbax would refuse.
    best_ckpt.drop_after(start)
    logger = RunLogger(run_dir, config, rid, resume_step=start, enabled=main)
    train_flops = TRAIN_MULTIPLIER * tiger_forward_flops(config, L)  # per example
    progress(f"[{rid}] TIGER {spec.arch} params={n_params:,} (emb {n_emb:,}) train pairs={len(train_ex.targets_B):,} "
             f"steps {start}->{t.num_steps}")
    n_train = len(train_ex.targets_B)
    B = t.batch_size

    perms: dict[int, np.ndarray] = {}

    def batch_indices(step: int) -> np.ndarray:
        """Examples of global step `step`: a seeded permutation per epoch (so resuming replays the same)."""
        epoch, i = divmod(step, n_train // B)
        if epoch not in perms:
            perms.clear()
            perms[epoch] = np.random.default_rng([config.seed, epoch]).permutation(n_train)
        return perms[epoch][i * B : (i + 1) * B]

    select = f"ndcg@{max(config.eval.ks)}"  # the validation metric that picks the best checkpoint

    def last(x: jax.Array) -> jax.Array:
        return x[-1] if K > 1 else x

    step, t_loop, t_call, losses = start, time.time(), time.time(), []
    stop_reason = None
    while step < t.num_steps:
        idx = batch_indices(step) if K == 1 else np.stack([batch_indices(step + k) for k in range(K)], axis=1)
        with jax.set_mesh(mesh):
            state, m = train_step(state, place_batch(train_batch(train_ex, idx), mesh))
        step += K
        meta["examples_seen"] = float(meta["examples_seen"]) + B * K
        losses.append(m["loss"])
        if step % t.log_every == 0:
            loss = float(np.mean(np.concatenate([np.atleast_1d(x) for x in jax.device_get(losses)])))
            losses = []
            if not math.isfinite(loss):
                stop_reason = "diverged"
            rec = {"step": step, "loss": loss, "grad_norm": float(last(m["grad_norm"])), "lr": float(last(m["lr"])),
                   "xent_by_position": np.asarray(last(m["xent_by_position"])).round(4).tolist(),
                   "examples_seen": meta["examples_seen"], "flops_spent": train_flops * meta["examples_seen"],
                   "elapsed_s": float(meta["wall_time_s"]) + time.time() - t_loop}
            logger.log(rec)
            if config.logging.progress:
                progress(f"[{rid}] step {step} loss {loss:.4f} ({rec['elapsed_s']:.0f}s)")
        elapsed = float(meta["wall_time_s"]) + time.time() - t_loop
        limit_hit = bool((t.time_limit_s and time.time() - t_call >= t.time_limit_s)
                         or (max_steps and step - start >= max_steps))
        if step % t.eval_every == 0 or step == t.num_steps or limit_hit or stop_reason:
            v = evaluate(state["params"], valid_ex)
            point = {"step": step, "examples_seen": meta["examples_seen"], "elapsed_s": elapsed,
                     **{f"valid/{k}": val for k, val in v.items()}}
            meta["curve"] = list(meta["curve"]) + [point]
            logger.log(point)
            progress(f"[{rid}] step {step} valid recall@10={v['recall@10']:.4f} ndcg@10={v['ndcg@10']:.4f}")
            best_so_far = best_valid(meta, select)
            if math.isfinite(v[select]) and (best_so_far is None or v[select] > best_so_far):
                meta["best"] = {"step": step, "valid": v}
                best_ckpt.save(step, state["params"], {"valid": v})
            meta["wall_time_s"] = float(meta["wall_time_s"]) + time.time() - t_loop
            t_loop = time.time()
            ckpt.save(step, state, meta)
        if stop_reason or limit_hit:
            stop_reason = stop_reason or "time_limit"
            break
    status = "ok" if step >= t.num_steps else ("diverged" if stop_reason == "diverged" else "partial")
    test = evaluate(state["params"], test_ex)
    logger.log({"step": step, **{f"test/{k}": v for k, v in test.items()}})
    best = meta["best"]
    if best is not None:
        best_test = test if best["step"] == step else evaluate(best_ckpt.restore(best["step"], state["params"])[0],
                                                               test_ex)
        best = {**best, "test": best_test}
    meta["wall_time_s"] = float(meta["wall_time_s"]) + time.time() - t_loop
    if ckpt.latest_step() != step:
        ckpt.save(step, state, meta)
    ckpt.close()
    best_ckpt.close()
    evaluations = {"best validation": (best or {}).get("valid"), "best step's test": (best or {}).get("test"),
                   "last step's test": test}
    result = {
        **final_status(status, evaluations, rid), "run_id": rid, "study": config.study, "family": "tiger",
        "arch": spec.arch,
        "dataset": config.data.name, "encoder": config.data.encoder, "encoder_dim": config.data.encoder_dim,
        "ids_method": ids.method, "ids_stats": {k: v for k, v in ids.stats.items() if k != "rqvae_history"},
        "id_vocab_sizes": list(ids.vocab_sizes), "steps": step, "total_steps": t.num_steps,
        "flops_planned": train_flops * B * t.num_steps, "flops_spent": train_flops * meta["examples_seen"],
        "n_dense": n_dense, "n_emb": n_emb, "examples_seen": meta["examples_seen"],
        "unique_examples": n_train, "epochs": meta["examples_seen"] / n_train,
        "final_train_loss": next((r["loss"] for r in reversed(_read_jsonl(logger.path)) if "loss" in r), None),
        "eval": {f"test/{k}": v for k, v in test.items()}, "curve": meta["curve"], "best": best,
        "popularity_test": popularity_metrics(split.train, test_ex.targets_B, tuple(config.eval.ks)),
        "num_valid_users_in_curve": len(valid_ex.targets_B), "num_test_users": len(test_ex.targets_B),
        "dropped_users": split.num_dropped_users, "beam_width": W,
        **run_times(meta["wall_time_s"], t_start, meta.get("resumed_wall_time_s", 0.0)), **run_provenance(),
        **data_provenance(config),
    }
    logger.close()
    write_result(run_dir, result, main)
    return result


def _read_jsonl(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
