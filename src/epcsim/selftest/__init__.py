"""The kernel's selftests, run against the model (``epcsim selftest``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass
class Result:
    name: str
    suite: str
    passed: bool
    checks: list[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0


def suites() -> dict[str, dict[str, Callable[..., None]]]:
    from epcsim.selftest import cgroup, sgx, threat

    return {"sgx": sgx.TESTS, "cgroup": cgroup.TESTS, "threat-model": threat.TESTS}


def harness_for(suite: str):  # type: ignore[no-untyped-def]
    """The suite's harness class: a fresh machine per test."""
    from epcsim.selftest import cgroup, sgx

    return {"sgx": sgx.Harness, "cgroup": cgroup.Harness, "threat-model": sgx.Harness}[suite]


def run_suite(suite: str, *, epc_size: int | None = None, names: list[str] | None = None,
              seed: int = 0) -> Iterator[Result]:
    """Run the named suite's tests, each on a fresh machine; yield one result per test."""
    tests = suites()[suite]
    harness = harness_for(suite)
    for name, fn in tests.items():
        if names and name not in names:
            continue
        h = harness(epc_size=epc_size or 4 << 20, seed=seed)
        t = time.perf_counter()
        try:
            fn(h)
            yield Result(name, suite, True, h.checks, seconds=time.perf_counter() - t)
        except AssertionError as e:
            yield Result(name, suite, False, h.checks, str(e), time.perf_counter() - t)
