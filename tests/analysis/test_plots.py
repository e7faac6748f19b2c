"""What the figures say: colours that name one family in every figure, optima the IsoFLOP fit left out drawn as
such, and a runs.csv's unusable rows kept out of a report made from a DataFrame."""

from __future__ import annotations

import json

import matplotlib.colors as mcolors
import numpy as np
import pytest

from scaling_rec.analysis import isoflop_optima, load_results, plots, write_report
from tests.analysis.test_fits import _off_centre, isoflop_grid
from tests.analysis.test_report import make_store


def _fill(collection) -> str:
    return mcolors.to_hex(collection.get_facecolor()[0]) if len(collection.get_facecolor()) else "none"


def test_a_family_keeps_its_colour_when_a_figure_leaves_another_out():
    """Families A, B, C where B has no IsoFLOP fit: C was drawn in B's colour (the figure's second family)."""
    iso = isoflop_optima(*isoflop_grid())
    fig = plots.plot_optimal_size({"A": iso, "C": iso}, "N", families=["A", "B", "C"])
    fills = {_fill(c) for c in fig.axes[0].collections}
    assert fills == {mcolors.to_hex(plots.family_colour(0)), mcolors.to_hex(plots.family_colour(2))}


def test_optima_left_out_of_the_fit_are_hollow_and_no_undefined_line_is_drawn():
    """3 of 4 optima outside their sampled sizes: a, b are NaN (1 interior optimum), so no line (its legend read
    'N* ∝ C^nan'), and the 3 are hollow markers labelled as not fitted."""
    iso = isoflop_optima(*_off_centre(*isoflop_grid(), budgets=3))
    assert iso.n_interior == 1 and np.isnan(iso.a)
    ax = plots.plot_optimal_size({"A": iso}, "N").axes[0]
    assert not ax.get_lines()
    hollow = [c for c in ax.collections if _fill(c) == "none"]
    assert len(hollow) == 1 and len(hollow[0].get_offsets()) == 3
    assert any("not fitted" in t.get_text() for t in ax.get_legend().get_texts())


def test_a_dataframe_reports_unusable_rows_as_excluded(tmp_path):
    """runs.csv has `usable` but no `exclude_reason`: its unusable rows were fitted and plotted as used."""
    with pytest.warns(Warning, match="cut off"):  # the store's deliberately truncated result.json
        df, _ = load_results(make_store(tmp_path / "store"))
    df = df[df["status"] == "ok"].drop(columns=["exclude_reason"]).copy()
    df["usable"] = True
    df.loc[df.index[0], "usable"] = False
    out = write_report(df, tmp_path / "out", metric="eval/loss", transform="none", n_boot=0)
    fits = json.loads(out["fits.json"].read_text())
    excluded = [e for f in fits["families"].values() for e in f["points"]["excluded"]]
    assert [e["reason"] for e in excluded] == ["flagged usable=False"]
