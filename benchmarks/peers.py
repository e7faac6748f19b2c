"""Side-by-side CPU speed against the peers (issue 17): both sides in one run, interleaved, same shapes.

    SCALING_REC_DATA=../shared/data python -m benchmarks.peers [--families=hstu,ctr,sasrec] \
        [--peers_dir=../peers] [--harness_dir=../shared/peers] [--rounds=8] [--round_s=2]

Peers (each in its own checkout and venv outside the repository, set up as ../shared/peers/README*.md say):
- hstu-torch: the PyTorch reference HSTU (generative-recommenders, research path, fbgemm CPU jagged ops), one
  training step (forward, sampled softmax with 128 negatives, backward, AdamW) through the harness
  hstu_torch_bench.py; our side is the project's jitted HSTU train step at the same shapes
  (hstu_jax_bench.project_config), on the very batches the torch harness generated, negatives drawn per
  token as the reference's (train.negative_sharing = 1: sharing them cost quality, see the README).
- fuxictr: FuxiCTR's DLRM, DCNv2 and WuKong at the configs in frappe_fuxictr_config/ on the rebuilt Frappe
  split, one training batch (forward, BCE + embedding regulariser, backward, grad clip, Adam); ours is the
  project's CTR train step (scaling_rec.train.engine.make_train_step on ctr_loop.make_loss) at the same configuration.
- recbole: RecBole 1.2.1 SASRec on Beauty (CE over all items, hidden 64, 2 layers, 2 heads, inner 256, length
  50, batch 256 prefixes, one target each); ours is the project's SASRec at the same widths trained with
  the full softmax on every position of 128 users' histories. Compared per training target.

Every peer side runs in a worker process (this file, started with the peer venv's python and --worker), which
builds the model and its batches once and then times the steps it is asked for. The driver alternates the
two sides round by round (peer k steps, ours k steps, ...), so that the shared machine's load hits both
alike, and reports medians of the per-step rates. Batch building is outside every timer on both sides.

A subset (--families, --hstu_cases, --ctr_models) goes to its own file with --out, e.g. the HSTU cases alone:
    python -m benchmarks.peers --families=hstu --out=benchmarks/results/peers_cpu_hstu.json
so that peers_cpu.json stays the record of one run of every case. --ctr_matmul_dtype=bfloat16 times our CTR
step with the dense layers' products in bfloat16 (model.matmul_dtype; its quality on Frappe is
benchmarks.frappe --matmul_dtype's record); FuxiCTR stays float32, as it trains by default. Both dtype flags
default to auto: bfloat16 where the CPU has native bfloat16 products (AMX-BF16 or AVX512-BF16), else float32,
which is then the faster (scaling_rec.hardware); the recorded command names the dtype it resolved to, and
the provenance the CPU's model and flags.

Writes benchmarks/results/peers_cpu.json: {"matmul_flops_per_s", "cases": [{"peer", "case",
"peer_examples_per_s", "ours_examples_per_s", "ratio", "ours_fraction_of_matmul", ...}], "provenance"}.
ours_fraction_of_matmul: our useful training FLOP/s (scaling_rec.flops conventions: 3 x the analytic
forward FLOPs, causal pairs only) over the f32 matmul FLOP/s measured while the case ran (samples taken after
each of its rounds: the case's "matmul_flops_per_s"; the top-level one is the median of samples at the run's
start and end); ours_fraction_of_bf16_matmul the same over the bfloat16-operand rate (--hstu_matmul_dtype and
--ctr_matmul_dtype=bfloat16 run our products in bfloat16).
peer_fraction_of_matmul: the peer's examples/s times the same FLOPs per example, over that matmul rate;
ratio_at_matmul_rate = 1 / peer_fraction_of_matmul is the ratio our step would reach if every useful FLOP ran
at the measured f32 matmul rate: a target ratio above it is out of reach in f32 on this machine.
product_floor: the step's own products alone, timed right after the case's rounds
(benchmarks.product_floor: every dot_general of the traced step at its shapes and dtypes, nothing else);
ratio_at_product_floor = our examples per step / its median_s / the peer's examples/s, the ratio of a step
that took no time outside its products: a target above it is out of reach for these products here. The
HSTU step's loops of data-dependent length (chunked scoring, attention tiles) are counted by running it once
on the case's first batch (product_floor.step_dots_counted); its fraction_of_matmul_at_product_floor is the
share target's counterpart.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

HSTU_CASES = ("small/ml1m", "small/beauty", "large/ml1m", "large/beauty")
CTR_MODELS = ("DLRM", "DCNv2", "WuKong")
DTYPE_CHOICES = ("auto", "float32", "bfloat16")  # auto: bfloat16 where this CPU has native bf16 products
# Issue 17's CPU targets: ratio over the peer; HSTU large/ml1m also >= 30% of the matmul FLOP/s.
TARGET_RATIO = {"hstu-torch": 3.0, "fuxictr": 2.0, "recbole": 2.0}
TARGET_MATMUL_FRACTION = {"hstu-torch/large/ml1m": 0.30}
HSTU_SEED, HSTU_BATCH, HSTU_MAX_LEN, HSTU_GR_OUTPUT, HSTU_NEGATIVES, HSTU_BATCHES = 42, 128, 200, 10, 128, 4
SASREC = {"hidden": 64, "layers": 2, "heads": 2, "inner": 256, "max_len": 50, "dropout": 0.5, "batch": 256,
          "lr": 1e-3}
NUM_BATCHES = 8  # distinct pre-built batches each side cycles through (CTR, SASRec)
MARK = "@@peers "  # starts every line of the worker protocol


# ---------------------------------------------------------------------------------------------------------
# The worker protocol (stdlib only: the peer venvs have no JAX).
# ---------------------------------------------------------------------------------------------------------

def serve(info: dict, step: Callable[[], int]) -> None:
    """Answer the driver: print `info` as the first line, then for each line 'N' on stdin run `step` N times
    and print {"seconds": [...], "examples": [...]}; stop at end of input. step() returns its examples.

    Protocol lines start with MARK; the driver skips any other line (peers' constructors talk on stdout),
    and from here on anything else printed goes to stderr.
    """
    sys.stdout.flush()
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    proto.write(MARK + json.dumps(info) + "\n")
    proto.flush()
    for line in sys.stdin:
        seconds, examples = [], []
        for _ in range(int(line)):
            t0 = time.perf_counter()
            n = step()
            seconds.append(time.perf_counter() - t0)
            examples.append(n)
        proto.write(MARK + json.dumps({"seconds": seconds, "examples": examples}) + "\n")
        proto.flush()


class Worker:
    """The driver's end of one peer worker process."""

    def __init__(self, cmd: Sequence[str], log: Any = None, env: dict | None = None) -> None:
        self.proc = subprocess.Popen(list(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                     text=True, env=env)
        self.info = self._read()

    def _read(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                code = self.proc.wait()
                raise RuntimeError(f"peer worker {self.proc.args!r} exited with {code} before answering")
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])

    def steps(self, n: int) -> tuple[list[float], list[int]]:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        r = self._read()
        return r["seconds"], r["examples"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


class OurSide:
    """Our side of a case: `step()` runs one step (blocking until done) and returns its examples;
    `flops_per_step(i)` the useful training FLOPs of the i-th step; `floor()`, when given, times the step's
    products alone (benchmarks.product_floor.step_floor's record)."""

    def __init__(self, info: dict, step: Callable[[], int], flops_of_step: Callable[[int], float],
                 floor: Callable[[], dict] | None = None) -> None:
        self.info, self._step, self._flops, self.count, self.floor = info, step, flops_of_step, 0, floor
        self.flops: list[float] = []

    def steps(self, n: int) -> tuple[list[float], list[int]]:
        seconds, examples = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            examples.append(self._step())
            seconds.append(time.perf_counter() - t0)
            self.flops.append(self._flops(self.count))
            self.count += 1
        return seconds, examples


def interleave(peer: Any, ours: Any, warmup: int, rounds: int, round_s: float,
               probe: Callable[[], dict[str, list[float]]] | None = None) -> dict:
    """Warm both sides up, then `rounds` rounds of (peer k steps, ours k steps) with k per side chosen from
    its warm-up so that each side's share of a round lasts about as long as the other's: max(round_s, the
    slower side's step). The faster side then samples the machine's drifting speed over as many seconds as the
    slower one, not over one step. Returns the timed steps of each side and the load average.
    probe: called after each round, its {dtype: matmul FLOP/s samples} gathered as "matmul_samples" (the
    machine's rate while the case ran: a shared machine's speed drifts by ±25% within minutes)."""
    load_before = os.getloadavg()
    w_peer, _ = peer.steps(warmup)
    w_ours, _ = ours.steps(warmup)
    span = max(round_s, w_peer[-1], w_ours[-1])  # each side's share of a round: about equally long
    k_peer = max(1, round(span / max(w_peer[-1], 1e-6)))
    k_ours = max(1, round(span / max(w_ours[-1], 1e-6)))
    first = len(getattr(ours, "flops", []))
    sides = {"peer": ([], []), "ours": ([], [])}
    probed: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, side, k in (("peer", peer, k_peer), ("ours", ours, k_ours)):
            s, e = side.steps(k)
            sides[name][0].extend(s)
            sides[name][1].extend(e)
        for dtype, samples in (probe() if probe else {}).items():
            probed.setdefault(dtype, []).extend(samples)
    out = {"load_avg_before": list(load_before), "load_avg_after": list(os.getloadavg()),
           "warmup_s": {"peer": w_peer, "ours": w_ours}, "steps_per_round": {"peer": k_peer, "ours": k_ours}}
    if probed:
        out["matmul_samples"] = probed
    for name, (seconds, examples) in sides.items():
        out[name] = summarize(seconds, examples)
    ours_flops = getattr(ours, "flops", [])[first:]
    if ours_flops:
        rates = [f / s for f, s in zip(ours_flops, sides["ours"][0], strict=True)]
        out["ours"]["useful_flops_per_s"] = statistics.median(rates)
        out["ours"]["useful_flops_per_step_mean"] = statistics.fmean(ours_flops)
    return out


def summarize(seconds: Sequence[float], examples: Sequence[int]) -> dict:
    """Median of the per-step rates (examples / seconds), with the step times' median, min and max."""
    rates = [e / s for e, s in zip(examples, seconds, strict=True)]
    return {"steps": len(seconds), "examples_per_s": statistics.median(rates),
            "step_s_median": statistics.median(seconds), "step_s_min": min(seconds), "step_s_max": max(seconds),
            "examples_per_step_mean": statistics.fmean(examples)}


def case_record(peer: str, case: str, timing: dict, matmul_flops_per_s: float, extra: dict | None = None,
                bf16_matmul_flops_per_s: float | None = None) -> dict:
    """One entry of the result's "cases" in issue 17's layout (plus the timing details and the targets);
    timing None (the peer failed) gives None rates. The matmul rates are the medians of the samples taken
    between the case's rounds when it has them (interleave's probe), else the arguments (the run's).
    ours_fraction_of_bf16_matmul: the same useful FLOP/s over the bfloat16-operand matmul rate (the ceiling
    of a step whose products run in bfloat16)."""
    if timing is None:
        return {"peer": peer, "case": case, "peer_examples_per_s": None, "ours_examples_per_s": None,
                "ratio": None, "ours_fraction_of_matmul": None, "meets_target": None, **(extra or {})}
    during = timing.get("matmul_samples", {})
    rates = {}
    if during.get("float32"):
        matmul_flops_per_s = rates["matmul_flops_per_s"] = statistics.median(during["float32"])
    if during.get("bfloat16"):
        bf16_matmul_flops_per_s = rates["bf16_matmul_flops_per_s"] = statistics.median(during["bfloat16"])
    p, o = timing["peer"]["examples_per_s"], timing["ours"]["examples_per_s"]
    useful = timing["ours"].get("useful_flops_per_s")
    fraction = useful / matmul_flops_per_s if useful is not None else None
    bf16 = {}
    if useful is not None and bf16_matmul_flops_per_s:
        bf16 = {"ours_fraction_of_bf16_matmul": useful / bf16_matmul_flops_per_s}
    ceiling = {}
    if useful is not None and p > 0:
        per_example = timing["ours"]["useful_flops_per_step_mean"] / timing["ours"]["examples_per_step_mean"]
        peer_fraction = p * per_example / matmul_flops_per_s
        ceiling = {"peer_fraction_of_matmul": peer_fraction, "ratio_at_matmul_rate": 1.0 / peer_fraction}
    floor = (extra or {}).get("product_floor", {})
    if floor.get("median_s") and p > 0:
        ceiling["ratio_at_product_floor"] = timing["ours"]["examples_per_step_mean"] / floor["median_s"] / p
        if useful is not None:
            ceiling["fraction_of_matmul_at_product_floor"] = (timing["ours"]["useful_flops_per_step_mean"]
                                                              / floor["median_s"] / matmul_flops_per_s)
    key = f"{peer}/{case}"
    target = {"ratio": TARGET_RATIO[peer]}
    met = p > 0 and o / p >= TARGET_RATIO[peer]
    if key in TARGET_MATMUL_FRACTION:
        target["fraction_of_matmul"] = TARGET_MATMUL_FRACTION[key]
        met = met and fraction is not None and fraction >= TARGET_MATMUL_FRACTION[key]
    return {"peer": peer, "case": case, "peer_examples_per_s": p, "ours_examples_per_s": o,
            "ratio": o / p if p > 0 else None, "ours_fraction_of_matmul": fraction, **bf16, **ceiling, "target": target,
            "meets_target": met, **rates, "timing": timing, **(extra or {})}


def write_result(path: str | os.PathLike, matmul: dict, cases: list[dict], provenance: dict,
                 matmul_bf16: dict | None = None) -> dict:
    """The result file: issue 17's layout, matmul_flops_per_s the median of the run's float32 matmul samples
    (bf16_matmul_flops_per_s that of the bfloat16-operand ones, when measured)."""
    out = {"matmul_flops_per_s": statistics.median(matmul["samples"]), "cases": cases, "matmul": matmul}
    if matmul_bf16 is not None:
        out.update(bf16_matmul_flops_per_s=statistics.median(matmul_bf16["samples"]), matmul_bf16=matmul_bf16)
    out["provenance"] = provenance
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(path)
    return out


# ---------------------------------------------------------------------------------------------------------
# Peer workers (run with the peer venv's python).
# ---------------------------------------------------------------------------------------------------------

def _torch_threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def best_threads(step: Callable[[], int], threads: int, choices: Sequence[int] = (2, 1)) -> dict:
    """The peer's torch thread count: `threads` when > 0, else the fastest of `choices` over one step each
    after a warm-up step. On a loaded 2-core machine one thread is often several times faster than two
    (OpenMP threads wait on each other); the peer gets whichever is faster now."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
        return {"threads": threads, "chosen_by": "flag"}
    torch.set_num_threads(choices[0])
    step()
    tried = {}
    for n in choices:
        torch.set_num_threads(n)
        t0 = time.perf_counter()
        step()
        tried[n] = time.perf_counter() - t0
    best = min(tried, key=tried.get)
    torch.set_num_threads(best)
    return {"threads": best, "chosen_by": "fastest step", "tried_step_s": {str(k): v for k, v in tried.items()}}


def worker_hstu(a: argparse.Namespace) -> None:
    """hstu_torch_bench's model, loss, sampler and step for one (config, dist); its batches saved to --batches."""
    import numpy as np
    import torch

    _torch_threads(a.threads)
    sys.path.insert(0, os.path.abspath(a.harness_dir))
    import hstu_torch_bench as h

    config, dist = a.case.split("/")
    cfg, dcfg = h.MODEL_CONFIGS[config], h.DISTS[dist]
    peer = h.import_peer(a.peer_dir)
    torch.manual_seed(HSTU_SEED)  # as hstu_torch_bench.main does per case
    gen = torch.Generator().manual_seed(HSTU_SEED)
    with contextlib.redirect_stdout(sys.stderr):
        model, ar_loss, sampler, opt = h.build(peer, cfg, dcfg["num_items"], dcfg["num_unique_items"], HSTU_MAX_LEN,
                                               HSTU_GR_OUTPUT, HSTU_NEGATIVES, 1e-3)
    model.train()
    batches = [h.make_batch(dist, HSTU_BATCH, HSTU_MAX_LEN, HSTU_GR_OUTPUT + 1, dcfg["num_items"], gen)
               for _ in range(HSTU_BATCHES)]
    np.savez(a.batches, **{f"{i}/{k}": b[k].numpy() for i, b in enumerate(batches)
                           for k in ("past_lengths", "past_ids", "timestamps")})
    state = {"i": 0}

    def step() -> int:
        h.train_step(model, ar_loss, sampler, opt, batches[state["i"] % len(batches)], "ssm")
        state["i"] += 1
        return HSTU_BATCH

    threads = best_threads(step, a.threads)
    serve({"params": sum(p.numel() for p in model.parameters()), "torch": torch.__version__, **threads}, step)


def fuxictr_params(config_dir: str, model: str, split_dir: str, work_dir: str) -> tuple[str, dict]:
    """The shared FuxiCTR yaml files with their placeholders filled in, written to work_dir/config; the
    experiment id and FuxiCTR's merged params."""
    from fuxictr.utils import load_config

    out = pathlib.Path(work_dir) / "config"
    out.mkdir(parents=True, exist_ok=True)
    subs = {"<data_root>": str(pathlib.Path(work_dir) / "data"), "<split_dir>": os.path.abspath(split_dir),
            "<model_root>": str(pathlib.Path(work_dir) / "models")}
    for name in ("dataset_config.yaml", "model_config.yaml"):
        text = (pathlib.Path(config_dir) / name).read_text()
        for k, v in subs.items():
            text = text.replace(k, v)
        (out / name).write_text(text)
    expid = f"{model}_frappe_bars"
    return expid, load_config(str(out), expid)


def worker_fuxictr(a: argparse.Namespace) -> None:
    """One FuxiCTR model_zoo model built as its run_expid.py does; times model.train_step on pre-loaded batches."""
    import importlib

    import torch

    _torch_threads(a.threads)
    from fuxictr.features import FeatureMap
    from fuxictr.preprocess import FeatureProcessor, build_dataset
    from fuxictr.pytorch.dataloaders import RankDataLoader
    from fuxictr.pytorch.torch_utils import seed_everything

    model_name = a.case
    expid, params = fuxictr_params(a.config_dir, model_name, a.split_dir, a.work_dir)
    params["gpu"] = -1
    seed_everything(seed=params["seed"])
    data_dir = os.path.join(params["data_root"], params["dataset_id"])
    feature_encoder = FeatureProcessor(**params)
    params["train_data"], params["valid_data"], params["test_data"] = build_dataset(feature_encoder, **params)
    feature_map = FeatureMap(params["dataset_id"], data_dir)
    feature_map.load(os.path.join(data_dir, "feature_map.json"), params)
    sys.path.insert(0, os.path.join(os.path.abspath(a.peer_dir), "model_zoo", model_name))
    src = importlib.import_module("src")
    with contextlib.redirect_stdout(sys.stderr):
        model = getattr(src, params["model"])(feature_map, **params)
    train_gen, _ = RankDataLoader(feature_map, stage="train", **params).make_iterator()
    batches = list(itertools.islice(train_gen, NUM_BATCHES))
    model.train()
    model._max_gradient_norm = params.get("max_gradient_norm", 10.0)  # what model.fit sets before training
    state = {"i": 0}

    def step() -> int:
        b = batches[state["i"] % len(batches)]
        model.train_step(b).item()
        state["i"] += 1
        return int(model.get_labels(b).shape[0])

    threads = best_threads(step, a.threads)
    serve({"params": sum(p.numel() for p in model.parameters()), "torch": torch.__version__, **threads,
           "expid": expid}, step)


def worker_recbole(a: argparse.Namespace) -> None:
    """RecBole 1.2.1 SASRec (CE) on the Beauty atomic file, as run_sasrec_beauty_recbole.py configures it;
    times RecBole's own batch step (zero_grad, calculate_loss, backward, the Trainer's Adam)."""
    import torch

    _torch_threads(a.threads)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    cfg = {
        "data_path": os.path.abspath(a.data_root), "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp", "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": SASREC["max_len"], "n_layers": SASREC["layers"], "n_heads": SASREC["heads"],
        "hidden_size": SASREC["hidden"], "inner_size": SASREC["inner"], "hidden_dropout_prob": SASREC["dropout"],
        "attn_dropout_prob": SASREC["dropout"], "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "initializer_range": 0.02, "loss_type": "CE", "train_batch_size": SASREC["batch"], "learner": "adam",
        "learning_rate": SASREC["lr"], "weight_decay": 0.0, "train_neg_sample_args": None,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "eval_batch_size": 4096,
        "seed": 2020, "reproducibility": True, "use_gpu": False, "device": "cpu", "worker": 0,
        "show_progress": False, "checkpoint_dir": os.path.join(a.work_dir, "saved"), "log_wandb": False,
    }
    with contextlib.redirect_stdout(sys.stderr):
        config = Config(model="SASRec", dataset="beauty", config_dict=cfg)
        config["device"] = torch.device("cpu")
        init_seed(config["seed"], config["reproducibility"])
        _torch_threads(a.threads)
        dataset = create_dataset(config)
        train_data, _, _ = data_preparation(config, dataset)
        model = SASRec(config, train_data._dataset)
        optimizer = Trainer(config, model).optimizer
    batches = list(itertools.islice(train_data, NUM_BATCHES))
    model.train()
    state = {"i": 0}

    def step() -> int:
        b = batches[state["i"] % len(batches)]
        optimizer.zero_grad()
        loss = model.calculate_loss(b)
        loss.backward()
        optimizer.step()
        loss.item()
        state["i"] += 1
        return len(b)

    threads = best_threads(step, a.threads)
    serve({"params": sum(p.numel() for p in model.parameters()), "torch": torch.__version__, **threads,
           "train_examples_per_epoch": len(train_data.dataset)}, step)


WORKERS = {"hstu": worker_hstu, "fuxictr": worker_fuxictr, "recbole": worker_recbole}


# ---------------------------------------------------------------------------------------------------------
# Our sides (JAX; imported only by the driver).
# ---------------------------------------------------------------------------------------------------------

def matmul_samples(n: int = 2048, reps: int = 5, dtype: str = "float32") -> list[float]:
    """[n, n] @ [n, n] FLOP/s samples of jitted JAX matmuls on this machine, now: operands in `dtype`, float32
    accumulation and output."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
    mm = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
    mm(a, b).block_until_ready()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        mm(a, b).block_until_ready()
        out.append(2.0 * n ** 3 / (time.perf_counter() - t0))
    return out


def _floor(step_fn: Callable, stepper: Callable, batch: Any, count_loops: bool = False) -> Callable[[], dict]:
    """OurSide.floor of a train step: product_floor.step_floor on the step's current state (`stepper.box`,
    _jitted_step's) and `batch`, traced on their shapes only, or with count_loops run once on their values
    to count its while loops (the HSTU step's)."""
    import jax

    from benchmarks.product_floor import step_floor

    def floor() -> dict:
        args = (stepper.box["state"], batch)
        if not count_loops:
            args = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), args)
        return step_floor(step_fn, *args, count_loops=count_loops)

    return floor


def _jitted_step(step_fn: Callable, state: Any, batches: list, count_key: str | None = None,
                 fixed: int = 0) -> Callable[[], int]:
    import jax

    box = {"state": state, "i": 0}

    def step() -> int:
        box["state"], m = step_fn(box["state"], batches[box["i"] % len(batches)])
        jax.block_until_ready((box["state"], m))
        box["i"] += 1
        return int(m[count_key]) if count_key else fixed

    step.box = box  # the live state, for _floor
    return step


def ours_hstu(case: str, batches_npz: str, harness_dir: str, matmul_dtype: str = "float32") -> OurSide:
    """The project's HSTU step at hstu_torch_bench's shapes, on the batches the torch worker generated, its
    products in `matmul_dtype` (model.matmul_dtype)."""
    import numpy as np

    config, dist = case.split("/")
    sys.path.insert(0, os.path.abspath(harness_dir))
    import hstu_jax_bench as hj

    z = np.load(batches_npz)
    raw = [{k: z[f"{i}/{k}"] for k in ("past_lengths", "past_ids", "timestamps")} for i in range(HSTU_BATCHES)]
    return hstu_side(config, raw, hj.DISTS[dist]["num_items"], harness_dir, matmul_dtype)


def hstu_side(config: str, raw: list[dict], num_items: int, harness_dir: str, matmul_dtype: str = "float32",
              max_len: int = HSTU_MAX_LEN, attention_impl: str = "auto") -> OurSide:
    """The project's jitted HSTU train step for hstu_jax_bench's model `config` ("small" / "large") on `raw`
    batches (make_batch_np's dicts: past_lengths [B], past_ids / timestamps [B, max_len + gr_output]) of
    histories up to `max_len`, sampled softmax with HSTU_NEGATIVES negatives, jagged layout."""
    import types

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from scaling_rec.data.pipeline import BatchSpec, auto_tokens_per_batch, make_batch
    from scaling_rec.flops import TRAIN_MULTIPLIER, forward_flops
    from scaling_rec.models.registry import build
    from scaling_rec.train.engine import make_train_step
    from scaling_rec.train.step import TrainState, make_loss, make_optimizer

    sys.path.insert(0, os.path.abspath(harness_dir))
    import hstu_jax_bench as hj

    batch_size = int(raw[0]["past_lengths"].shape[0])
    examples = [hj.to_examples(b) for b in raw]
    lens = [np.array([len(e) for e in ex], np.int64) for ex in examples]
    model_max_len = max_len + HSTU_GR_OUTPUT + 1
    args = types.SimpleNamespace(seed=HSTU_SEED, attention_impl=attention_impl, batch_size=batch_size, lr=1e-3,
                                 loss="ssm", num_negatives=HSTU_NEGATIVES, warmup=1, steps=1)
    c = hj.project_config(hj.MODEL_CONFIGS[config], args, model_max_len, "jagged")
    c.model.matmul_dtype = matmul_dtype
    tokens = auto_tokens_per_batch(np.concatenate(lens), batch_size, model_max_len)
    tokens = max(tokens, int(math.ceil(max(int(x.sum()) for x in lens) / 64.0)) * 64)
    spec = BatchSpec("jagged", batch_size, model_max_len, tokens)
    batches = [jax.device_put(make_batch(ex, spec, hj.TIME_ORIGIN)) for ex in examples]
    model = build(c, num_items, time_bias=True)
    graphdef, params = nnx.split(model)
    opt = make_optimizer(c.train)
    step = jax.jit(make_train_step(make_loss(graphdef, c.train), opt, seed=HSTU_SEED), donate_argnums=0)
    state = TrainState(params=params, opt_state=opt.init(params), step=jnp.asarray(0, jnp.int32))
    n_params = int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))
    flops = [TRAIN_MULTIPLIER * forward_flops(c.model, x, float(x.sum()), "jagged", model_max_len,
                                             1 + HSTU_NEGATIVES) for x in lens]
    info = {"params": n_params, "tokens_per_batch": tokens, "layout": "jagged",
            "real_tokens_per_batch": [int(x.sum()) for x in lens], "config": c.model.to_dict()}
    stepper = _jitted_step(step, state, batches, fixed=batch_size)
    return OurSide(info, stepper, lambda i: flops[i % len(flops)],
                   floor=_floor(step, stepper, batches[0], count_loops=True))


