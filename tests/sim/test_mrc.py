"""The LRU miss-ratio curve: stack distances against a direct LRU, and against the run."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from epcsim.cli import main
from epcsim.sim.mrc import curve, mrc_table, stack_distances


def _lru_misses(keys: list[int], size: int) -> int:
    cache: OrderedDict[int, None] = OrderedDict()
    misses = 0
    for k in keys:
        if k in cache:
            cache.move_to_end(k)
        else:
            misses += 1
            cache[k] = None
            if len(cache) > size:
                cache.popitem(last=False)
    return misses


@pytest.mark.parametrize("seed", range(5))
def test_curve_equals_a_direct_lru_at_every_size(seed: int) -> None:
    rng = np.random.default_rng(seed)
    keys = rng.zipf(1.3, 3000) % 200
    sizes = np.arange(1, 210)
    ratios = curve(stack_distances(keys.astype(np.int64), 200), sizes)
    direct = [_lru_misses(keys.tolist(), int(c)) / len(keys) for c in sizes]
    assert np.allclose(ratios, direct)
    assert ratios[-1] == len(np.unique(keys)) / len(keys)


def test_per_enclave_curves_see_only_their_own_pages() -> None:
    tenants = np.array([0, 1, 0, 1, 0, 1], np.uint32)
    pages = np.array([0, 0, 1, 0, 0, 0], np.int64)
    t = mrc_table(tenants, pages, ["a", "b"], epc_pages=1).to_pylist()
    at1 = {r["owner"]: r["miss_ratio"] for r in t if r["epc_pages"] == 1}
    # a: 0 1 0 -> all miss in one page; b: 0 0 0 -> one cold miss; both: 0 0' 1 0' 0 0'
    assert at1 == {"a": 1.0, "b": pytest.approx(1 / 3), "all": 1.0}
    at3 = {r["owner"]: r["miss_ratio"] for r in t if r["epc_pages"] == 3}
    assert at3["all"] == pytest.approx(3 / 6)


def test_run_writes_the_curve_and_lru_policy_lies_on_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc = tmp_path / "s.toml"
    sc.write_text('[platform]\nepc_size = "1MiB"\n[kernel]\npolicy = "lru"\n'
                  '[run]\nrequests = 30000\nseed = 5\nmrc = true\n'
                  '[[enclaves]]\nname = "hot"\nsize = "2MiB"\nworkload = "zipf"\n'
                  '[[enclaves]]\nname = "cold"\nsize = "1MiB"\nworkload = "uniform"\n')
    out = tmp_path / "out"
    assert main(["run", str(sc), "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = pq.read_table(out / "mrc.parquet").to_pylist()
    assert {r["owner"] for r in rows} == {"all", "hot", "cold"}
    at_run = [r["miss_ratio"] for r in rows if r["owner"] == "all" and r["epc_pages"] == 256]
    # The lru policy is an exact LRU over the EPC: the run is a point of its curve.
    assert at_run == [pytest.approx(doc["miss_ratio"])]
    whole = [r for r in rows if r["owner"] == "all"]
    assert [r["miss_ratio"] for r in whole] == sorted((r["miss_ratio"] for r in whole),
                                                      reverse=True)
    # The resolved scenario repeats the run exactly.
    assert main(["run", str(out / "scenario.resolved.json"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["faults"], again["miss_ratio"]) == (doc["faults"], doc["miss_ratio"])
