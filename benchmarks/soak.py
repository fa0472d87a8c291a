"""Soak: an enclave 4x the EPC, random reads and writes from inside, every byte verified.

Run: python benchmarks/soak.py [--epc-pages N] [--accesses A] [--repeat R] [--seed S]
                              [--breakdown ACCESSES]

The selftests' enclave gets a heap of four times the EPC (content mode, the on-disk backing
store). One thread runs operations of ``--steps`` random accesses each: an 8-byte store of a
fresh random value, or an 8-byte load checked at once against a shadow copy of the heap.
Most accesses find their page evicted: #PF, ELDU (AES-GCM open of the sealed page read from
the backing file), and the reclaimer's EWB (AES-GCM seal, written to the file) to make room.
At the end every byte of the heap is read back from inside and compared with the shadow.

Reports, median of R runs:

* accesses, faults, pages sealed (EWB) and opened (ELDU) per second of wall time;
* the sealing path alone: pages sealed and opened per second of the time spent in
  ``DriverOwner.drain_seals`` and in ``SgxDriver._eldu``. ``drain_seals`` covers all the work
  of sealing what the reclaimer wrote back: AES-GCM seal of each page (IV from the version,
  MAC header from EID, LINADDR and SECINFO) into a staging buffer, the page wiped, and two
  writes to the backing file (the ciphertext at its page, the PCMD with SECINFO, ENCLAVEID
  and MAC). ``_eldu`` covers all the work of opening one: two reads of the backing file (the
  ciphertext, the PCMD with the MAC), the VA slot's version and the SECS's EID, AES-GCM open
  and the ELDU leaf, which copies the plaintext into the EPC page. What surrounds them (the
  fault, EPC allocation, EBLOCK/EWB of the compiled reclaimer, truncating the backing page
  after ELDU) is outside;
* raw AES-GCM seal+open of a 4 KiB page with a 128-byte AAD, measured in the same process,
  in the same unit (sealing operations per second), and the ratio (goal: >= 50% of raw);
  raw is a tight loop over one page, so its cipher runs with warm caches;
* the same raw calls with a pause of other Python work before each page (timed: the calls
  alone), which is how the sealing path meets the cipher: one page per fault;
* with ``--breakdown``, microseconds per call of each part of the sealing path, from one
  more run with a timer on each part.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

try:
    from _machine import machine
except ImportError:  # imported from elsewhere (the soak test)
    def machine() -> str:
        return ""

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from epcsim.hw.cpu import Processor
from epcsim.kernel.instance import Kernel
from epcsim.kernel.vdso import EENTER, EEXIT, Operation, SgxEnclaveRun
from epcsim.selftest.loader import HEAP, setup_test_encl

PAGE = 4096


class Timer:
    """Wall time spent inside the wrapped methods, and how many calls."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, fn):  # type: ignore[no-untyped-def]
        def timed(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.seconds += time.perf_counter() - t
                self.calls += 1
        return timed


def raw_aes_gcm(n: int = 20000) -> float:
    """Sealing operations per second: AES-128-GCM encrypt + decrypt of 4 KiB, 128-byte AAD."""
    aead = AESGCM(bytes(range(16)))
    page = os.urandom(PAGE)
    aad = bytes(128)
    t = time.perf_counter()
    for v in range(1, n + 1):
        iv = (v << 32).to_bytes(12, "little")
        ct = aead.encrypt(iv, page, aad)
        aead.decrypt(iv, ct, aad)
    return 2 * n / (time.perf_counter() - t)


def raw_aes_gcm_after_pause(n: int = 1000, pause: int = 20000) -> float:
    """:func:`raw_aes_gcm`, each seal+open after ``pause`` iterations of other work."""
    aead = AESGCM(bytes(range(16)))
    page = os.urandom(PAGE)
    aad = bytes(128)
    spent = 0.0
    for v in range(1, n + 1):
        sum(range(pause))
        t = time.perf_counter()
        iv = (v << 32).to_bytes(12, "little")
        ct = aead.encrypt(iv, page, aad)
        aead.decrypt(iv, ct, aad)
        spent += time.perf_counter() - t
    return 2 * n / spent


def soak(epc_pages: int, accesses: int, *, steps: int = 1000, seed: int = 0,
         backing_dir: str | None = None) -> dict[str, float]:
    cpu = Processor(epc_size=epc_pages * PAGE, content=True, n_lps=2, seed=seed)
    k = Kernel(cpu, backing_dir=backing_dir)
    heap_pages = 4 * epc_pages
    encl = setup_test_encl(k, heap_pages * PAGE)
    heap = encl.base + HEAP
    shadow = np.zeros(heap_pages * PAGE, dtype=np.uint8)
    rng = np.random.default_rng(seed)
    owner, sgx = k.driver_owner, k.sgx
    seal_t, open_t = Timer(), Timer()
    owner.drain_seals = seal_t.wrap(owner.drain_seals)  # type: ignore[method-assign]
    sgx._eldu = open_t.wrap(sgx._eldu)                   # type: ignore[method-assign]
    mismatches = [0]

    def store(off: int, value: bytes):  # type: ignore[no-untyped-def]
        def step(ctx) -> None:  # type: ignore[no-untyped-def]
            ctx.write(heap + off, value)
            shadow[off:off + 8] = np.frombuffer(value, np.uint8)
        return step

    def load(off: int):  # type: ignore[no-untyped-def]
        def step(ctx) -> None:  # type: ignore[no-untyped-def]
            if ctx.read(heap + off, 8) != shadow[off:off + 8].tobytes():
                mismatches[0] += 1
        return step

    run = SgxEnclaveRun(tcs=encl.tcs[0])
    e = encl.file.e
    sealed0 = k.mgr.counters()["ewb"]
    t = time.perf_counter()
    done = 0
    while done < accesses:
        n = min(steps, accesses - done)
        pages = rng.integers(0, heap_pages, n)
        slots = rng.integers(0, PAGE // 8, n) * 8
        writes = rng.random(n) < 0.5
        values = rng.integers(0, 2**63, n, dtype=np.int64)
        op = Operation("soak", [store(int(p) * PAGE + int(s), int(v).to_bytes(8, "little"))
                                if w else load(int(p) * PAGE + int(s))
                                for p, s, w, v in zip(pages, slots, writes, values)])
        assert encl.thread.enter(run, EENTER, op) == 0 and run.function == EEXIT
        done += n
    dt = time.perf_counter() - t
    counters = sgx.counters(e)
    sealed = k.mgr.counters()["ewb"] - sealed0
    opened = counters["eldu"] + counters["secs_eldu"]
    # Every byte, read back from inside, page by page.
    bad_pages = [0]

    def check(p: int):  # type: ignore[no-untyped-def]
        def step(ctx) -> None:  # type: ignore[no-untyped-def]
            if ctx.read(heap + p * PAGE, PAGE) != shadow[p * PAGE:(p + 1) * PAGE].tobytes():
                bad_pages[0] += 1
        return step
    for first in range(0, heap_pages, steps):
        op = Operation("verify", [check(p) for p in range(first, min(first + steps,
                                                                      heap_pages))])
        assert encl.thread.enter(run, EENTER, op) == 0 and run.function == EEXIT
    backing = owner.backing[e]
    disk = backing.disk_bytes()
    assert encl.close() == 0
    sealing_s = seal_t.seconds + open_t.seconds
    return {
        "accesses_per_s": accesses / dt, "faults_per_s": counters["faults"] / dt,
        "sealed": sealed, "opened": opened,
        "sealed_opened_per_s_wall": (sealed + opened) / dt,
        "sealed_opened_per_s_sealing_path": (sealed + opened) / sealing_s if sealing_s else 0.0,
        "sealing_path_share_of_wall": sealing_s / dt,
        "mismatched_reads": mismatches[0], "mismatched_pages": bad_pages[0],
        "backing_disk_bytes_at_end": disk, "seconds": dt,
    }


def breakdown(epc_pages: int, accesses: int, *, steps: int = 1000,
              backing_dir: str | None = None) -> dict[str, float]:
    """Microseconds per call of the parts of the sealing path, from one extra run.

    Each part is wrapped in a timer, which adds its own cost, so this run is not one of the
    measured ones: it tells where the sealing path's time goes.
    """
    from epcsim.hw import encls
    from epcsim.hw.crypto import PagingKey
    from epcsim.kernel.backing import Backing

    parts = [("seal: AES-GCM", PagingKey, "seal_into"),
             ("seal: write ciphertext + PCMD", Backing, "store_sealed"),
             ("open: read ciphertext + PCMD", Backing, "load_into"),
             ("open: VA slot version + SECS EID (compiled)", encls, "eldu_keys_h"),
             ("open: AES-GCM", PagingKey, "open_into"),
             ("open: ELDU leaf + plaintext copy (compiled)", encls, "eldu_h")]
    timers = []
    for name, owner, attr in parts:
        t = Timer()
        timers.append((name, t, owner, attr, getattr(owner, attr)))
        setattr(owner, attr, t.wrap(getattr(owner, attr)))
    try:
        r = soak(epc_pages, accesses, steps=steps, backing_dir=backing_dir)
    finally:
        for _, _, owner, attr, fn in timers:
            setattr(owner, attr, fn)
    out = {name: 1e6 * t.seconds / t.calls if t.calls else 0.0
           for name, t, _, _, _ in timers}
    # The whole, in the same run and with the same timers: per page sealed, plus one opened.
    out["sealing path, per page sealed and opened"] = 2e6 / r["sealed_opened_per_s_sealing_path"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epc-pages", type=int, default=2048)
    ap.add_argument("--accesses", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backing-dir", default=None)
    ap.add_argument("--breakdown", type=int, default=0, metavar="ACCESSES",
                    help="after the runs, one run of this many accesses timing each part "
                         "of the sealing path (microseconds per call)")
    a = ap.parse_args()
    soak(256, 2000, steps=100)  # compile (on 64 pages every access pages the thread too)
    with tempfile.TemporaryDirectory(dir=a.backing_dir) as d:
        runs = []
        raws = []
        paused = []
        for r in range(a.repeat):
            runs.append(soak(a.epc_pages, a.accesses, steps=a.steps, seed=a.seed + r,
                             backing_dir=d))
            raws.append(raw_aes_gcm())
            paused.append(raw_aes_gcm_after_pause())
            print(json.dumps({"run": r, **runs[-1], "raw": raws[-1], "raw_after_pause":
                              paused[-1]}), file=sys.stderr, flush=True)
            assert os.listdir(d) == [], "a backing file outlived its enclave"
    med = {key: statistics.median(x[key] for x in runs) for key in runs[0]}
    raw = statistics.median(raws)
    out = {"machine": machine(), "epc_pages": a.epc_pages, "enclave_pages": 4 * a.epc_pages,
           "accesses": a.accesses, "repeat": a.repeat, **med,
           "raw_aes_gcm_sealed_opened_per_s": raw,
           "raw_aes_gcm_after_pause_sealed_opened_per_s": statistics.median(paused),
           "ratio_sealing_path_to_raw": med["sealed_opened_per_s_sealing_path"] / raw,
           "ratio_wall_to_raw": med["sealed_opened_per_s_wall"] / raw,
           "all_verified": all(x["mismatched_reads"] == 0 and x["mismatched_pages"] == 0
                               for x in runs)}
    if a.breakdown:
        with tempfile.TemporaryDirectory(dir=a.backing_dir) as d:
            out["breakdown_us_per_call"] = breakdown(a.epc_pages, a.breakdown, steps=a.steps,
                                                     backing_dir=d)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
