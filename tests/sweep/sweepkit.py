"""Sweep files for the tests: eight points of a small two-enclave scenario."""

from __future__ import annotations

from pathlib import Path

# The page-cache engine (lru) compiles in seconds where the kernel model (sgx) takes minutes;
# a sweep runs both through the same entry point, so the sweep tests use lru.
SWEEP = """
[base]
kernel = {{ policy = "lru" }}
run = {{ requests = {requests}, seed = 3 }}
platform = {{ preset = "client-sgx1", epc_size = "1MiB" }}
[[base.enclaves]]
name = "hot"
size = "4MiB"
workload = "zipf"
weight = 3
[[base.enclaves]]
name = "scan"
size = "1MiB"
workload = "scan"

[grid]
"platform.epc_size" = ["1MiB", "2MiB", "3MiB", "4MiB"]
"enclaves.0.alpha" = [0.8, 1.2]
"""


def write_sweep(tmp_path: Path, requests: int = 20000, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(SWEEP.format(requests=requests))
    return path
