"""Workloads for the replay engine: trace readers/writers and synthetic generators."""

from epcsim.workload.generators import (
    GENERATORS,
    mix,
    phase_lengths,
    sequential_scan,
    uniform,
    working_set_phases,
    zipf,
)
from epcsim.workload.traces import (
    FORMATS,
    Chunk,
    TraceError,
    TraceReader,
    compression,
    detect_format,
    open_trace,
    write_csv,
    write_lcs,
    write_npy,
    write_oracle_general,
    write_trace,
)

__all__ = [
    "FORMATS",
    "GENERATORS",
    "Chunk",
    "TraceError",
    "TraceReader",
    "compression",
    "detect_format",
    "mix",
    "open_trace",
    "phase_lengths",
    "sequential_scan",
    "uniform",
    "working_set_phases",
    "write_csv",
    "write_lcs",
    "write_npy",
    "write_oracle_general",
    "write_trace",
    "zipf",
]
