"""Load a results store (`<workdir>/runs/<run_id>/{result.json, config.json}`) into a DataFrame.

One row per run.  Columns: the result.json fields of docs/CONTRACTS.md ("Run directory"), the
`eval` metrics flattened to `eval/<metric>` (nested dicts joined with '/'), identity fields taken
from the result or config.json (`family`, `model_name`, `size`, `study`), and the analysis columns
`C` (training FLOPs spent, falling back to planned), `budget` (FLOPs planned: the IsoFLOP group),
`N` (n_dense, or n_dense + n_emb), `D` (examples seen), `usable` and `exclude_reason`.
`family` is the group the report fits per: the sweep point's `group_label` (one arm of an ablation,
e.g. 'hstu (ratings >= 4)') when it set one, taking precedence over the result's family.

A corrupted or partial result.json never stops the load: it is warned about and listed in the
returned `problems`; a partial one keeps its row, flagged unusable.  Runs whose status is
`diverged`, `degenerate` or `failed` are kept and flagged (`usable=False`,
`exclude_reason='status=diverged'`; a degenerate run's reason adds its `degenerate_reason`: its scores
collapsed, so its metrics are those of a random ranking, not of its size and budget).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd

from scaling_rec.calibration import TARGET_IN_HISTORY, at_grid_edge
from scaling_rec.errors import ResultError

REQUIRED_FIELDS = (
    "status",
    "run_id",
    "flops_planned",
    "flops_spent",
    "n_dense",
    "n_emb",
    "examples_seen",
    "final_train_loss",
    "eval",
)
NUMERIC_FIELDS = ("flops_planned", "flops_spent", "n_dense", "n_emb", "examples_seen", "final_train_loss")
STATUSES = ("ok", "diverged", "degenerate", "failed")

# Where identity fields may live, first hit wins: result.json keys, then dotted config.json keys.
_IDENTITY_KEYS = {
    "family": ("family", "model.family", "model.arch", "model.type", "model.kind"),
    "model_name": ("model_name", "model.name", "model.variant_name"),
    "size": ("size", "size_label", "model.size", "model.variant", "model.size_label"),
    "study": ("study", "study", "wandb.group", "experiment", "name"),
}


class ResultWarning(UserWarning):
    """A run in the results store could not be read fully (see `load_results`' problems)."""


@dataclasses.dataclass(frozen=True)
class ResultProblem:
    """A run directory whose result could not be used as is: where and why."""

    path: str
    reason: str


def _dotted(d: dict[str, Any], key: str) -> Any:
    cur: Any = d
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def flatten(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    """{'a': {'b': 1}} → {'<prefix>/a/b': 1}; leaves that are not dicts are kept as they are."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}/{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name))
        else:
            out[name] = v
    return out


def read_result(path: pathlib.Path) -> tuple[dict[str, Any], list[str]]:
    """Parse one result.json; returns (fields, list of what is missing or malformed).

    Raises:
      ResultError: the file is unreadable, not JSON, or not a JSON object.
    """
    try:
        text = path.read_text()
    except OSError as e:
        raise ResultError(f"{path}: cannot read ({e})") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); the run may have been cut off") from e
    if not isinstance(data, dict):
        raise ResultError(f"{path}: expected a JSON object, got {type(data).__name__}")
    issues = [f"missing field '{k}'" for k in REQUIRED_FIELDS if k not in data]
    if "status" in data and data["status"] not in STATUSES:
        issues.append(f"status {data['status']!r} is not one of {STATUSES}")
    for k in NUMERIC_FIELDS:
        v = data.get(k)
        if k in data and not (isinstance(v, int | float) and not isinstance(v, bool)) and v is not None:
            issues.append(f"field '{k}' is {v!r}, not a number")
    if "eval" in data and not isinstance(data["eval"], dict):
        issues.append(f"field 'eval' is {type(data['eval']).__name__}, not an object")
    return data, issues


def _read_config(path: pathlib.Path) -> tuple[dict[str, Any], str | None]:
    if not path.exists():
        return {}, None
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {}, f"config.json unreadable ({e})"
    return (cfg, None) if isinstance(cfg, dict) else ({}, "config.json is not a JSON object")


def _identity(result: dict[str, Any], labels: dict[str, Any], config: dict[str, Any],
              default_study: str) -> dict[str, Any]:
    """family/model_name/size/study from result.json, then the sweep's labels, then config.json; a
    sweep group label (`labels['group']`) replaces the family, so arms of one family are grouped apart
    (`model_family` keeps the model's own)."""
    out: dict[str, Any] = {}
    for col, keys in _IDENTITY_KEYS.items():
        val = result.get(keys[0]) or labels.get(col) or None  # '' (an unlabelled size) counts as absent
        for k in keys[1:]:
            if val is not None:
                break
            val = _dotted(config, k) or None
        out[col] = val
    # Size ladders are named '<family>/<size>' (DESIGN.md, 'hstu/S'): split such a name.
    if isinstance(out["size"], str) and "/" in out["size"]:
        out["model_name"] = out["model_name"] if out["model_name"] is not None else out["size"]
        out["size"] = None
    name = out["model_name"]
    if isinstance(name, str) and "/" in name:
        fam, _, size = name.partition("/")
        out["family"] = out["family"] if out["family"] is not None else fam
        out["size"] = out["size"] if out["size"] is not None else size
    if out["family"] is None and isinstance(name, str):
        out["family"] = re.split(r"[-_/]", name)[0]
    out["model_family"] = str(out["family"]) if out["family"] is not None else "all"
    out["family"] = str(labels.get("group") or out["model_family"])
    out["study"] = str(out["study"]) if out["study"] is not None else default_study
    return out


def _sweep_labels(study_dir: pathlib.Path) -> dict[str, dict[str, Any]]:
    """run_id → labels (size, family, budget, and group when set) from the sweep's spec files
    `<study>/sweep/specs/*.json` (one per run ever launched, so runs of an earlier preset in the same
    study keep theirs) and its latest `<study>/sweep/manifest.json`; {} when no sweep wrote them."""
    labels: dict[str, dict[str, Any]] = {}
    for path in sorted((study_dir / "sweep" / "specs").glob("*.json")):
        try:
            d = json.loads(path.read_text())
            labels[str(d["run_id"])] = {"run_id": d["run_id"], **d.get("labels", {})}
        except (OSError, json.JSONDecodeError, AttributeError, KeyError, TypeError):
            continue
    try:
        runs = json.loads((study_dir / "sweep" / "manifest.json").read_text()).get("runs", [])
        labels.update({r["run_id"]: r for r in runs if isinstance(r, dict) and "run_id" in r})
    except (OSError, json.JSONDecodeError, AttributeError):
        pass
    return labels


def _latest_sweep_ids(study_dir: pathlib.Path) -> set[str] | None:
    """Run ids of the study's latest sweep (`<study>/sweep/manifest.json`), or None without a readable one."""
    try:
        runs = json.loads((study_dir / "sweep" / "manifest.json").read_text())["runs"]
        return {str(r["run_id"]) for r in runs}
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None


STALE_REASON = ("not in the study's latest sweep (sweep/manifest.json): a run of an earlier version of the "
                "experiment; rerun that version's sweep to use it, or delete the run directory")


def _run_dirs(workdir: pathlib.Path) -> list[tuple[pathlib.Path, str]]:
    """(run dir, default study name) for `workdir/runs/*` or, failing that, `workdir/*/runs/*`."""
    if (workdir / "runs").is_dir():
        return [(p, workdir.resolve().name) for p in sorted((workdir / "runs").iterdir()) if p.is_dir()]
    out = []
    for study_dir in sorted(workdir.iterdir()):
        if (study_dir / "runs").is_dir():
            out += [(p, study_dir.name) for p in sorted((study_dir / "runs").iterdir()) if p.is_dir()]
    return out


def _as_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def load_results(
    workdir: str | pathlib.Path, *, size: str = "n_dense", warn: bool = True, latest_sweep_only: bool = False
) -> tuple[pd.DataFrame, list[ResultProblem]]:
    """Load every `runs/<run_id>/result.json` under workdir into one DataFrame.

    Args:
      workdir: a study directory holding `runs/`, or a directory of studies each holding `runs/`.
      size: which parameter count is `N`: 'n_dense' (non-embedding, the default) or 'n_total'
        (n_dense + n_emb).
      warn: emit a ResultWarning per problem (they are returned either way).
      latest_sweep_only: in a study whose sweep wrote a manifest, exclude the runs the latest sweep did not
        name (STALE_REASON): for a study that belongs to one preset, whose earlier versions left their runs
        in the same directory. Off by default, since presets may share a study on purpose (e.g. quick and
        full IsoFLOP grids pooled in one report).
    Returns:
      (df, problems): one row per run directory with a readable result.json (partial ones kept
      but flagged unusable); problems lists every unreadable/partial result and runs without one.
    Raises:
      FileNotFoundError: workdir does not exist.
    """
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"results store {workdir} does not exist (expected <workdir>/runs/<run_id>/)")
    if size not in ("n_dense", "n_total"):
        raise ValueError(f"size must be 'n_dense' or 'n_total', got {size!r}")
    rows: list[dict[str, Any]] = []
    problems: list[ResultProblem] = []
    labels_by_study: dict[pathlib.Path, dict[str, dict[str, Any]]] = {}
    latest_by_study: dict[pathlib.Path, set[str] | None] = {}
    for run_dir, study in _run_dirs(workdir):
        study_dir = run_dir.parent.parent
        if study_dir not in labels_by_study:
            labels_by_study[study_dir] = _sweep_labels(study_dir)
            latest_by_study[study_dir] = _latest_sweep_ids(study_dir) if latest_sweep_only else None
        res_path = run_dir / "result.json"
        if not res_path.exists():
            problems.append(ResultProblem(str(run_dir), "no result.json (unfinished or not started)"))
            continue
        try:
            data, issues = read_result(res_path)
        except ResultError as e:
            problems.append(ResultProblem(str(res_path), str(e)))
            continue
        config, cfg_issue = _read_config(run_dir / "config.json")
        if cfg_issue:
            problems.append(ResultProblem(str(run_dir / "config.json"), cfg_issue))
        if issues:
            problems.append(ResultProblem(str(res_path), "partial result: " + "; ".join(issues)))
        row: dict[str, Any] = {"run_id": data.get("run_id") or run_dir.name, "run_dir": str(run_dir)}
        # Every other scalar field is kept too (final_eval_loss, tokens_seen, steps, ...).
        row.update({k: v for k, v in data.items()
                    if k not in row and (isinstance(v, int | float | str | bool) or v is None)})
        row["status"] = data.get("status", "unknown")
        for k in NUMERIC_FIELDS:
            row[k] = _as_float(data.get(k))
        if isinstance(data.get("eval"), dict):
            row.update({k: _as_float(v) for k, v in flatten(data["eval"], "eval").items()})
        labels = labels_by_study[study_dir].get(str(row["run_id"]), {})
        row.update(_identity(data, labels, config, study))
        latest = latest_by_study[study_dir]
        if issues:
            row["exclude_reason"] = "partial result.json: " + "; ".join(issues)
        elif latest is not None and str(row["run_id"]) not in latest:
            row["exclude_reason"] = STALE_REASON
        elif row["status"] != "ok":
            why = data.get("degenerate_reason") if row["status"] == "degenerate" else None
            row["exclude_reason"] = f"status={row['status']}" + (f" ({why})" if why else "")
        else:
            row["exclude_reason"] = ""
        rows.append(row)
    if warn:
        for p in problems:
            warnings.warn(f"{p.path}: {p.reason}", ResultWarning, stacklevel=2)
    df = pd.DataFrame(rows)
    if df.empty:
        return df, problems
    spent, planned = df["flops_spent"], df["flops_planned"]
    df["C"] = spent.where(np.isfinite(spent) & (spent > 0), planned)
    df["budget"] = planned.where(np.isfinite(planned) & (planned > 0), df["C"])
    df["N"] = df["n_dense"] if size == "n_dense" else df["n_dense"] + df["n_emb"]
    df["D"] = df["examples_seen"]
    df["usable"] = df["exclude_reason"] == ""
    return df, problems


RUN_TABLE_REQUIRED = ("run_id", "family", "C", "N", "D", "usable")


def load_run_table(path: str | pathlib.Path) -> pd.DataFrame:
    """A study's run table (the runs.csv that benchmarks.study_report writes) read back for a re-analysis.

    The table keeps what the fits read (family, C, budget, N, D, size, status, `usable`, `exclude_reason`
    when written, every eval/ metric), so a committed study can be refitted with the current analysis when
    its results store is gone. Returns the DataFrame `write_report` takes: `exclude_reason` '' where the
    table left it empty (flagged runs without one get theirs from write_report), `usable` as bool.
    Raises ResultError when a required column is missing or `usable` holds anything but true/false.
    """
    path = pathlib.Path(path)
    df = pd.read_csv(path, dtype={"run_id": str, "family": str, "size": str, "status": str, "exclude_reason": str})
    missing = [c for c in RUN_TABLE_REQUIRED if c not in df.columns]
    if missing:
        raise ResultError(f"{path}: not a run table, missing columns {missing} (need {list(RUN_TABLE_REQUIRED)})")
    usable = df["usable"].astype(str).str.strip().str.lower()
    if not usable.isin(("true", "false")).all():
        bad = sorted(set(df["usable"].astype(str)[~usable.isin(("true", "false"))]))[:3]
        raise ResultError(f"{path}: column 'usable' must be True/False, found {bad}")
    df["usable"] = usable == "true"
    df["exclude_reason"] = df["exclude_reason"].fillna("") if "exclude_reason" in df else ""
    return df


# Metrics where higher is better; a scaling law is fitted to 1 − metric (an error rate) instead.
_HIGHER_IS_BETTER = re.compile(r"(ndcg|hr@|hit|recall|precision|mrr|auc|accuracy|acc@|map@)", re.IGNORECASE)
# Loss-like columns, in order of preference for the default fitted quantity. First the held-out losses
# of the test split at the best-validation point: the calibrated next-item cross-entropy of sequential runs
# (scaling_rec.calibration; only in results that carry `eval/valid/temperature`: older results' xent is the
# raw one) and the logloss of CTR runs. Test, not validation: validation already chose the checkpoint and
# the temperature, so its loss is selected on; the test loss of that choice is the run's unbiased held-out
# number, and every study then fits the same split. Then older results' loss columns.
_LOSS_PREFERENCE = (
    "eval/test/xent", "eval/test/logloss",
    "final_eval_loss", "eval/loss", "eval/valid/loss", "eval/final_eval_loss", "eval/eval_loss",
    "eval/logloss", "eval/valid/logloss", "eval/valid/xent",
)
_CALIBRATED_MARK = "eval/valid/temperature"
_REPEAT_MARK = "eval/valid/" + TARGET_IN_HISTORY
# What a fitted column measures, by its last path component, for the report's first lines.
_DESCRIPTIONS = {
    "xent": "next-item cross-entropy over the candidate items, nats per event, one temperature per run fitted "
            "on validation",
    "xent_raw": "next-item cross-entropy of the logits as trained (uncalibrated), nats per event",
    "logloss": "binary cross-entropy, nats per example",
    "ne": "normalised entropy: logloss / entropy of the training click rate",
    "ndcg": "NDCG of the target's rank among the candidate items, higher is better",
    "hr": "share of targets ranked within the cutoff, higher is better",
}


@dataclasses.dataclass(frozen=True)
class TargetChoice:
    """What is fitted: `column` of the DataFrame, transformed ('none', 'one_minus' or 'reciprocal'), and why."""

    column: str
    transform: str
    reason: str

    @property
    def label(self) -> str:
        """Axis label of the fitted quantity."""
        return {"one_minus": f"1 − {self.column}", "reciprocal": f"1 / {self.column}"}.get(self.transform, self.column)

    def values(self, df: pd.DataFrame) -> np.ndarray:
        """The fitted quantity for each row of df (float64)."""
        y = df[self.column].to_numpy(dtype=np.float64)
        if self.transform == "reciprocal":
            with np.errstate(divide="ignore"):
                return np.where(y > 0, 1.0 / np.where(y > 0, y, 1.0), np.inf)
        return 1.0 - y if self.transform == "one_minus" else y


def _has_usable_value(col: pd.Series) -> bool:
    vals = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    return bool(np.any(np.isfinite(vals) & (vals > 0)))


def higher_is_better(column: str) -> bool:
    """Whether a metric column is a ranking/accuracy metric (NDCG, HR, recall, MRR, AUC …)."""
    return bool(_HIGHER_IS_BETTER.search(column))


def select_target(df: pd.DataFrame, metric: str | None = None, transform: str = "auto") -> TargetChoice:
    """Choose the fitted quantity.

    Args:
      metric: a column (e.g. 'eval/test/ndcg@10', 'final_train_loss'); None picks the first loss-like
        column with a usable (finite, > 0) value: eval/test/xent (calibrated, sequential runs),
        eval/test/logloss (CTR runs), final_eval_loss, eval/loss, …, any 'eval/*loss*' or 'eval/*xent*',
        else final_train_loss.
      transform: 'none', 'one_minus' (fit 1 − metric), 'reciprocal' (fit 1 / metric: for a ranking metric
        far below its ceiling, e.g. NDCG@10 of 0.005-0.05, where 1 − metric sits in a narrow band near 1
        and its power law cannot be identified; the fitted E is then 1 / the metric's ceiling), or
        'auto' (one_minus for higher-is-better metrics such as NDCG/HR/AUC, none for losses).
    Raises:
      ValueError: unknown transform, or the metric is not a column (the message lists the columns).
    """
    if transform not in ("auto", "none", "one_minus", "reciprocal"):
        raise ValueError(f"transform must be 'auto', 'none', 'one_minus' or 'reciprocal', got {transform!r}")
    if metric is None:
        loss_cols = [c for c in _LOSS_PREFERENCE if c in df.columns]
        loss_cols += sorted(c for c in df.columns if c.startswith("eval/") and ("loss" in c or "xent" in c))
        calibrated = _CALIBRATED_MARK in df.columns and _has_usable_value(df[_CALIBRATED_MARK])
        loss_cols = [c for c in loss_cols if _has_usable_value(df[c]) and (calibrated or c != "eval/test/xent")]
        if loss_cols:
            metric, reason = loss_cols[0], f"default: first loss column with usable values ({loss_cols[0]})"
        elif "final_train_loss" in df.columns:
            metric, reason = "final_train_loss", "default: no eval loss in the results, final_train_loss"
        else:
            raise ValueError("no loss column in the results; pass metric= one of " + ", ".join(df.columns))
    else:
        reason = f"requested: {metric}"
    if metric not in df.columns:
        metric_cols = [c for c in df.columns if c.startswith("eval/") or "loss" in c]
        tail = metric.rsplit("/", 1)[-1]
        close = [c for c in metric_cols if c.endswith("/" + tail)]
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ValueError(f"metric {metric!r} not in the results{hint}; available: {', '.join(metric_cols)}")
    if transform == "auto":
        transform = "one_minus" if higher_is_better(metric) else "none"
        if transform == "one_minus":
            reason += "; higher is better, so 1 − metric is fitted"
    described = _DESCRIPTIONS.get(metric.rsplit("/", 1)[-1].split("@")[0])
    if described and metric.startswith("eval/"):
        reason += f"; {metric.split('/')[1]} split: {described}"
    return TargetChoice(column=metric, transform=transform, reason=reason)


def split_usable(df: pd.DataFrame, target: TargetChoice) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows to fit, excluded rows with `exclude_reason` filled): drops flagged runs, rows whose fitted
    quantity, C, N or D is non-finite or non-positive, and, when an '…/xent' column is fitted, rows without a
    finite eval/valid/temperature (their xent is the raw cross-entropy: a rerun study keeps the ids of results
    made before calibration, and mixing raw and calibrated values would bend the fit), rows whose temperature
    is an end of the calibration grid (scaling_rec.calibration: their xent is an upper bound, unboundedly
    biased) and rows whose targets repeat excluded history items (eval/valid/target_in_history > 0)."""
    df = df.copy()
    reasons = df["exclude_reason"].astype(str).copy()
    y = target.values(df)
    checks = [("fitted value", y)] + [(c, df[c].to_numpy(dtype=np.float64)) for c in ("C", "N", "D")]
    for name, vals in checks:
        bad = (~np.isfinite(vals) | (vals <= 0)) & (reasons == "").to_numpy()
        reasons[bad] = f"{name} non-finite or ≤ 0"
    if target.column.endswith("/xent"):  # results from before calibration stored the raw CE under this name
        temps = (pd.to_numeric(df[_CALIBRATED_MARK], errors="coerce").to_numpy(dtype=np.float64)
                 if _CALIBRATED_MARK in df.columns else np.full(len(df), np.nan))
        raw = ~np.isfinite(temps) & (reasons == "").to_numpy()
        reasons[raw] = "xent is the raw one (result predates calibration)"
        edge = np.array([bool(np.isfinite(x) and at_grid_edge(x)) for x in temps], bool) & (reasons == "").to_numpy()
        reasons[edge] = ("calibration temperature at its grid's edge: the xent is an upper bound of unknown bias "
                         "(a model at or near chance)")
        repeats = (pd.to_numeric(df[_REPEAT_MARK], errors="coerce").fillna(0.0).to_numpy(dtype=np.float64)
                   if _REPEAT_MARK in df.columns else np.zeros(len(df)))
        improper = (repeats > 0) & (reasons == "").to_numpy()
        reasons[improper] = ("targets repeat history items that eval.exclude_history removed: the xent's candidates "
                             "depend on the target, not a proper cross-entropy")
    df["exclude_reason"] = reasons
    keep = reasons == ""
    return df[keep].copy(), df[~keep].copy()
