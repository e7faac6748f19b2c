"""Fits flag their own failures (issue 14 finding 4, issue 15 item 6): flat data, a parameter on its
search box's edge, an IsoFLOP parabola without curvature, a CI wider than 10× and an extrapolation
beyond 10× the largest fitted budget are named, and such a parameter is never reported identified."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scaling_rec.analysis import fit_chinchilla, fit_power_law, isoflop_optima, load_results, write_report
from scaling_rec.analysis.fits import EXPONENT_BOX
from scaling_rec.analysis.flags import flat_test
from scaling_rec.analysis.report import fit_with_ci, flag_law, identified, isoflop_interval
from tests.analysis.test_fits import CHIN, _off_centre, isoflop_grid, planted_c
from tests.analysis.test_report import make_store


def _report(tmp_path, n_boot: int, **store_kw) -> tuple[dict, str]:
    """fits.json's 'sasrec' family and report.md for a fake store (one family keeps it fast)."""
    df, problems = load_results(make_store(tmp_path, **store_kw), warn=False)
    paths = write_report(df[df["family"] == "sasrec"], tmp_path / "out", n_boot=n_boot, problems=problems)
    return json.loads(paths["fits.json"].read_text())["families"]["sasrec"], paths["report.md"].read_text()


@pytest.mark.parametrize("noise", [0.0, 0.01], ids=["same_loss", "same_loss_plus_noise"])
def test_flat_data_identifies_nothing(tmp_path, noise):
    """Every run at the same loss (issue 14: every Chinchilla parameter was 'identified? yes', α at its
    bound, 'N* ∝ C^0.000'): each law is flagged flat and no parameter is identified."""
    s, md = _report(tmp_path, n_boot=10, flat_noise=noise)
    for law in ("power_law", "chinchilla"):
        assert s[law]["flags"]["law"] == ["flat"], s[law]
        assert s[law]["flat_test"]["flat"] and s[law]["flat_test"]["p_value"] > 0.05
        assert not any(s[law]["identified"].values()), s[law]["identified"]
        assert "flat" in s["holdout"][law]["flags"]
    assert not s["chinchilla"]["allocation_exponents"]["identified"]
    iso = s["isoflop"]
    assert "error" in iso or ("flat" in iso["flags"]["law"] and not any(iso["identified"].values()))
    # fits.json keeps its layout (extended, not renamed).
    assert set(s["power_law"]["bootstrap"]["params"]) == {"E", "A", "alpha"}
    assert "mean_abs_rel_error" in s["holdout"]["chinchilla"]
    assert "FLAT: the law does not beat a constant" in md and "NOT identified" in md
    assert "| yes |" not in md


def test_exponent_at_its_bound_is_flagged():
    """A loss that rises with compute puts α on the lower edge of its box (α ≥ 0)."""
    c = np.logspace(10, 16, 7)
    y = 2.0 + 0.05 * np.log10(c)
    entry, fit, _ = fit_with_ci(fit_power_law, (c, y), n_boot=20, seed=0, ci=0.95)
    assert ("alpha", "at_lower_bound") in fit.at_bound
    flag_law(entry, fit.at_bound, flat_test(np.log(y), np.log(fit.predict(c)), 3))
    assert "at_lower_bound" in entry["flags"]["params"]["alpha"] and entry["identified"]["alpha"] is False
    words = identified("alpha", entry["bootstrap"]["params"]["alpha"],
                       entry["flags"]["law"] + entry["flags"]["params"]["alpha"])
    assert "at the lower bound of its search box" in words


def test_planted_law_stays_identified():
    c, y = planted_c(0)
    entry, fit, _ = fit_with_ci(fit_power_law, (c, y), n_boot=30, seed=0, ci=0.95)
    flag_law(entry, fit.at_bound, flat_test(np.log(y), np.log(fit.predict(c)), 3))
    assert fit.at_bound == () and entry["flags"]["law"] == []
    assert entry["identified"] == {"E": True, "A": True, "alpha": True}, entry["flags"]
    assert entry["flat_test"]["p_value"] < 1e-6


