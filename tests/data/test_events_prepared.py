"""launch/prepare.py and scaling_rec/data/prepared.py: the sharded format equals the in-memory path,
resumes after an interruption, names bad rows, and records what made it."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from scaling_rec.data import events, prepared
from scaling_rec.errors import ConfigError, DataFormatError

ROOT = pathlib.Path(__file__).resolve().parents[2]
COLS = events.EventColumns(user="u", item="i", timestamp="t", rating="r")


def write_log(path: pathlib.Path, n: int = 3000, seed: int = 0, string_ids: bool = False) -> pathlib.Path:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 200, n) * 7 + 3
    items = rng.zipf(1.5, n) % 400 + 10
    df = pd.DataFrame({"u": users, "i": items, "t": rng.integers(0, 50, n), "r": rng.integers(1, 6, n)})
    if string_ids:
        df["u"] = [f"user{x:04d}" for x in users]
        df["i"] = [f"sku-{x}" for x in items]
    if path.suffix == ".parquet":
        df.to_parquet(path, row_group_size=500)
    else:
        df.to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",")
    return path


def _same(a, b):
    assert (a.num_users, a.num_items, a.num_events) == (b.num_users, b.num_items, b.num_events)
    for x, y in ((a.items, b.items), (a.user_offsets, b.user_offsets), (a.timestamps, b.timestamps),
                 (a.ratings, b.ratings)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name, string_ids", [("log.csv", False), ("log.tsv", True), ("log.parquet", False)])
def test_prepared_equals_the_in_memory_path(tmp_path, name, string_ids):
    log = write_log(tmp_path / name, string_ids=string_ids)
    lines = []
    manifest = prepared.prepare(log, tmp_path / "out", COLS, num_shards=3, chunk_bytes=4096, command="cmd",
                                write=lines.append)
    data = prepared.PreparedData.open(tmp_path / "out")
    data.verify()
    _same(data.to_sequences(), events.load_events(log, COLS))
    assert manifest["counts"]["events"] == 3000 and manifest["counts"]["shards"] == 3
    assert manifest["command"] == "cmd" and manifest["source"]["path"] == str(log)
    assert sum(s["events"] for s in manifest["shards"]) == 3000
    assert any(line.startswith("prepare partition:") for line in lines)
    users = np.load(tmp_path / "out" / "users.npy")
    assert users.size == data.num_users and np.all(users[:-1] < users[1:])
    u = int(np.argmax(data.lengths))
    seq = events.load_events(log, COLS)
    np.testing.assert_array_equal(data.user_events(u)["items"], seq.user_items(u))
    assert not (tmp_path / "out" / ".work").exists()
    assert prepared.prepare(log, tmp_path / "out", COLS) == manifest  # finished: returned as it is
    with pytest.raises(ConfigError, match="was prepared from"):
        prepared.prepare(log, tmp_path / "out", events.EventColumns(user="u", item="i", timestamp="t"))


@pytest.mark.parametrize("stops", [[2], [9], [2, 5, 4]])
def test_an_interrupted_prepare_resumes_to_the_same_files(tmp_path, stops):
    log = write_log(tmp_path / "log.csv")
    ref = prepared.prepare(log, tmp_path / "ref", COLS, num_shards=4, chunk_bytes=4096)
    for stop in stops:  # scan reads 9 chunks, so 9 stops at the first of partition
        assert prepared.prepare(log, tmp_path / "out", COLS, num_shards=4, chunk_bytes=4096,
                                stop_after_chunks=stop)["status"] == "interrupted"
    again = prepared.prepare(log, tmp_path / "out", COLS, num_shards=4, chunk_bytes=4096)
    assert again["shards"] == ref["shards"] and again["id_maps"] == ref["id_maps"]


def test_a_bad_row_stops_prepare_with_its_line_or_is_counted(tmp_path):
    log = write_log(tmp_path / "log.csv", n=500)
    with log.open("a") as fh:
        fh.write("17,x,3,4\n10,11,12,1\n")
    with pytest.raises(DataFormatError, match=r"log.csv:502: item 'x' is not an integer"):
        prepared.prepare(log, tmp_path / "bad", COLS, chunk_bytes=2048)
    manifest = prepared.prepare(log, tmp_path / "skip", COLS, chunk_bytes=2048, skip_bad_rows=True)
    assert manifest["counts"]["skipped_rows"] == 1 and manifest["counts"]["events"] == 501
    assert "log.csv:502" in manifest["skipped_examples"][0]


def test_prepare_command_line(tmp_path):
    log = write_log(tmp_path / "log.csv", n=400)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "launch.prepare", f"--input={log}", f"--out={out}", "--columns=user=u,item=i,t=t"]
    bad = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown roles ['t']" in bad.stderr
    args[-1] = "--columns=user=u,item=i,timestamp=t"
    ok = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["events"] == 400 and "--columns=user=u,item=i,timestamp=t" in manifest["command"]
    assert "prepare scan:" in ok.stderr


def test_prepare_killed_with_sigkill_resumes_to_the_same_files(tmp_path):
    log = write_log(tmp_path / "log.csv", n=250_000)  # about 3 MiB: 3 chunks of 1 MiB per reading stage
    ref = prepared.prepare(log, tmp_path / "ref", COLS, num_shards=3, chunk_bytes=1 << 20, write=lambda line: None)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "launch.prepare", f"--input={log}", f"--out={out}", "--columns=user=u,item=i,"
            "timestamp=t,rating=r", "--num_shards=3", "--chunk_mb=1"]
    child = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / ".work" / "state.json"
    deadline = time.time() + 120
    try:
        while not (state.exists() and "partition" in json.loads(state.read_text())):
            assert child.poll() is None, "prepare finished before it could be killed"
            assert time.time() < deadline, "prepare reached no partition chunk in time"
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert not (out / "manifest.json").exists()
    again = prepared.prepare(log, out, COLS, num_shards=3, chunk_bytes=1 << 20, write=lambda line: None)
    assert again["shards"] == ref["shards"] and again["counts"] == ref["counts"]


def test_millisecond_timestamps_become_seconds_in_memory_and_prepared(tmp_path):
    log = write_log(tmp_path / "log.csv")
    df = pd.read_csv(log)
    df["t"] = df["t"] * 1000 + (np.arange(len(df)) * 7919) % 1000  # ms, out of order within each second
    ms_log = tmp_path / "log_ms.csv"
    df.to_csv(ms_log, index=False)
    ours = events.load_events(ms_log, COLS, timestamp_unit="ms")
    by_ms = events.load_events(ms_log, COLS)
    np.testing.assert_array_equal(ours.items, by_ms.items)  # ordered by the original milliseconds
    np.testing.assert_array_equal(ours.timestamps, by_ms.timestamps // 1000)
    prepared.prepare(ms_log, tmp_path / "out", COLS, num_shards=2, chunk_bytes=4096, timestamp_unit="ms",
                     write=lambda line: None)
    _same(prepared.PreparedData.open(tmp_path / "out").to_sequences(), ours)
    with pytest.raises(ConfigError, match="holds seconds"):
        events.load_events(tmp_path / "out", COLS, timestamp_unit="ms")
    with pytest.raises(ConfigError, match="timestamp unit 's'"):  # a finished directory made with another unit
        prepared.prepare(ms_log, tmp_path / "out", COLS)
    with pytest.raises(ConfigError, match="'h' is not one of"):
        events.load_events(ms_log, COLS, timestamp_unit="h")


@pytest.mark.parametrize("k", [3, 12])
def test_kcore_inside_prepare_equals_the_in_memory_kcore(tmp_path, k):
    log = write_log(tmp_path / "log.csv", string_ids=True)
    ref = events.load_events(log, COLS, kcore_k=k)
    assert ref.num_events < 3000 and ref.num_items < events.load_events(log, COLS).num_items
    manifest = prepared.prepare(log, tmp_path / "out", COLS, num_shards=3, chunk_bytes=4096, kcore=k,
                                write=lambda line: None)
    data = prepared.PreparedData.open(tmp_path / "out")
    _same(data.to_sequences(), ref)
    assert manifest["counts"]["events"] == ref.num_events and manifest["kcore"]["k"] == k
    assert manifest["kcore"]["passes"] >= 2 and manifest["kcore"]["events_before"] == 3000
    items = np.load(tmp_path / "out" / "items.npy")
    assert items.size == ref.num_items and list(items) == sorted(items)  # the kept ids, ascending
    with pytest.raises(ConfigError, match="kcore 0"):
        prepared.prepare(log, tmp_path / "out", COLS)


def test_a_prepare_killed_in_its_kcore_passes_resumes_to_the_same_files(tmp_path, monkeypatch):
    log = write_log(tmp_path / "log.csv")
    ref = prepared.prepare(log, tmp_path / "ref", COLS, num_shards=2, kcore=12, write=lambda line: None)
    real = prepared._save_npy

    def killed_after_first_pass(path, arr):
        real(path, arr)
        if path.name == "kcore_items.npy":
            raise KeyboardInterrupt
    monkeypatch.setattr(prepared, "_save_npy", killed_after_first_pass)
    with pytest.raises(KeyboardInterrupt):
        prepared.prepare(log, tmp_path / "out", COLS, num_shards=2, kcore=12, write=lambda line: None)
    monkeypatch.setattr(prepared, "_save_npy", real)
    again = prepared.prepare(log, tmp_path / "out", COLS, num_shards=2, kcore=12, write=lambda line: None)
    assert again["shards"] == ref["shards"] and again["counts"] == ref["counts"]


def test_prepare_defaults_the_timestamp_column_as_the_in_memory_path_does(tmp_path):
    """--columns without timestamp= keeps data.columns' default 'timestamp' (it dropped the column: file order,
    other test targets than in memory); an explicit empty timestamp= still means file order."""
    log = tmp_path / "log.csv"
    log.write_text("user,item,timestamp\n1,4,40\n1,2,20\n1,3,30\n1,1,10\n2,3,2\n2,2,1\n2,1,3\n")
    base = [sys.executable, "-m", "launch.prepare", f"--input={log}"]
    for name, columns in (("default", "user=user,item=item"), ("file_order", "user=user,item=item,timestamp=")):
        run = subprocess.run(base + [f"--out={tmp_path / name}", f"--columns={columns}"], cwd=ROOT,
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    memory = events.load_events(log, {"user": "user", "item": "item"})
    _same(prepared.PreparedData.open(tmp_path / "default").to_sequences(), memory)
    assert prepared.PreparedData.open(tmp_path / "file_order").to_sequences().items.tolist() == [4, 2, 3, 1, 3, 2, 1]


def test_a_changed_log_with_its_old_size_and_mtime_is_not_taken_for_the_prepared_one(tmp_path):
    """Edited to the same size with the mtime set back (what cp -p / rsync -t / tar x do), the log was served
    from the stale directory; its ctime gives it away."""
    import os

    log = write_log(tmp_path / "log.csv", n=200)
    prepared.prepare(log, tmp_path / "out", COLS, write=lambda _: None)
    st = log.stat()
    text = log.read_text()  # ends with the last row's rating digit and a newline: change that digit
    log.write_text(text[:-2] + ("1" if text[-2] != "1" else "2") + "\n")
    os.utime(log, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert log.stat().st_size == st.st_size and log.stat().st_mtime_ns == st.st_mtime_ns
    if log.stat().st_ctime_ns == st.st_ctime_ns:
        pytest.skip("this filesystem's change times are too coarse to tell the edit from the prepare")
    with pytest.raises(ConfigError, match="or the file changed since"):
        prepared.prepare(log, tmp_path / "out", COLS, write=lambda _: None)
