"""Parity of the manager's one-page-per-miss policies with libCacheSim.

``epcsim replay --policy lru|fifo|clock`` must fault exactly as often as libCacheSim's
LRU, FIFO and Clock miss on the same oracleGeneral file, with sizes ignored (one object is
one page) and a cache of as many objects as the EPC has pages. libCacheSim's Clock is the
one the manager's ``POLICY_CLOCK`` models: a single reference bit (``n_bit_counter=1``),
clear on insertion (``init_freq=0``), set by a hit, and a head with the bit set is cleared
and moved to the tail instead of being evicted.
"""

from __future__ import annotations

import functools
from pathlib import Path

import libcachesim as lcs
import numpy as np
import pytest
from simkit import replay_json

from epcsim.workload.generators import working_set_phases, zipf
from epcsim.workload.traces import write_oracle_general

REQUESTS = 100_000
PAGES = 4000
FRACTIONS = (0.05, 0.30)
POLICIES = ("lru", "fifo", "clock")

CACHES = {
    "lru": lambda n: lcs.LRU(n),
    "fifo": lambda n: lcs.FIFO(n),
    "clock": lambda n: lcs.Clock(n, init_freq=0, n_bit_counter=1),
}


def _traces() -> dict[str, np.ndarray]:
    z08 = zipf(PAGES, REQUESTS, alpha=0.8, seed=11)
    return {
        "zipf-0.8": z08,
        "zipf-1.2": zipf(PAGES, REQUESTS, alpha=1.2, seed=12),
        "phases": working_set_phases(PAGES, REQUESTS, phases=5, working_set=600, seed=13),
        # The same accesses under sparse 64-bit ids: the replay's hashed id map.
        "zipf-0.8-sparse": z08 * np.uint64(0x9E3779B1) + np.uint64(1 << 40),
    }


TRACE_NAMES = tuple(_traces())


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, np.ndarray]]:
    d = tmp_path_factory.mktemp("parity")
    out = {}
    for name, obj in _traces().items():
        path = d / f"{name}.oracleGeneral"
        write_oracle_general(path, obj)
        out[name] = (path, obj)
    return out


def cache_pages(obj: np.ndarray, frac: float) -> int:
    return max(16, int(len(np.unique(obj)) * frac))


@functools.cache
def epcsim_run(path: Path, pages: int, policy: str) -> dict:
    return replay_json(path, "oracleGeneral", pages, policy)


@functools.cache
def libcachesim_misses(path: Path, pages: int, policy: str, requests: int) -> int:
    reader = lcs.TraceReader(str(path), trace_type=lcs.TraceType.ORACLE_GENERAL_TRACE,
                             reader_init_params=lcs.ReaderInitParam(ignore_obj_size=True))
    obj_miss_ratio, _ = CACHES[policy](pages).process_trace(reader)
    misses = obj_miss_ratio * requests
    assert abs(misses - round(misses)) < 1e-6 * requests, "miss ratio is not k/requests"
    return round(misses)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("frac", FRACTIONS)
@pytest.mark.parametrize("name", TRACE_NAMES)
def test_faults_equal_libcachesim_misses(traces, name: str, frac: float, policy: str) -> None:
    path, obj = traces[name]
    pages = cache_pages(obj, frac)
    s = epcsim_run(path, pages, policy)
    assert s["policy"] == policy
    assert s["epc_pages"] == pages
    assert s["requests"] == len(obj)
    assert s["footprint_pages"] >= len(np.unique(obj))
    expected = libcachesim_misses(path, pages, policy, len(obj))
    assert s["faults"] == expected, (
        f"{policy} on {name} with {pages} pages: epcsim {s['faults']} faults, "
        f"libCacheSim {expected} misses")
    # A cache policy's faults are its cold misses (EAUG) plus reloads (ELDU).
    assert s["eaug"] == len(np.unique(obj))
    assert s["faults"] == s["eaug"] + s["eldu"]
    # Once the EPC is full, every miss evicts one page.
    assert s["ewb"] == s["faults"] - pages
    assert s["eldu"] <= s["ewb"]


@pytest.mark.parametrize("frac", FRACTIONS)
@pytest.mark.parametrize("name", ("zipf-0.8", "zipf-1.2", "phases"))
def test_policies_differ(traces, name: str, frac: float) -> None:
    """The traces tell the three policies apart, so the parity above is not vacuous."""
    path, obj = traces[name]
    pages = cache_pages(obj, frac)
    faults = {p: epcsim_run(path, pages, p)["faults"] for p in POLICIES}
    assert len(set(faults.values())) == 3, faults


def test_sparse_ids_replay_like_dense(traces) -> None:
    """Renaming the pages (hashed id map) changes no policy's fault count."""
    dense_path, obj = traces["zipf-0.8"]
    sparse_path, _ = traces["zipf-0.8-sparse"]
    pages = cache_pages(obj, 0.05)
    for p in POLICIES:
        dense = epcsim_run(dense_path, pages, p)
        sparse = epcsim_run(sparse_path, pages, p)
        assert dense["id_map"] == "identity" and sparse["id_map"] == "hash"
        assert sparse["faults"] == dense["faults"]


def test_clock_is_the_one_bit_clock(traces) -> None:
    """A two-bit libCacheSim Clock counts differently on these traces: the parity pins
    the one-bit semantics rather than any clock."""
    path, obj = traces["zipf-0.8"]
    pages = cache_pages(obj, 0.05)
    reader = lcs.TraceReader(str(path), trace_type=lcs.TraceType.ORACLE_GENERAL_TRACE,
                             reader_init_params=lcs.ReaderInitParam(ignore_obj_size=True))
    two_bit, _ = lcs.Clock(pages, n_bit_counter=2).process_trace(reader)
    assert round(two_bit * len(obj)) != epcsim_run(path, pages, "clock")["faults"]
