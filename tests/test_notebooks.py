"""The notebooks run (nbclient, the venv's python3 kernel): scaling curves against a study's results
store, attention kernels against the committed benchmark results.

`notebooks/scaling_curves.ipynb` reads its store from $SCALING_REC_RESULTS.  The fast test builds a
store the way a sweep lays it out (scaling_rec.sweep: `expand` → run ids and labels, `Store` →
sweep/manifest.json; config.json and result.json with the keys of scaling_rec/train/loop.py's
`_result`), its losses planted from a known L(N, D) law so that every fit has something to find,
plus the runs the analysis must exclude and say so: diverged, failed, a corrupted result.json and
an unfinished run.  The slow test runs a real tiny sweep (tests/sweep/tiny_study.py) instead.
"""

from __future__ import annotations

import io
import json
import math
import pathlib
import time

import numpy as np
import pytest

from scaling_rec.config import default_config
from scaling_rec.io import atomic_write_json
from scaling_rec.sweep.sizes import n_dense
from scaling_rec.sweep.spec import expand
from scaling_rec.sweep.store import Store, study_root

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "scaling_curves.ipynb"
ATTENTION_NOTEBOOK = REPO / "notebooks" / "attention_kernels.ipynb"
TIGER_NOTEBOOK = REPO / "notebooks" / "tiger_beauty.ipynb"
FIGURE_TAGS = ("figure-loss-vs-compute", "figure-isoflop", "figure-optimal-size")

# Planted L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, eq. 2) with N = N_dense, D = examples;
# with D = C / (FLOPs per example) the best size moves from hstu/M to hstu/L over the budgets.
PLANTED = {"E": 6.0, "A": 60.0, "B": 25.0, "alpha": 0.34, "beta": 0.3}
BUDGETS = (1e11, 3.16e11, 1e12, 3.16e12, 1e13)
SIZES = ("hstu/XS", "hstu/S", "hstu/M", "hstu/L")
# Amazon Beauty (S3-Rec split): items, users, mean history length; batch 128 users.
NUM_ITEMS, NUM_USERS, TOKENS_PER_EXAMPLE, BATCH = 12101, 22363, 9.0, 128


def _planted_loss(n: float, d: float, rng: np.random.Generator) -> float:
    p = PLANTED
    return (p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]) * float(np.exp(rng.normal(0.0, 0.004)))


def _schedule(spec, n: int) -> tuple[float, int, float]:
    """(training FLOPs per example, steps that spend the budget, tokens per example) of a run."""
    fpe = 6.0 * n * TOKENS_PER_EXAMPLE  # 3 × forward, 2 FLOPs per multiply-add (attention left out)
    return fpe, max(1, math.ceil(spec.config.train.flops_budget / (fpe * BATCH))), TOKENS_PER_EXAMPLE


