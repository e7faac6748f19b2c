"""What the sweep prints and stores about failures and time (issue 14, findings 3 and 7): a corrupt
result.json's advice in the printed summary, the '*' footer only under a '*' row, a stored error that keeps
its first and last lines, and a resumed run's setup measured from its last call."""

from __future__ import annotations

import io

from scaling_rec.sweep.executors import InlineExecutor
from scaling_rec.sweep.runner import RunState, clip_error, result_setup_s, run_sweep, summary_table
from scaling_rec.sweep.spec import load_experiment, load_sweep
from scaling_rec.sweep.store import Store, study_root
from tests.sweep.helpers import TINY


def _specs():
    base = load_experiment(TINY).get_config("one")
    return base, load_sweep(f"{TINY}:one", base)


def test_a_corrupt_result_json_shows_its_advice_in_the_printed_summary(tmp_path):
    base, specs = _specs()
    store = Store(study_root(tmp_path, base))
    store.run_dir(specs[0].run_id).mkdir(parents=True)
    (store.run_dir(specs[0].run_id) / "result.json").write_text("{not json")
    out = io.StringIO()
    report = run_sweep(specs, store, InlineExecutor(tmp_path), out=out, poll_s=0.01)
    assert [r.state for r in report.runs] == ["failed"]
    summary = out.getvalue().split("run_id", 1)[1]  # the table and what follows it
    assert f"{specs[0].run_id} failed: " in summary and "is corrupted" in summary and "delete it" in summary
    assert "(* finished before" not in summary


def test_the_star_footer_only_under_a_star_row():
    _, specs = _specs()
    fresh = summary_table([RunState(specs[0], state="ok", result={"status": "ok"})])
    assert "*" not in fresh and "(metric: ndcg@10)" in fresh
    skipped = summary_table([RunState(specs[0], state="skipped", result={"status": "ok"})])
    assert " ok*" in skipped and "(* finished before this sweep started" in skipped


def test_a_degenerate_row_keeps_the_columns_aligned():
    # 'degenerate' (10 characters, 11 with the '*') overflowed a status column 8 wide and shifted the metrics.
    _, specs = _specs()
    table = summary_table([RunState(specs[0], state="degenerate", result={"status": "degenerate"}),
                           RunState(specs[0], state="skipped", result={"status": "degenerate"}),
                           RunState(specs[0], state="ok", result={"status": "ok"})])
    head, _, *rows = table.splitlines()
    ends = {row[:head.index("valid") + len("valid")].rstrip()[-3:] for row in rows[:3]}
    assert {len(row) for row in rows[:3]} == {len(head)}, table
    assert ends == {"nan"}, table


def test_a_stored_error_keeps_its_first_and_last_lines():
    error = "\n".join(["Traceback (most recent call last):", "ValueError: the root cause",
                       *[f"  frame {i}" for i in range(500)], "CheckpointCorruptError: step 12 in /x/ckpt"])
    kept = clip_error(error)
    assert kept.splitlines()[1] == "ValueError: the root cause"
    assert kept.splitlines()[-1] == "CheckpointCorruptError: step 12 in /x/ckpt"
    assert "lines left out" in kept and len(kept.splitlines()) == 21
    assert clip_error("short\nerror") == "short\nerror"


def test_setup_of_a_resumed_run_is_its_last_calls():
    """wall_time_s sums every call's step loop; elapsed_s and call_wall_time_s are the last call's."""
    assert result_setup_s({"elapsed_s": 10.0, "wall_time_s": 100.0, "call_wall_time_s": 7.0}) == 3.0
    assert result_setup_s({"elapsed_s": 10.0, "wall_time_s": 7.5}) == 2.5  # results before call_wall_time_s