FUXICTR_WUKONG_WIDTHS = (512, 256)  # WuKong_frappe_bars' FMB and top MLP hidden units


def wukong_like_fuxictr(vocab_sizes: Sequence[int], num_dense: int, seed: int, matmul_dtype: str = "float32"):
    """Our Wukong at FuxiCTR's WuKong_frappe_bars settings: 3 layers, 40 FMB + 40 LCB embeddings of width 10,
    rank 8, FMB MLP [512, 256], top MLP [512, 256] with batch norm, layer norm, no dropout."""
    from flax import nnx

    from scaling_rec.models.ctr.wukong import Wukong

    return Wukong(tuple(vocab_sizes), num_dense, embed_dim=10, num_layers=3, num_fmb=40, num_lcb=40, fm_rank=8,
                  fmb_width=FUXICTR_WUKONG_WIDTHS, fmb_depth=2, mlp_width=FUXICTR_WUKONG_WIDTHS, mlp_depth=2,
                  bottom_width=64, bottom_depth=2, norm="batch", dropout_rate=0.0, rngs=nnx.Rngs(params=seed),
                  matmul_dtype=matmul_dtype)


def ctr_config(model: str, matmul_dtype: str = "float32"):
    """Our CTR config at the FuxiCTR experiment's settings (DLRM / DCNv2: the Frappe presets, which are those
    BARS settings; WuKong: its train settings, the model itself from wukong_like_fuxictr)."""
    from experiments.wukong.frappe import get_config

    c = get_config({"DLRM": "dlrm", "DCNv2": "dcnv2", "WuKong": "wukong"}[model])
    c.model.matmul_dtype = matmul_dtype
    if model == "WuKong":
        c.model.num_layers, c.model.num_fmb, c.model.num_lcb, c.model.fm_rank = 3, 40, 40, 8
        c.model.fmb_width, c.model.fmb_depth, c.model.mlp_width, c.model.mlp_depth = 512, 2, 512, 2
        c.model.dropout = 0.0
        c.train.embedding_l2 = 0.05
    return c


