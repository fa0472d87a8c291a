"""The ``sgx`` replay: the whole kernel model under a trace, through the CLI and the library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from simkit import (
    SUMMARY_KEYS,
    TIMING_KEYS,
    captured_replays,
    factory,
    interleave,
    replay_json,
    run_cli,
    without_timing,
)

from epcsim.arch import Attribute
from epcsim.kernel.encl import EP_EXISTS, EP_PRESENT
from epcsim.kernel.main import W_LRU, W_MASK
from epcsim.sim import costs as K
from epcsim.sim.metrics import write_results
from epcsim.sim.replay import (
    FAULT_LOG_MAX,
    FAULT_LOG_MIN,
    R_FIRST,
    Replay,
    ReplayConfig,
    fault_log_entries,
    replay_chunks,
)
from epcsim.workload.generators import zipf
from epcsim.workload.traces import open_trace, write_csv, write_lcs, write_oracle_general

EPC = 512
FOOTPRINT = 2 * EPC
REQUESTS = 60_000
FAULT_LOG_CAP = fault_log_entries(ReplayConfig(epc_pages=EPC))


@pytest.fixture(scope="module")
def oversub(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A Zipf trace over twice the EPC, replayed once by ``epcsim replay --json --out``."""
    d = tmp_path_factory.mktemp("oversub")
    obj = zipf(FOOTPRINT, REQUESTS, alpha=0.9, seed=7)
    path = d / "zipf.oracleGeneral"
    write_oracle_general(path, obj)
    out = d / "results"
    with captured_replays() as made:
        summary = replay_json(path, "oracleGeneral", EPC, "sgx", "--out", str(out))
    return {"path": path, "obj": obj, "summary": summary, "replay": made[-1], "out": out}


def test_summary_has_every_key(oversub) -> None:
    s = oversub["summary"]
    missing = [k for k in SUMMARY_KEYS if k not in s]
    assert not missing, missing
    assert s["policy"] == "sgx"
    assert s["epc_pages"] == EPC
    assert s["requests"] == REQUESTS
    assert s["enclaves"] == 1
    assert s["footprint_pages"] == FOOTPRINT


def test_summary_arithmetic(oversub) -> None:
    s = oversub["summary"]
    assert s["wall_s"] > 0
    assert s["requests_per_s"] == pytest.approx(s["requests"] / s["wall_s"], rel=1e-12)
    assert s["hits"] + s["faults"] == s["requests"]
    assert s["miss_ratio"] == pytest.approx(s["faults"] / s["requests"], rel=1e-12)
    # Every fault either adds a page (EAUG, the first touch) or loads it back (ELDU).
    assert s["faults"] == s["eaug"] + s["eldu"]
    assert s["eaug"] == len(np.unique(oversub["obj"]))
    br = s["virtual_time_breakdown_s"]
    assert sum(br.values()) == pytest.approx(s["virtual_time_s"], rel=1e-9)
    assert s["slowdown"] == pytest.approx(s["virtual_time_s"] / br["work"], rel=1e-9)
    work = REQUESTS * K.PRESETS["client-sgx1"].costs.request.cycles / 3.0e9
    assert br["work"] == pytest.approx(work, rel=1e-9)


def test_oversubscription_pages(oversub) -> None:
    s = oversub["summary"]
    assert s["ewb"] > 0
    assert s["etrack"] > 0
    assert s["eldu"] > 0
    # A page is loaded back only after it was written out.
    assert s["eldu"] <= s["ewb"]
    # ksgxd does the writing back (the fault path never reclaims under the mmap lock).
    assert s["reclaimed_ksgxd"] + s["reclaimed_direct"] == s["ewb"]
    assert s["ksgxd_wakeups"] > 0
    assert s["slowdown"] > 1
    # With half the footprint resident, faults cost far more than the work between them.
    assert s["slowdown"] > 5


