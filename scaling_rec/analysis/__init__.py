"""scaling_rec.analysis: results store → DataFrame → scaling-law fits, bootstrap CIs, plots, report."""

from scaling_rec.analysis.bootstrap import BootstrapResult, HoldoutResult, bootstrap, holdout_extrapolation
from scaling_rec.analysis.fits import ChinchillaFit, PowerLawFit, fit_chinchilla, fit_power_law
from scaling_rec.analysis.isoflop import IsoFlopFit, compute_frontier, isoflop_optima
from scaling_rec.analysis.report import write_report
from scaling_rec.analysis.results import ResultProblem, load_results, load_run_table, select_target

__all__ = [
    "BootstrapResult",
    "ChinchillaFit",
    "HoldoutResult",
    "IsoFlopFit",
    "PowerLawFit",
    "ResultProblem",
    "bootstrap",
    "compute_frontier",
    "fit_chinchilla",
    "fit_power_law",
    "holdout_extrapolation",
    "isoflop_optima",
    "load_results",
    "load_run_table",
    "select_target",
    "write_report",
]
