"""The default fitted quantity (issue 15): calibrated test cross-entropy for sequential runs, test logloss for
CTR runs, older results' losses otherwise, and the report's first lines say which."""

from __future__ import annotations

import pandas as pd

from scaling_rec.analysis import select_target
from scaling_rec.analysis.results import split_usable


def frame(**cols: float) -> pd.DataFrame:
    base = {"final_eval_loss": [4.0, 3.9], "final_train_loss": [4.2, 4.1], "eval/test/ndcg@10": [0.05, 0.06]}
    return pd.DataFrame({**base, **{k.replace("__", "/"): [v, v * 0.9] for k, v in cols.items()}})


def test_sequential_runs_fit_calibrated_test_cross_entropy():
    t = select_target(frame(eval__test__xent=5.1, eval__valid__xent=5.0, eval__test__xent_raw=7.0,
                            eval__valid__temperature=2.0))
    assert (t.column, t.transform) == ("eval/test/xent", "none")
    assert "one temperature per run fitted on validation" in t.reason and "test split" in t.reason


def test_results_written_before_calibration_do_not_pass_raw_cross_entropy_as_calibrated():
    t = select_target(frame(eval__test__xent=7.0, eval__valid__xent=7.1))
    assert t.column == "final_eval_loss"


def test_ctr_runs_fit_test_logloss_and_ne_is_described():
    t = select_target(frame(eval__test__logloss=0.45, eval__valid__logloss=0.44, eval__test__ne=0.8))
    assert t.column == "eval/test/logloss" and "nats per example" in t.reason
    ne = select_target(frame(eval__test__ne=0.8), "eval/test/ne")
    assert ne.reason.startswith("requested: eval/test/ne") and "normalised entropy" in ne.reason


def test_a_requested_ranking_metric_is_described_too():
    t = select_target(frame(), "eval/test/ndcg@10", "reciprocal")
    assert t.label == "1 / eval/test/ndcg@10" and "test split: NDCG" in t.reason


def test_a_rerun_study_mixing_raw_and_calibrated_results_fits_only_the_calibrated():
    # A rerun study keeps the run ids of results made before calibration: their eval/*/xent is the raw
    # cross-entropy and they carry no temperature. The default picks eval/test/xent (some rows are
    # calibrated); the raw rows must be excluded with the reason, not fitted beside the calibrated ones.
    df = pd.DataFrame({"eval/test/xent": [5.1, 4.9, 11.2, 4.7], "eval/valid/temperature": [2.0, 2.5, None, 1.6],
                       "final_eval_loss": [4.0, 3.9, 3.8, 3.7], "C": 1e12, "N": 1e6, "D": 1e6,
                       "exclude_reason": ""})
    t = select_target(df)
    assert t.column == "eval/test/xent"
    used, excluded = split_usable(df, t)
    assert list(used["eval/test/xent"]) == [5.1, 4.9, 4.7]
    assert list(excluded["exclude_reason"]) == ["xent is the raw one (result predates calibration)"]
    assert len(split_usable(df, select_target(df, "final_eval_loss"))[0]) == 4
