"""Child process of the stream kill/resume test: appends 'step digest' lines for steps from argv[3] on."""

from __future__ import annotations

import os
import sys
import time

from tests.data.test_events_stream import batch_digest, make_stream

if __name__ == "__main__":
    prepared_dir, out_path, start, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with open(out_path, "a") as fh:
        for step, batch in enumerate(make_stream(prepared_dir).iterate(start), start=start):
            if step >= stop:
                break
            fh.write(f"{step} {batch_digest(batch)}\n")
            fh.flush()
            os.fsync(fh.fileno())
            time.sleep(0.05)  # leaves the parent time to kill us mid-epoch