def test_kernel_invariants_after_replay(oversub) -> None:
    rp = oversub["replay"]
    s = oversub["summary"]
    assert int(rp.rs.cnt[0]) == REQUESTS  # the captured machine is the one that ran
    rp.mgr.check()
    census = rp.mgr.census()
    assert census["isolated"] == 0 and census["leaked"] == 0
    assert census["free"] == s["sgx_nr_free_pages"] == rp.mgr.sgx_nr_free_pages
    # The driver and the manager agree on every trace page.
    ds, ms = rp.kernel.sgx.ds, rp.mgr.ms
    e = int(rp.rs.e_of_tenant[0])
    eps = int(ds.e_first[e]) + R_FIRST + np.arange(FOOTPRINT)
    epc = ds.ep_epc[eps].astype(np.int64)
    resident = epc >= 0
    assert (ds.ep_flags[eps] & EP_EXISTS).all(), "a touched page has no entry"
    assert 0 < resident.sum() < EPC
    assert len(np.unique(epc[resident])) == resident.sum(), "two pages share an EPC page"
    assert (ms.oid[epc[resident]] == eps[resident]).all()
    assert ((ms.where[epc[resident]] & W_MASK) == W_LRU).all()
    assert (rp.cpu.st.flags[epc[resident]] & 0x40).all(), "a resident page is not VALID"
    evicted = ~resident
    assert not (ds.ep_flags[eps[evicted]] & EP_PRESENT).any(), "an evicted page is mapped"
    assert int(ds.e_evicted[e]) == int(evicted.sum())


def test_out_dir(oversub) -> None:
    out: Path = oversub["out"]
    s = oversub["summary"]
    assert json.loads((out / "summary.json").read_text()) == s
    series = pq.read_table(out / "series.parquet").to_pydict()
    t = np.array(series["time_s"])
    assert len(t) >= 10
    assert (np.diff(t) > 0).all(), "series time is not increasing"
    assert t[-1] <= s["virtual_time_s"]
    f = np.array(series["faults"])
    assert (np.diff(f) >= 0).all() and f[-1] <= s["faults"]
    ewb = np.array(series["ewb"])
    assert (np.diff(ewb) >= 0).all() and ewb[-1] <= s["ewb"]
    faults = pq.read_table(out / "faults.parquet").to_pydict()
    assert s["fault_log"] == FAULT_LOG_CAP
    assert len(faults["page"]) == min(s["faults"], FAULT_LOG_CAP)
    assert (np.diff(faults["time_s"]) > 0).all()
    assert set(faults["tenant"]) == {0}
    pages = np.array(faults["page"])
    assert pages.min() >= 0 and pages.max() < FOOTPRINT
    # Every page faults first on its first touch.
    assert len(np.unique(pages)) == s["eaug"]
    enclaves = pq.read_table(out / "enclaves.parquet").to_pylist()
    assert len(enclaves) == 1
    assert enclaves[0]["requests"] == REQUESTS
    assert enclaves[0]["faults"] == s["faults"]


def test_fault_log_cap(oversub, tmp_path: Path) -> None:
    """A capped fault log keeps the first faults and Parquet holds exactly the cap."""
    cap = 1000
    full = replay_chunks(ReplayConfig(policy="sgx", epc_pages=EPC, fault_log=REQUESTS),
                         factory(oversub["path"], "oracleGeneral"))
    capped = replay_chunks(ReplayConfig(policy="sgx", epc_pages=EPC, fault_log=cap),
                           factory(oversub["path"], "oracleGeneral"))
    assert capped.summary["faults"] == full.summary["faults"] > cap
    assert full.faults.shape[0] == full.summary["faults"]
    assert capped.faults.shape[0] == cap
    assert np.array_equal(capped.faults, full.faults[:cap])
    write_results(str(tmp_path), capped)
    assert pq.read_table(tmp_path / "faults.parquet").num_rows == cap


def test_the_default_fault_log_grows_with_the_epc_within_its_bounds() -> None:
    """One entry per 16 EPC pages between the floor and the ceiling: never a fixed table
    that outweighs a small model's state, never more than 1.5 bytes an EPC page above it."""
    def entries(epc: int) -> int:
        return fault_log_entries(ReplayConfig(epc_pages=epc))
    assert entries(512) == FAULT_LOG_MIN
    assert entries(16 * FAULT_LOG_MIN + 16) == FAULT_LOG_MIN + 1
    assert entries(1 << 20) == 1 << 16
    assert entries(1 << 30) == FAULT_LOG_MAX
    assert fault_log_entries(ReplayConfig(epc_pages=1 << 20, fault_log=7)) == 7
    with pytest.raises(ValueError, match="fault_log must be 0 or more"):
        ReplayConfig(fault_log=-1)