def ours_ctr(model_name: str, matmul_dtype: str = "float32") -> OurSide:
    """The project's CTR train step (ctr_loop.make_loss: BCE + embedding L2; clip 10, AdamW) at the peer's
    configuration on the first NUM_BATCHES batches of 4096 of our Frappe split."""
    import jax
    import jax.numpy as jnp
    import ml_collections
    import numpy as np
    from flax import nnx

    from scaling_rec.data.ctr import load_ctr
    from scaling_rec.flops import TRAIN_MULTIPLIER, ctr_forward_flops
    from scaling_rec.models.registry import build_ctr_model
    from scaling_rec.train.ctr_loop import make_loss
    from scaling_rec.train.engine import make_train_step
    from scaling_rec.train.step import TrainState, make_optimizer

    c = ctr_config(model_name, matmul_dtype)
    data = load_ctr(c.data)
    shape = c.model
    if model_name == "WuKong":
        model = wukong_like_fuxictr(data.vocab_sizes, data.num_dense, c.seed, matmul_dtype)
        shape = ml_collections.ConfigDict({**c.model.to_dict(), "fmb_width": FUXICTR_WUKONG_WIDTHS,
                                           "mlp_width": FUXICTR_WUKONG_WIDTHS})
    else:
        model = build_ctr_model(c.model, data.vocab_sizes, data.num_dense, nnx.Rngs(params=c.seed))
    flops = TRAIN_MULTIPLIER * ctr_forward_flops(shape, len(data.vocab_sizes), data.num_dense) * c.train.batch_size
    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    optimizer = make_optimizer(c.train)
    state = TrainState(params=params, opt_state=optimizer.init(params), step=jnp.asarray(0, jnp.int32), rest=stats)
    train_step = make_train_step(make_loss(graphdef, c), optimizer, c.seed)
    step = jax.jit(train_step, donate_argnums=0)
    order = np.random.default_rng(c.seed).permutation(len(data.train))
    bs = c.train.batch_size
    batches = []
    for i in range(NUM_BATCHES):
        rows = order[i * bs:(i + 1) * bs]
        b = {"cat": data.train.cat_NxF[rows], "label": data.train.label_N[rows]}
        if data.train.num_NxM is not None:
            b["num"] = data.train.num_NxM[rows]
        batches.append(jax.device_put(b))
    n_params = int(sum(x.size for x in jax.tree.leaves(params)))
    info = {"params": n_params, "vocab_rows": int(sum(data.vocab_sizes)), "config": c.to_dict()}
    stepper = _jitted_step(step, state, batches, fixed=bs)
    return OurSide(info, stepper, lambda i: flops, floor=_floor(step, stepper, batches[0]))


