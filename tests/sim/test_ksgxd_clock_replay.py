"""The replay with ksgxd on its own clock: a ksgxd slower than the thread makes it wait.

With the default costs ksgxd writes a page back in less time than the thread takes to fault
one in, and the thread of a one-enclave replay rarely waits. With EWB ten times dearer it
cannot keep up: faults find nothing free, take the -EBUSY path and wait for ksgxd's pages,
which ``--ksgxd instant`` (pages free the moment ksgxd runs) never does.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from epcsim.sim import costs as K
from epcsim.sim.replay import ReplayConfig, replay_pages

EPC = 512



def _run(ksgxd: str, ewb: int) -> dict:  # type: ignore[type-arg]
    rng = np.random.default_rng(5)
    pages = np.concatenate([np.arange(2 * EPC), rng.integers(0, 2 * EPC, 20_000)])
    base = K.PRESETS["client-sgx1"]
    plat = dataclasses.replace(base, costs=base.costs.with_cycles(ewb=ewb))

    cfg = ReplayConfig(policy="sgx", epc_pages=EPC, platform=plat, ksgxd=ksgxd)
    return replay_pages(cfg, pages, rng.random(len(pages)) < 0.3).summary


@pytest.fixture(scope="module")
def runs() -> dict[str, dict]:  # type: ignore[type-arg]
    return {"slow": _run("clock", 110_000), "slow_instant": _run("instant", 110_000),
            "default": _run("clock", 11_000)}


def test_a_ksgxd_slower_than_the_thread_makes_faults_wait(runs) -> None:  # type: ignore[no-untyped-def]
    s = runs["slow"]
    wait = s["virtual_time_breakdown_s"]["waiting_for_ksgxd"]
    assert s["ebusy_waits"] > 100 and wait > 0.1 * s["virtual_time_s"]
    # ksgxd was busy for most of the run on its own CPU, beside the thread.
    assert s["ksgxd_busy_s"] > 0.5 * s["virtual_time_s"]
    assert s["ksgxd"] == "clock"


def test_instant_ksgxd_never_makes_a_fault_wait(runs) -> None:  # type: ignore[no-untyped-def]
    s, clock = runs["slow_instant"], runs["slow"]
    assert s["virtual_time_breakdown_s"]["waiting_for_ksgxd"] == 0.0
    assert s["ebusy_waits"] < clock["ebusy_waits"]
    assert s["virtual_time_s"] < clock["virtual_time_s"]


def test_with_the_default_costs_ksgxd_keeps_up(runs) -> None:  # type: ignore[no-untyped-def]
    s = runs["default"]
    assert s["virtual_time_breakdown_s"]["waiting_for_ksgxd"] < 0.01 * s["virtual_time_s"]
    assert s["faults"] > EPC and s["ewb"] > EPC       # it paged all the same