def test_the_cli_keeps_as_many_faults_as_asked(oversub, tmp_path: Path) -> None:
    out = tmp_path / "r"
    rc, text, err = run_cli("replay", str(oversub["path"]), "--epc-pages", str(EPC),
                            "--fault-log", "123", "--json", "--out", str(out))
    s = json.loads(text)
    assert rc == 0 and s["fault_log"] == 123
    assert pq.read_table(out / "faults.parquet").num_rows == 123
    assert f"the first 123 of {s['faults']:,} faults" in err
    rc, _, err = run_cli("replay", str(oversub["path"]), "--epc-pages", str(EPC),
                         "--fault-log", "-1")
    assert rc == 2 and "--fault-log" in err


def test_deterministic(oversub) -> None:
    """The same trace twice: identical results but for the host's timing."""
    runs = [replay_chunks(ReplayConfig(policy="sgx", epc_pages=EPC),
                          factory(oversub["path"], "oracleGeneral")) for _ in range(2)]
    a, b = runs
    assert TIMING_KEYS <= set(a.summary)
    assert without_timing(a.summary) == without_timing(b.summary)
    # The CLI's run (its own process state, first in this module) agrees too.
    assert without_timing(a.summary) == without_timing(oversub["summary"])
    assert a.per_enclave == b.per_enclave
    assert np.array_equal(a.series, b.series)
    assert np.array_equal(a.faults, b.faults)


def test_fits_in_epc(tmp_path: Path) -> None:
    """A footprint well below the EPC: cold faults only, no paging."""
    pages, requests = 64, 100_000
    obj = zipf(pages, requests, alpha=0.9, seed=5)
    path = tmp_path / "small.oracleGeneral"
    write_oracle_general(path, obj)
    s = replay_json(path, "oracleGeneral", EPC, "sgx")
    assert s["requests"] == requests
    assert s["faults"] == s["eaug"] == len(np.unique(obj))
    assert s["ewb"] == 0 and s["eldu"] == 0 and s["etrack"] == 0 and s["ipi"] == 0
    assert s["ksgxd_wakeups"] == 0
    assert s["virtual_time_breakdown_s"]["waiting_for_ksgxd"] == 0
    assert 1 < s["slowdown"] < 1.1


@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tenants 1 and 3 (no tenant 0 or 2) over 300 and 500 pages on a 512-page EPC."""
    d = tmp_path_factory.mktemp("tenants")
    a = zipf(300, 20_000, alpha=0.9, seed=21)
    b = zipf(500, 30_000, alpha=0.7, seed=22)
    obj, tenant = interleave([(a, 1), (b, 3)], seed=23)
    lcs_path = d / "two.lcs"
    csv_path = d / "two.csv"
    write_lcs(lcs_path, obj, version=2, tenant=tenant)
    write_csv(csv_path, obj, tenant=tenant)
    out = d / "results"
    lcs_summary = replay_json(lcs_path, "lcs", EPC, "sgx", "--out", str(out))
    csv_summary = replay_json(csv_path, "csv", EPC, "sgx", "--columns", "obj=1,tenant=2")
    return {"obj": obj, "tenant": tenant, "lcs": lcs_summary, "csv": csv_summary,
            "out": out, "parts": {1: a, 3: b}}


def test_two_tenants_two_enclaves(two_tenants) -> None:
    s = two_tenants["lcs"]
    assert s["enclaves"] == 2
    assert s["requests"] == len(two_tenants["obj"])
    assert s["footprint_pages"] == 800
    assert s["ewb"] > 0
    per = pq.read_table(two_tenants["out"] / "enclaves.parquet").to_pylist()
    assert len(per) == 2
    assert sorted(r["tenant"] for r in per) == [1, 3]
    assert sum(r["requests"] for r in per) == s["requests"]
    assert sum(r["faults"] for r in per) == s["faults"]
    assert sum(r["eaug"] for r in per) == s["eaug"]
    assert sum(r["eldu"] for r in per) == s["eldu"]
    for r in per:
        trace = two_tenants["parts"][r["tenant"]]
        assert r["requests"] == len(trace)
        assert r["eaug"] == len(np.unique(trace))
        assert r["faults"] == r["eaug"] + r["eldu"]
    faults = pq.read_table(two_tenants["out"] / "faults.parquet").to_pydict()
    assert len(faults["tenant"]) == s["faults"]
    assert set(faults["tenant"]) == {1, 3}
    # Each logged fault names its own tenant and a page of that tenant's footprint.
    ft, fp = np.asarray(faults["tenant"]), np.asarray(faults["page"])
    for r in per:
        mine = ft == r["tenant"]
        assert mine.sum() == r["faults"]
        assert 0 <= fp[mine].min() and fp[mine].max() < r["pages"]


@pytest.mark.parametrize("policy", ["sgx", "lru"])
@pytest.mark.parametrize("tenant_ids", [[0], [1, 3]])
def test_entries_name_each_requests_own_record(policy: str, tenant_ids: list[int]) -> None:
    """The engine's fourth column (what its hit test and prefetches read): under ``sgx`` the
    driver's record of the request's page, which after the replay holds an EPC page whose
    EPCM entry has that tenant's enclave and address; otherwise the page-cache slot."""
    footprint = np.zeros(max(tenant_ids) + 1, dtype=np.int64)
    footprint[tenant_ids] = [300 + 200 * k for k in range(len(tenant_ids))]
    rp = Replay(ReplayConfig(policy=policy, epc_pages=4 * EPC), footprint, tenant_ids)
    rng = np.random.default_rng(5)
    tenants = rng.choice(np.array(tenant_ids, dtype=np.uint32), 2000)
    pages = rng.integers(0, 300, 2000).astype(np.int64)
    got = rp.entries(tenants, pages)
    rp.feed(tenants, pages, np.zeros(len(pages), np.bool_))
    e = rp.rs.e_of_tenant[tenants]
    if policy != "sgx":
        assert np.array_equal(got, e + pages)
        assert np.array_equal(rp.owner.state.resident[got] >= 0, np.ones(len(got), bool))
        return
    ds, st = rp.mgr.owner_states()[0], rp.cpu.st
    assert np.array_equal(got, ds.e_first[e] + R_FIRST + pages)
    epc = ds.ep_epc[got].astype(np.int64)
    assert (epc >= 0).all() and ((ds.ep_flags[got] & EP_PRESENT) != 0).all()
    secs_row = st.row[ds.e_secs[e]]
    assert np.array_equal(st.row[epc], secs_row)
    lin = st.s_base[st.row[epc]].astype(np.int64) + (st.lin[epc].astype(np.int64) << 12)
    assert np.array_equal(lin, ds.e_base[e].astype(np.int64) + ((R_FIRST + pages) << 12))