def _result(spec, status: str, n: int, loss: float = math.nan, seed: int = 0) -> dict:
    """A result.json with the fields (and types) of scaling_rec/train/loop.py:_result."""
    c = spec.config
    fpe, total_steps, tokens_per_example = _schedule(spec, n)
    ok = status == "ok"
    steps = total_steps if ok else max(1, total_steps // 3)
    examples = float(steps * BATCH)
    evals = {}
    if ok:
        rng = np.random.default_rng(seed)
        ndcg = float(np.clip(0.9 / loss - 0.06 + rng.normal(0.0, 0.002), 0.0, 1.0))
        for split in ("valid", "test"):
            evals.update({f"{split}/xent": loss, f"{split}/xent_se": 0.02, f"{split}/ndcg@10": ndcg,
                          f"{split}/ndcg@10_se": 0.003, f"{split}/hr@10": min(1.0, 1.9 * ndcg),
                          f"{split}/hr@10_se": 0.004, f"{split}/mrr": 0.8 * ndcg, f"{split}/mrr_se": 0.003,
                          f"{split}/num_examples": float(NUM_USERS)})
    return {
        "status": status, "run_id": spec.run_id, "study": c.study, "family": c.model.family,
        "dataset": c.data.name, "layout": c.data.layout, "flops_planned": float(c.train.flops_budget),
        "flops_spent": float(steps * BATCH * fpe), "flops_per_example": float(fpe),
        "n_dense": n, "n_emb": (NUM_ITEMS + 1) * c.model.embed_dim, "examples_seen": examples,
        "tokens_seen": examples * tokens_per_example, "unique_examples": NUM_USERS,
        "epochs": examples / NUM_USERS, "steps": steps, "total_steps": total_steps,
        "best_step": steps if ok else None, "final_train_loss": loss - 0.3 if ok else float("nan"),
        "final_eval_loss": loss if ok else float("nan"), "eval": evals, "wall_time_s": 1e-9 * steps * BATCH * fpe,
        "elapsed_s": 2.0 + 1e-9 * steps * BATCH * fpe, "call_wall_time_s": 1e-9 * steps * BATCH * fpe,
        "curve": [{"step": steps, "examples_seen": examples, **{k: v for k, v in evals.items() if k[:6] == "valid/"}}]
        if ok else [], "device_kind": "cpu", "num_devices": 1, "git_commit": "planted", "git_dirty": False,
        "data_identity": None, "data_files": [], "num_items": NUM_ITEMS, "dropped_users": 0,
    }


def write_planted_store(workdir: pathlib.Path) -> pathlib.Path:
    """`<workdir>/nb_isoflop/` as launch.sweep leaves it; returns that study directory.

    5 budgets × 4 sizes with planted losses (status ok), and 4 runs of hstu/XL: diverged, failed,
    corrupted result.json, unfinished (config.json only).
    """
    base = default_config()
    base.study = "nb_isoflop"
    base.model.time_bias = False  # Amazon data has no timestamps
    base.train.flops_budget = BUDGETS[0]
    specs = expand(base, {"budgets": list(BUDGETS), "sizes": list(SIZES)})
    extra = expand(base, {"budgets": list(BUDGETS[1:]), "sizes": ["hstu/XL"]})
    store = Store(study_root(workdir, base))
    store.write_manifest(specs + extra, source="tests/test_notebooks.py (planted)")
    one_per_size = {spec.size: spec for spec in specs + extra}
    counts = {size: n_dense(spec.config, time_bias=False) for size, spec in one_per_size.items()}
    rng = np.random.default_rng(0)
    for i, spec in enumerate(specs):
        n = counts[spec.size]
        examples = _schedule(spec, n)[1] * BATCH
        res = _result(spec, "ok", n, _planted_loss(n, examples, rng), seed=i)
        atomic_write_json(store.run_dir(spec.run_id) / "config.json", spec.config.to_dict())
        atomic_write_json(store.run_dir(spec.run_id) / "result.json", res)
    diverged, failed, corrupted, unfinished = extra
    for spec in extra:
        atomic_write_json(store.run_dir(spec.run_id) / "config.json", spec.config.to_dict())
    n_xl = counts["hstu/XL"]
    atomic_write_json(store.run_dir(diverged.run_id) / "result.json", _result(diverged, "diverged", n_xl))
    atomic_write_json(store.run_dir(failed.run_id) / "result.json",
                      {**_result(failed, "failed", n_xl), "error": "XlaRuntimeError('RESOURCE_EXHAUSTED')"})
    text = json.dumps(_result(corrupted, "ok", n_xl, 7.0), indent=2, sort_keys=True)
    (store.run_dir(corrupted.run_id) / "result.json").write_text(text[: len(text) // 2])  # a cut-off write
    del unfinished  # config.json only: started, never finished
    return store.root


def run_notebook(path: pathlib.Path):
    """Runs the notebook at `path` in a fresh python3 kernel (the interpreter running pytest, whose
    ipykernel ships the 'python3' kernel spec) from its folder; returns the executed notebook.  A cell
    that raises fails the test with the cell's traceback (nbclient.exceptions.CellExecutionError)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=240, startup_timeout=120,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return nb


def execute_notebook(study_dir: pathlib.Path, n_boot: int, monkeypatch: pytest.MonkeyPatch):
    """The scaling-curves notebook run on the study at `study_dir` with `n_boot` resamples."""
    monkeypatch.setenv("SCALING_REC_RESULTS", str(study_dir))
    monkeypatch.setenv("SCALING_REC_N_BOOT", str(n_boot))
    monkeypatch.delenv("SCALING_REC_METRIC", raising=False)
    return run_notebook(NOTEBOOK)


def _outputs(nb, tag: str | None = None) -> list[dict]:
    cells = [c for c in nb.cells if c.cell_type == "code" and (tag is None or tag in c.metadata.get("tags", []))]
    if tag is not None:
        assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return [o for c in cells for o in c.outputs]


def _text(nb) -> str:
    parts = []
    for o in _outputs(nb):
        parts.append(o.get("text", ""))
        parts += [str(o.get("data", {}).get(k, "")) for k in ("text/plain", "text/html")]
    return "\n".join(parts)


def _has_png(nb, tag: str) -> bool:
    return any("image/png" in o.get("data", {}) for o in _outputs(nb, tag))


@pytest.mark.parametrize("path", [NOTEBOOK, ATTENTION_NOTEBOOK, TIGER_NOTEBOOK], ids=lambda p: p.stem)
def test_the_notebook_is_stored_without_outputs(path: pathlib.Path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert nb.metadata.kernelspec.name == "python3"


def test_attention_notebook_on_the_committed_gpu_benchmark(monkeypatch):
    """The H200 result: the figure is drawn and the targets section reads the 4096 numbers."""
    monkeypatch.delenv("SCALING_REC_BENCH", raising=False)
    nb = run_notebook(ATTENTION_NOTEBOOK)
    assert _has_png(nb, "figure-attention")
    targets = "".join(o.get("text", "") for o in _outputs(nb, "targets"))
    assert "speedup over XLA at 4096, jagged: 5.94x (target >= 3x: met)" in targets
    assert "Pallas / cuDNN softmax time at 4096, padded:" in targets


def test_tiger_notebook_on_the_committed_results(monkeypatch):
    """The committed TIGER outputs: the table holds the H200 runs, the figure is drawn, and the gap line
    reads the best test Recall@10 (the second H200 run, at its best validation step)."""
    monkeypatch.delenv("SCALING_REC_TIGER_RESULTS", raising=False)
    nb = run_notebook(TIGER_NOTEBOOK)
    assert _has_png(nb, "figure-tiger")
    table = "".join(str(o.get("data", {}).get("text/plain", "")) for o in _outputs(nb, "standing"))
    assert "tiger_beauty_gpu_h200" in table and "paper" in table
    gap = "".join(o.get("text", "") for o in _outputs(nb, "gap"))
    assert "best test Recall@10: 0.0577 (tiger_beauty_gpu_h200:gpu, best step 10000) = 89% of the paper's 0.0648" in gap


def test_attention_notebook_on_a_cpu_benchmark(monkeypatch):
    """A CPU result has no Pallas timings: the notebook says the targets need a GPU run."""
    monkeypatch.setenv("SCALING_REC_BENCH", str(REPO / "benchmarks" / "results" / "hstu_attention_cpu.json"))
    nb = run_notebook(ATTENTION_NOTEBOOK)
    assert _has_png(nb, "figure-attention")
    assert "the targets need a GPU run" in "".join(o.get("text", "") for o in _outputs(nb, "targets"))


def test_scaling_curves_notebook_on_a_sweep_store(tmp_path, monkeypatch):
    t0 = time.perf_counter()
    study = write_planted_store(tmp_path)
    nb = execute_notebook(study, n_boot=20, monkeypatch=monkeypatch)
    for tag in FIGURE_TAGS:
        assert _has_png(nb, tag), f"the cell tagged {tag!r} drew no figure"
    text = _text(nb)
    # The exclusions the library reports are shown: flagged runs with their reason, and the problems.
    assert "status=diverged" in text and "status=failed" in text
    assert "not valid JSON" in text and "no result.json" in text
    fit_table = "\n".join(str(o.get("data", {}).get("text/plain", "")) for o in _outputs(nb, "fit-table"))
    for law in ("power_law", "chinchilla", "isoflop"):
        assert law in fit_table
    # Every law, interval and budget is fitted on this store (nothing printed as missing or skipped).
    for missing in ("not fitted:", "no confidence band", "no CI:", "no IsoFLOP fit", "skipped:"):
        assert missing not in text, missing
    assert time.perf_counter() - t0 < 90, "the notebook test must stay well under 90 s on the shared CPU"


@pytest.mark.slow
def test_scaling_curves_notebook_on_a_real_tiny_sweep(tmp_path, monkeypatch):
    """A real sweep (tests/sweep/tiny_study.py, 3 budgets × 3 widths and a diverging run, inline executor)
    → the notebook runs on its store; the planted store above has the same result.json fields."""
    from scaling_rec.sweep.executors import InlineExecutor
    from scaling_rec.sweep.runner import run_sweep
    from scaling_rec.sweep.spec import load_experiment
    from tests._jax_cache import compilation_cache

    base = load_experiment(REPO / "tests" / "sweep" / "tiny_study.py").get_config("steps")
    points = [{"train.flops_budget": c, **{f"model.{k}": d for k in ("embed_dim", "qk_dim", "v_dim", "ffn_dim")}}
              for c in (2e6, 8e6, 3.2e7) for d in (8, 16, 24)]
    points.append({"train.flops_budget": 2e6, "train.learning_rate": 1e6, "model.l2_norm": False})
    specs = expand(base, points)
    store = Store(study_root(tmp_path, base))
    with compilation_cache(tmp_path / "jax_cache"):  # runs of one shape compile once
        report = run_sweep(specs, store, InlineExecutor(tmp_path), out=io.StringIO(), poll_s=0.01)
    assert sorted(r.state for r in report.runs) == ["diverged"] + ["ok"] * 9
    real = store.read_result(specs[0].run_id)
    assert set(_result(specs[0], "ok", real["n_dense"], 1.0)) == set(real), "planted store out of date"
    nb = execute_notebook(store.root, n_boot=20, monkeypatch=monkeypatch)
    assert _has_png(nb, "figure-loss-vs-compute") and _has_png(nb, "figure-isoflop")
    assert "status=diverged" in _text(nb)