def sasrec_config():
    """Our SASRec at RecBole's widths (module docstring) with the full softmax over all items."""
    from experiments.hstu.reproduce import get_config

    c = get_config("beauty_sasrec_ce")
    c.model.embed_dim, c.model.num_blocks, c.model.num_heads = SASREC["hidden"], SASREC["layers"], SASREC["heads"]
    c.model.ffn_dim, c.model.dropout, c.data.max_len = SASREC["inner"], SASREC["dropout"], SASREC["max_len"]
    c.train.learning_rate = SASREC["lr"]
    return c


def ours_sasrec() -> OurSide:
    """The project's SASRec train step on the first NUM_BATCHES batches of an epoch of Beauty; examples are
    its training targets (every position of every history)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from scaling_rec.data.pipeline import TrainStream, make_batch
    from scaling_rec.flops import TRAIN_MULTIPLIER, forward_flops, scored_per_target
    from scaling_rec.models.registry import build
    from scaling_rec.train.engine import make_train_step
    from scaling_rec.train.inputs import prepare
    from scaling_rec.train.step import TrainState, make_loss, make_optimizer

    c = sasrec_config()
    inputs = prepare(c)
    stream = TrainStream(inputs.train, inputs.spec, c.seed, inputs.time_origin)
    groups = stream.plan(0)[:NUM_BATCHES]
    batches = [jax.device_put(make_batch([inputs.train[i] for i in g], inputs.spec, inputs.time_origin))
               for g in groups]
    model = build(c, inputs.num_items, time_bias=inputs.has_time, rngs=nnx.Rngs(params=c.seed))
    graphdef, params = nnx.split(model)
    opt = make_optimizer(c.train)
    step = jax.jit(make_train_step(make_loss(graphdef, c.train), opt, seed=c.seed), donate_argnums=0)
    state = TrainState(params=params, opt_state=opt.init(params), step=jnp.asarray(0, jnp.int32))
    n_params = int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))
    scored = scored_per_target(c.train, inputs.num_items)
    flops = []
    for g in groups:
        lens = np.array([len(inputs.train[i]) for i in g])
        targets = float(sum(np.count_nonzero(inputs.train[i].targets) for i in g))
        flops.append(TRAIN_MULTIPLIER * forward_flops(c.model, lens, targets, "jagged", c.data.max_len, scored))
    info = {"params": n_params, "users_per_batch": c.train.batch_size, "spec": vars(inputs.spec),
            "train_targets_per_epoch": int(sum(np.count_nonzero(e.targets) for e in inputs.train)),
            "config": c.to_dict()}
    stepper = _jitted_step(step, state, batches, count_key="targets")
    return OurSide(info, stepper, lambda i: flops[i % len(flops)], floor=_floor(step, stepper, batches[0]))


# ---------------------------------------------------------------------------------------------------------
# Driver.
# ---------------------------------------------------------------------------------------------------------

def _worker_cmd(a: argparse.Namespace, python: str, kind: str, case: str, **flags: str) -> list[str]:
    cmd = [python, os.path.abspath(__file__), "--worker", kind, "--case", case, "--threads", str(a.threads)]
    for k, v in flags.items():
        cmd += [f"--{k}", v]
    return cmd


def peer_env() -> dict[str, str]:
    """A peer worker's environment: ours without the huge-page tunable that this process restarted itself with
    (scaling_rec.host_memory.restart_with_huge_pages): a peer runs with glibc's own settings, as it ships."""
    from scaling_rec import host_memory

    return host_memory.without_added_tunables(dict(os.environ))