def test_enclaves_of_one_size_share_one_signed_image() -> None:
    """Every tenant's enclave is built with the same EADDs and measured by the processor;
    MRENCLAVE covers SIZE and page offsets, not the base, so enclaves of one size have one
    MRENCLAVE (and one SIGSTRUCT, signed once) at different bases, and another size
    another. Each passed EINIT against the processor's own measurement."""
    footprint = np.array([100, 120, 5000], dtype=np.int64)
    rp = Replay(ReplayConfig(policy="sgx", epc_pages=4 * EPC), footprint, [0, 1, 2])
    ds = rp.mgr.owner_states()[0]
    info = [rp.cpu.secs_info(rp.cpu.page_addr(int(ds.e_secs[rp.rs.e_of_tenant[t]])))
            for t in range(3)]
    assert all(i["attributes"] & Attribute.INIT for i in info)
    assert info[0]["size"] == info[1]["size"] != info[2]["size"]
    assert info[0]["base"] != info[1]["base"]
    assert len(info[0]["mrenclave"]) == 32
    assert info[0]["mrenclave"] == info[1]["mrenclave"] != info[2]["mrenclave"]


@pytest.mark.parametrize("policy", ["sgx", "lru"])
def test_progress_names_the_stages_before_the_first_request(tmp_path: Path,
                                                           policy: str) -> None:
    """A progress callback with a ``stage`` method hears the scan and the build before any
    request is counted, and every request after."""
    heard: list[object] = []

    class Progress:
        def stage(self, text: str) -> None:
            heard.append(text)

        def __call__(self, n: int) -> None:
            heard.append(n)

    path = tmp_path / "t.csv"
    obj = zipf(400, 3000, seed=3)
    write_csv(path, obj, tenant=np.arange(3000, dtype=np.uint32) % 3)
    replay_chunks(ReplayConfig(policy=policy, epc_pages=256),
                  lambda: open_trace(path, "csv"), progress=Progress())
    built = "building 3 enclaves" if policy == "sgx" else "building the page tables"
    assert heard[:2] == ["scanning the trace", built]
    assert all(isinstance(n, int) for n in heard[2:]) and sum(heard[2:]) == 3000  # type: ignore[arg-type]


