"""A mapped trace file is not kept resident while it is read: each chunk's pages are dropped
from the process once decoded (the page cache keeps them), so a file larger than the model's
state does not set a replay's peak RSS. (The footprint scan drops each window it read the
same way; BENCHMARKS.md, "26 to 29 bytes a page", measures both.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from epcsim.workload.traces import write_oracle_general

PROBE = """
import sys
from epcsim.workload.traces import open_trace

def rss_file():
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    return 0

reader = open_trace(sys.argv[1], sys.argv[2])
reader.chunk_requests = 1 << 16
chunks = iter(reader)
next(chunks)            # the decoder compiled or loaded (its libraries are file pages too)
before = rss_file()
most = 0
for chunk in chunks:
    most = max(most, rss_file() - before)
print(most)
"""


@pytest.mark.parametrize("fmt", ["oracleGeneral", "npy"])
def test_reading_a_trace_file_keeps_few_of_its_pages(tmp_path: Path, fmt: str) -> None:
    n = 2 << 20                                     # 2 Mi requests: a 48 or 16 MiB file
    ids = np.arange(n, dtype=np.uint64) % 1000
    path = tmp_path / f"big.{fmt}"
    if fmt == "npy":
        np.save(path, ids)
    else:
        write_oracle_general(path, ids)
    out = subprocess.run([sys.executable, "-c", PROBE, str(path), fmt], capture_output=True,
                         text=True, check=True)
    # Kept resident, the file's pages would add up to its size by the last chunk; dropped
    # as they are decoded, a chunk's (1.5 or 0.5 MiB) and the pages around it.
    assert int(out.stdout) < 4 << 20, int(out.stdout)
