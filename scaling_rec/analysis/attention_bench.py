"""Tables and figures of the attention benchmark (`benchmarks/hstu_attention.py` JSON output).

The benchmark times, per max length L and layout (padded: T / L sequences of length L; jagged:
log-normal lengths packed into T tokens), the forward and forward+backward of the XLA path, the
Pallas kernels and softmax attention on the padded shape (cuDNN on a GPU). This module flattens
that JSON into one row per (L, layout, implementation) and draws time and speedup against L.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scaling_rec.analysis.plots import family_colour

# Colour order in the figures; an implementation the benchmark adds later is drawn after these.
IMPLS = ("xla", "pallas", "softmax_padded", "pallas_no_bias", "triton_reference")
_LINESTYLE = {"padded": "--", "jagged": "-"}


def load_attention_benchmark(path: str | pathlib.Path) -> dict[str, Any]:
    """The benchmark's JSON (benchmarks/results/hstu_attention_<backend>.json)."""
    return json.loads(pathlib.Path(path).read_text())


def attention_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (max_len, layout, impl) of a benchmark result.

    Columns: max_len, layout, impl, tokens (T), real_tokens, num_sequences, fwd_ms and fwd_bwd_ms
    (median milliseconds), fwd_tflops and fwd_bwd_tflops (useful TFLOP/s: 4·H·D per causal
    same-sequence pair forward, ×3 for forward+backward), speedup_vs_xla (XLA fwd+bwd time / this
    implementation's, so 1 for 'xla'), and `note` (the error or reason when it was not timed).
    """
    rows = []
    for case in result["cases"]:
        xla = case["impls"].get("xla", {}).get("fwd_bwd", {}).get("median_s")
        for impl, r in case["impls"].items():
            row = {k: case[k] for k in ("max_len", "layout", "tokens", "real_tokens", "num_sequences")}
            row["impl"] = impl
            if "fwd_bwd" in r:
                row.update(fwd_ms=1e3 * r["fwd"]["median_s"], fwd_bwd_ms=1e3 * r["fwd_bwd"]["median_s"],
                           fwd_tflops=r["fwd"]["tflops_per_s"], fwd_bwd_tflops=r["fwd_bwd"]["tflops_per_s"],
                           speedup_vs_xla=xla / r["fwd_bwd"]["median_s"] if xla else np.nan, note="")
            else:
                row.update(fwd_ms=np.nan, fwd_bwd_ms=np.nan, fwd_tflops=np.nan, fwd_bwd_tflops=np.nan,
                           speedup_vs_xla=np.nan, note=r.get("error", r.get("skipped", "")))
            rows.append(row)
    return pd.DataFrame(rows).sort_values(["layout", "impl", "max_len"]).reset_index(drop=True)


def plot_attention(table: pd.DataFrame, title: str = "") -> Figure:
    """Forward+backward time (left) and speedup over the XLA path (right) vs max length, log-log;
    solid lines jagged, dashed padded; one colour per implementation."""
    fig = Figure(figsize=(11, 4.2))
    ax_t, ax_s = fig.subplots(1, 2)
    impls = [*IMPLS, *sorted(set(table["impl"]) - set(IMPLS))]
    for i, impl in enumerate(impls):
        for layout, style in _LINESTYLE.items():
            rows = table[(table["impl"] == impl) & (table["layout"] == layout)].dropna(subset=["fwd_bwd_ms"])
            if rows.empty:
                continue
            label = f"{impl} ({layout})"
            ax_t.plot(rows["max_len"], rows["fwd_bwd_ms"], style, marker="o", color=family_colour(i), label=label)
            if impl != "xla":
                ax_s.plot(rows["max_len"], rows["speedup_vs_xla"], style, marker="o", color=family_colour(i),
                          label=label)
    ax_s.axhline(1.0, color="grey", lw=0.8)
    for ax, ylabel in ((ax_t, "fwd+bwd time (ms)"), (ax_s, "speedup over the XLA path (×)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("max sequence length L")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