def _probe() -> dict[str, list[float]]:
    """Matmul FLOP/s samples in both dtypes, taken between a case's rounds."""
    return {dtype: matmul_samples(reps=3, dtype=dtype) for dtype in ("float32", "bfloat16")}


def run_cases(a: argparse.Namespace, log: Any, done: Callable[[list], None]) -> list[tuple[str, str, dict, dict]]:
    """(peer, case, interleave's timing, both sides' info) of every case asked for; done(cases so far) after
    each case."""
    peers = pathlib.Path(a.peers_dir)
    families = a.families.split(",")
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        plans = []
        if "hstu" in families:
            for case in a.hstu_cases.split(","):
                npz = os.path.join(tmp, case.replace("/", "_") + ".npz")
                cmd = _worker_cmd(a, a.hstu_python or str(peers / "venv_hstu/bin/python"), "hstu", case,
                                  peer_dir=a.gr_dir or str(peers / "gr"), harness_dir=a.harness_dir, batches=npz)
                plans.append(("hstu-torch", case, cmd, lambda case=case, npz=npz: ours_hstu(case, npz, a.harness_dir,
                                                                                        a.hstu_matmul_dtype)))
        if "ctr" in families:
            for model in a.ctr_models.split(","):
                cmd = _worker_cmd(a, a.fuxictr_python or str(peers / "venv_fuxi/bin/python"), "fuxictr", model,
                                  peer_dir=a.fuxictr_src or str(peers / "fuxictr_src"),
                                  config_dir=str(pathlib.Path(a.harness_dir) / "frappe_fuxictr_config"),
                                  split_dir=a.frappe_split or str(peers / "data/frappe_split"),
                                  work_dir=str(peers / "work/fuxictr"))
                plans.append(("fuxictr", f"{model}/frappe", cmd,
                              lambda model=model: ours_ctr(model, a.ctr_matmul_dtype)))
        if "sasrec" in families:
            cmd = _worker_cmd(a, a.recbole_python or str(peers / "venv_recbole/bin/python"), "recbole", "SASRec",
                              data_root=a.recbole_data or str(peers / "data"), work_dir=str(peers / "work/recbole"))
            plans.append(("recbole", "SASRec/beauty", cmd, ours_sasrec))
        # The torch reference's large ML-1M step holds ~12 GB: it runs last, so that being killed for memory
        # on a shared machine loses no other case.
        plans.sort(key=lambda plan: plan[:2] == ("hstu-torch", "large/ml1m"))
        for peer_name, case, cmd, make_ours in plans:
            print(f"[peers] {peer_name} {case}: starting the peer worker", file=sys.stderr, flush=True)
            try:
                worker = Worker(cmd, log=log, env=peer_env())
            except RuntimeError as e:  # e.g. killed for memory (-9): the case is recorded as failed
                cases.append((peer_name, case, None, {"error": str(e)}))
                done(cases)
                print(f"[peers] {peer_name} {case}: {e}", file=sys.stderr, flush=True)
                continue
            try:
                ours = make_ours()
                timing = interleave(worker, ours, a.warmup, a.rounds, a.round_s, probe=_probe)
            finally:
                worker.close()
            extra = {"peer_info": worker.info, "ours_info": ours.info}
            if ours.floor is not None:
                extra["product_floor"] = ours.floor()
            cases.append((peer_name, case, timing, extra))
            done(cases)
            p, o = timing["peer"]["examples_per_s"], timing["ours"]["examples_per_s"]
            print(f"[peers] {peer_name} {case}: peer {p:.1f} ex/s, ours {o:.1f} ex/s, ratio {o / p:.2f}, "
                  f"load {timing['load_avg_after'][0]:.1f}", file=sys.stderr, flush=True)
            del ours
    return cases


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", default="hstu,ctr,sasrec")
    p.add_argument("--hstu_cases", default=",".join(HSTU_CASES))
    p.add_argument("--ctr_models", default=",".join(CTR_MODELS))
    p.add_argument("--ctr_matmul_dtype", default="auto", choices=DTYPE_CHOICES,
                   help="our CTR step's model.matmul_dtype (the peer trains in float32); auto: "
                        "scaling_rec.hardware.fastest_matmul_dtype")
    p.add_argument("--hstu_matmul_dtype", default="auto", choices=DTYPE_CHOICES,
                   help="our HSTU step's model.matmul_dtype (the peer trains in float32); auto as above")
    p.add_argument("--peers_dir", default=os.environ.get("SCALING_REC_PEERS", "../peers"),
                   help="peer checkouts, venvs, data and scratch (venv_hstu, gr, venv_fuxi, fuxictr_src, "
                        "data/frappe_split, venv_recbole, data/beauty); each path below overrides one")
    p.add_argument("--harness_dir", default=os.environ.get("SCALING_REC_PEER_HARNESS", "../shared/peers"),
                   help="hstu_torch_bench.py, hstu_jax_bench.py, frappe_fuxictr_config/")
    p.add_argument("--hstu_python", default="")
    p.add_argument("--gr_dir", default="", help="generative-recommenders checkout (2e81fab)")
    p.add_argument("--fuxictr_python", default="")
    p.add_argument("--fuxictr_src", default="", help="FuxiCTR checkout (0245987) with model_zoo/")
    p.add_argument("--frappe_split", default="", help="frappe_rebuild.py's output (train/valid/test.csv)")
    p.add_argument("--recbole_python", default="")
    p.add_argument("--recbole_data", default="", help="folder holding beauty/beauty.inter")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads of the peers; 0: the faster of 2 and 1 at the start of each case")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side (ours: the first compiles)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--round_s", type=float, default=2.0,
                   help="at least about how long one side's share of a round runs (longer when a step is)")
    p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "peers_cpu.json"))
    p.add_argument("--log", default="", help="peer workers' stderr (default: this process's stderr)")
    # Worker mode (internal: the driver starts this file with a peer venv's python).
    p.add_argument("--worker", choices=sorted(WORKERS), default="")
    p.add_argument("--case", default="")
    p.add_argument("--peer_dir", default="")
    p.add_argument("--batches", default="")
    p.add_argument("--config_dir", default="")
    p.add_argument("--split_dir", default="")
    p.add_argument("--work_dir", default="")
    p.add_argument("--data_root", default="")
    a = p.parse_args(argv)
    if not a.worker:
        from scaling_rec.hardware import fastest_matmul_dtype

        for k in ("ctr_matmul_dtype", "hstu_matmul_dtype"):
            if getattr(a, k) == "auto":
                setattr(a, k, fastest_matmul_dtype())
    return a