@pytest.mark.parametrize("shape", ["constant", "noise"])
def test_budget_without_curvature_is_skipped_and_flagged(shape):
    """The largest budget flat in N: exactly (its parabola's p2 is ~1e-16, whose vertex was taken as an
    optimum when positive) or within noise (p2 > 0 but not by a t-test over its 5 sizes)."""
    c, n, d, y = isoflop_grid()
    top = c == c.max()
    bump = np.array([1.0, -1.0, 1.0, -1.0, 1.2]) * 2e-3 if shape == "noise" else 0.0  # p2 > 0, t = 0.86
    y = np.where(top, 3.0 * np.exp(np.resize(bump, c.size)), y)
    iso = isoflop_optima(c, n, d, y)
    assert [(cb, code) for cb, _, code in iso.skipped] == [(c.max(), "zero_curvature")]
    assert len(iso.optima) == 3 and not iso.flat.flat


def test_extrapolation_beyond_10x_is_flagged_in_the_report(tmp_path):
    s, md = _report(tmp_path / "far", n_boot=0, budgets=(1e15, 1e16, 1e17, 1e19))
    h = s["holdout"]["chinchilla"]
    assert h["extrapolation_ratio"] == pytest.approx(100.0) and h["flags"] == ["extrapolation"]
    assert "100× — EXTRAPOLATION beyond 10× the largest fitted budget" in md
    s, md = _report(tmp_path / "near", n_boot=0)  # budgets 10× apart: a test, not an extrapolation
    assert s["holdout"]["chinchilla"]["flags"] == [] and "EXTRAPOLATION" not in md


def test_flat_test_separates_a_law_from_a_constant():
    c, y = planted_c(1, noise=1e-2)
    assert not flat_test(np.log(y), np.log(2.0 + 60.0 * c**-0.15), 3).flat
    rng = np.random.default_rng(0)
    noise = np.log(5.0) + rng.normal(0, 1e-2, 12)
    assert flat_test(noise, np.full(12, noise.mean()) + 1e-3 * np.linspace(-1, 1, 12), 3).flat
    assert flat_test(np.zeros(6), np.zeros(6), 3).flat


def test_exponent_ci_ending_on_its_box_edge_is_not_identified():
    """An estimate inside the box whose CI runs into the box's edge (resamples hit α = 5) is bounded by the
    box, not the data: flagged, not identified (the quick report's L(N, D) α read [0.83, 5] 'yes')."""
    entry = {"fit": {"alpha": 1.1, "E": 3.4},
             "bootstrap": {"params": {"alpha": {"low": 0.83, "high": EXPONENT_BOX[1]},
                                      "E": {"low": 3.3, "high": 3.5}}}}
    flag_law(entry)
    assert entry["flags"]["params"]["alpha"] == ["ci_at_bound"] and entry["identified"]["alpha"] is False
    assert entry["identified"]["E"] is True
    words = identified("alpha", entry["bootstrap"]["params"]["alpha"], entry["flags"]["params"]["alpha"])
    assert "edge of its search box" in words


def test_chinchilla_on_two_model_sizes_identifies_no_size_term():
    """Two distinct N leave (E, A, α) on a ridge of exact fits (an audit reported α [0.20, 1.89] 'identified'):
    A, α and E are flagged whatever their CIs; three sizes are enough to lift the flag."""
    rng = np.random.default_rng(0)
    for sizes, flagged in ((2, True), (3, False)):
        n = np.repeat(np.logspace(6, 8, sizes), 5)
        d = np.tile(np.logspace(8, 10, 5), sizes)
        y = (CHIN["E"] + CHIN["A"] * n ** -CHIN["alpha"] + CHIN["B"] * d ** -CHIN["beta"]) * np.exp(
            rng.normal(0, 1e-3, n.size))
        entry, fit, _ = fit_with_ci(fit_chinchilla, (n, d, y), n_boot=0, seed=0, ci=0.95)
        flag_law(entry, fit.at_bound + fit.too_few_levels)
        for k in ("A", "alpha", "E"):
            assert ("too_few_sizes" in entry["flags"]["params"][k]) is flagged, (sizes, k, entry["flags"])
            assert entry["identified"][k] is (False if flagged else None)  # n_boot=0: no CI otherwise
        assert "too_few_sizes" not in entry["flags"]["params"]["beta"]


def test_isoflop_exponents_from_two_optima_are_not_identified():
    c, n, d, y = _off_centre(*isoflop_grid(), budgets=2)
    entry, iso, _ = fit_with_ci(isoflop_optima, (c, n, d, y), n_boot=0, seed=0, ci=0.95)
    entry["interval"], codes = isoflop_interval(iso, 0.95)
    flag_law(entry, codes, flat=iso.flat)
    assert "2 interior optima" in entry["interval"]["error"]
    assert entry["identified"]["a"] is False and entry["flags"]["params"]["b"] == ["too_few_optima", "no_ci"]
