"""scaling_rec.data.stream.ProcessRowsStream and place_process_rows on one process (the two-process run is
tests/train/test_streamed_processes.py): the rows a process streams are its block of the global batch with
the global num_sequences, and placing them gives place_batch's arrays, or a MeshError naming the mismatch."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from scaling_rec.data import prepared
from scaling_rec.data.stream import ProcessRows, ProcessRowsStream, place_process_rows
from scaling_rec.errors import MeshError
from scaling_rec.parallel.mesh import make_mesh
from scaling_rec.parallel.sharding import place_batch
from tests.data.test_events_prepared import COLS, write_log
from tests.data.test_events_stream import make_stream


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    d = tmp_path_factory.mktemp("process_rows")
    log = write_log(d / "log.csv", n=2000)
    prepared.prepare(log, d / "out", COLS, num_shards=3, chunk_bytes=4096, write=lambda line: None)
    return d / "out"


def _rows_stream(prepared_dir, process_index: int, process_count: int) -> ProcessRowsStream:
    s = make_stream(prepared_dir, process_index=process_index, process_count=process_count)
    return ProcessRowsStream(s.examples, s.spec, seed=s.seed, time_origin=s.time_origin,
                             process_index=process_index, process_count=process_count)


def test_each_process_streams_its_block_with_the_global_count(out):
    one = make_stream(out)
    last = len(one.plan(0)) - 1  # a short batch: 2000 events leave a remainder
    for pid in range(2):
        rows_stream, part = _rows_stream(out, pid, 2), make_stream(out, process_index=pid, process_count=2)
        for step in (0, last):
            rows = rows_stream._build(one.plan(0)[step])
            local = part.build(one.plan(0)[step])
            assert (rows.lo, rows.hi, rows.size) == (pid * 4, pid * 4 + 4, 8)
            assert int(rows.batch.num_sequences) == len(one.plan(0)[step])
            for f in dataclasses.fields(local):
                if f.name != "num_sequences":
                    np.testing.assert_array_equal(getattr(rows.batch, f.name), getattr(local, f.name))


def test_placing_every_row_equals_place_batch_and_a_foreign_block_is_refused(out):
    mesh = make_mesh(-1, 1, 1)
    batch = next(make_stream(out).iterate(0))
    placed = place_process_rows(ProcessRows(batch, 0, 8, 8), mesh)
    want = place_batch(batch, mesh)
    for a, b in zip(jax.tree.leaves(placed), jax.tree.leaves(want), strict=True):
        assert a.sharding == b.sharding and a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    half = jax.tree.map(lambda x: x[:4] if x.ndim else x, batch)
    with pytest.raises(MeshError, match=r"streamed rows \[0, 4\) of each batch of 8, but the mesh .* puts rows "
                                        r"\[0, 8\)"):
        place_process_rows(ProcessRows(half, 0, 4, 8), mesh)