def main(argv: Sequence[str] | None = None) -> None:
    a = parse(argv)
    if a.worker:
        WORKERS[a.worker](a)
        return
    from benchmarks.provenance import command_line, provenance

    prov = provenance()
    load_before = os.getloadavg()
    matmul = {"n": 2048, "dtype": "float32", "before": matmul_samples()}
    matmul_bf16 = {"n": 2048, "dtype": "bfloat16", "before": matmul_samples(dtype="bfloat16")}
    keep = ("families", "hstu_cases", "ctr_models", "ctr_matmul_dtype", "hstu_matmul_dtype", "threads", "warmup",
            "rounds", "round_s")
    prov.update({"command": command_line("benchmarks.peers", [f"--{k}={getattr(a, k)}" for k in (*keep, "out")]),
                 "load_avg_before": list(load_before), "config": {k: getattr(a, k) for k in keep},
                 "peer_versions": {"generative-recommenders": "2e81fab69a497fb5e24cd23569adf1e78070e4ec",
                                   "FuxiCTR": "0245987fdc1d43c36164ea496a02324885a8557a", "recbole": "1.2.1"}})

    def write(raw: list, complete: bool) -> dict:
        for m in (matmul, matmul_bf16):
            m["samples"] = m["before"] + m.get("after", [])
        prov.update({"load_avg_after": list(os.getloadavg()), "complete": complete})
        cases = [case_record(*r[:3], statistics.median(matmul["samples"]), r[3],
                             statistics.median(matmul_bf16["samples"])) for r in raw]
        return write_result(a.out, matmul, cases, prov, matmul_bf16)

    log = open(a.log, "a") if a.log else None  # noqa: SIM115 (the workers' stderr for the whole run)
    try:
        raw = run_cases(a, log, lambda cases: write(cases, complete=False))
    finally:
        if log:
            log.close()
    matmul["after"] = matmul_samples()
    matmul_bf16["after"] = matmul_samples(dtype="bfloat16")
    out = write(raw, complete=True)
    for c in out["cases"]:
        print(json.dumps({k: c[k] for k in ("peer", "case", "peer_examples_per_s", "ours_examples_per_s", "ratio",
                                            "ours_fraction_of_matmul", "meets_target")}))


if __name__ == "__main__":
    if "--worker" not in sys.argv:  # the driver (a worker runs in a peer's venv, without this project)
        from scaling_rec import host_memory

        host_memory.restart_with_huge_pages()
    main()