def test_warm_up_compiles_what_the_build_compiles() -> None:
    """In a new process, after ``warm_up`` of ``sgx`` a replay's build and a replay of
    another size compile nothing more: no compile lands inside the first replay's
    ``setup_s`` or ``replay_s``. A machine without virtual machines never compiles the
    guest's EPT walk, which every leaf calls deferred."""
    code = (
        "from numba.core import event\n"
        "from epcsim.hw import encls\n"
        "from epcsim.sim.replay import ReplayConfig, Replay, warm_up\n"
        "import numpy as np\n"
        "warm_up(ReplayConfig(policy='sgx', epc_pages=256))\n"
        "seen = []\n"
        "class L(event.Listener):\n"
        "    def on_start(self, ev): seen.append(ev.data['dispatcher'].py_func.__qualname__)\n"
        "    def on_end(self, ev): pass\n"
        "event.register('numba:compile', L())\n"
        "rp = Replay(ReplayConfig(policy='sgx', epc_pages=4096), np.array([3000, 700],"
        " np.int64), [0, 1])\n"
        "rp.feed(np.array([0, 1, 0, 1] * 300, np.uint32), np.arange(1200, dtype=np.int64)"
        " % 600, np.zeros(1200, np.bool_))\n"
        "print(len(seen), len(encls.ept_walk.overloads), seen[:5])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=1500)
    assert out.stdout.startswith("0 0 "), out.stdout


def test_two_tenants_csv_equals_lcs(two_tenants) -> None:
    """The same requests as CSV with a tenant column replay exactly as the lcs file."""
    assert without_timing(two_tenants["csv"]) == without_timing(two_tenants["lcs"])


@pytest.mark.parametrize("chunk", [1 << 20, 7919])
def test_series_keeps_every_step(oversub, chunk: int) -> None:
    """A run longer than the series' first allocation keeps every sample, however the
    trace is chunked: one sample per step of virtual time, at exact multiples of it."""
    step_s = 1e-5
    res = replay_chunks(ReplayConfig(policy="sgx", epc_pages=EPC, series_step_s=step_s),
                        factory(oversub["path"], "oracleGeneral", chunk_requests=chunk))
    ghz = K.PRESETS["client-sgx1"].ghz
    step = int(step_s * ghz * 1e9)
    thread = round(res.summary["virtual_time_s"] * ghz * 1e9)
    assert thread // step > 4096  # more samples than the first allocation holds
    assert res.series.shape[0] == thread // step
    assert np.array_equal(res.series[:, 0], step * np.arange(1, thread // step + 1))
    assert res.series[-1, 2] <= res.summary["faults"]
    assert without_timing(res.summary) == without_timing(oversub["summary"])


def _held_by_sample(out: Path) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """free pages per sample, and each tenant's pages per sample, from a run's files."""
    free = np.asarray(pq.read_table(out / "series.parquet").column("free_pages"))
    held = pq.read_table(out / "enclave_series.parquet").to_pydict()
    tenants = np.asarray(held["tenant"])
    pages = np.asarray(held["pages"])
    return free, {int(t): pages[tenants == t] for t in np.unique(tenants)}


def test_enclave_series_accounts_for_the_epc(two_tenants) -> None:
    """Per-enclave usage over time: at every sample the two enclaves' pages and the VA
    pages (allocated up front, never evicted) add up to the EPC in use."""
    free, per = _held_by_sample(two_tenants["out"])
    assert sorted(per) == [1, 3]
    assert all(len(v) == len(free) for v in per.values())
    assert len(free) > 10
    va = EPC - free - per[1] - per[3]
    assert np.all(va == va[0]) and va[0] > 0
    # Both enclaves hold their SECS and pinned TCS, SSA and stack from the start.
    assert min(per[1].min(), per[3].min()) >= R_FIRST + 1


@pytest.mark.parametrize("policy", ["lru", "clock"])
def test_enclave_series_cache_policies(two_tenants, tmp_path: Path, policy: str) -> None:
    """With the one-page-per-miss policies every used EPC page belongs to a tenant."""
    d = tmp_path / "lcs"
    write_lcs(d, two_tenants["obj"], version=2, tenant=two_tenants["tenant"])
    out = tmp_path / "out"
    replay_json(d, "lcs", EPC, policy, "--out", str(out))
    free, per = _held_by_sample(out)
    assert len(free) > 10
    assert np.array_equal(per[1] + per[3], EPC - free)
    assert per[1].max() > 0 and per[3].max() > 0


@pytest.mark.parametrize("policy", ["lru", "fifo", "clock", "sgx"])
def test_one_pass_replay_equals_two_passes(tmp_path: Path, policy: str) -> None:
    """A binary trace without tenants is read once for the page-cache policies; its page
    table grows as larger ids come (here ids rise from chunk to chunk). For ``sgx`` its
    footprint is scanned in the mapped file without decoding a chunk. Every result is the
    same as the path that decodes and scans every chunk first (the CSV of the requests)."""
    rng = np.random.default_rng(5)
    obj = np.concatenate([zipf(300, 4000, seed=5), 300 + rng.integers(0, 900, 4000),
                          zipf(1500, 4000, seed=6)]).astype(np.uint64)
    og, csv = tmp_path / "t.oracleGeneral", tmp_path / "t.csv"
    write_oracle_general(og, obj)
    write_csv(csv, obj)
    cfg = ReplayConfig(policy=policy, epc_pages=256, fault_log=5000)
    seen: list[int] = []
    one = replay_chunks(cfg, factory(og, "oracleGeneral", chunk_requests=1000),
                        progress=seen.append)
    two = replay_chunks(cfg, factory(csv, "csv"))
    assert one.summary["passes"] == (2 if policy == "sgx" else 1)
    assert two.summary["passes"] == 2
    assert sum(seen) == len(obj)
    assert one.summary["footprint_pages"] == int(obj.max()) + 1
    # How each read its input: the binary file is mapped, the CSV decoded once and kept.
    assert one.summary["trace_bytes_held"] == 0
    assert two.summary["trace_bytes_held"] == len(obj) * (8 + 4 + 1)
    strip = {"passes", "state_bytes", "state_bytes_per_page", "trace_bytes_held"}
    assert ({k: v for k, v in without_timing(one.summary).items() if k not in strip}
            == {k: v for k, v in without_timing(two.summary).items() if k not in strip})
    assert one.per_enclave == two.per_enclave
    assert np.array_equal(one.faults, two.faults)
    assert np.array_equal(one.series, two.series)
    assert np.array_equal(one.held, two.held)


def test_one_pass_replay_starts_again_when_ids_need_the_hash_map(tmp_path: Path) -> None:
    """An id past the identity limit in a later chunk: the requests replayed so far are
    dropped, the progress taken back, and the trace replays in two passes with the hash
    map, as if the one-pass path had never run."""
    from epcsim.sim.replay import IdMap

    obj = np.concatenate([zipf(200, 3000, seed=2),
                          np.array([IdMap.IDENTITY_LIMIT + 7, 3, IdMap.IDENTITY_LIMIT + 7])
                          ]).astype(np.uint64)
    og = tmp_path / "big.oracleGeneral"
    write_oracle_general(og, obj)
    seen: list[int] = []
    cfg = ReplayConfig(policy="lru", epc_pages=64)
    res = replay_chunks(cfg, factory(og, "oracleGeneral", chunk_requests=1000),
                        progress=seen.append)
    assert res.summary["passes"] == 2 and res.summary["id_map"] == "hash"
    assert sum(seen) == len(obj)
    assert res.summary["requests"] == len(obj)
    assert res.summary["footprint_pages"] == len(np.unique(obj))


def test_any_chunk_like_replays(tmp_path: Path) -> None:
    """Chunks from outside the readers (obj, tenant and write arrays, no ``max_obj``) replay
    in two passes, as the scale benchmark's generated chunks do."""
    from typing import NamedTuple

    class Plain(NamedTuple):
        obj: np.ndarray
        tenant: np.ndarray
        write: np.ndarray

    obj = zipf(400, 5000, seed=9).astype(np.uint64)
    og = tmp_path / "t.oracleGeneral"
    write_oracle_general(og, obj)

    def plain():
        for a in range(0, len(obj), 1500):
            o = obj[a:a + 1500]
            yield Plain(o, np.zeros(len(o), np.uint32), np.zeros(len(o), np.bool_))

    cfg = ReplayConfig(policy="lru", epc_pages=128)
    res = replay_chunks(cfg, plain)
    ref = replay_chunks(cfg, factory(og, "oracleGeneral"))
    assert res.summary["passes"] == 2 and ref.summary["passes"] == 1
    assert res.summary["faults"] == ref.summary["faults"] > 0
    assert res.per_enclave == ref.per_enclave
