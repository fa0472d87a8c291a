"""Random cgroups, limits, enclaves, page adds and releases; after every step each cgroup's
``misc.current`` equals the bytes of the pages charged in its subtree, the root's equals the
used EPC, and a successful add leaves every cgroup on its path at or under ``misc.max``."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from epcsim.arch import PAGE_SIZE, Attribute, PageType, Secinfo, Secs, secinfo_flags
from epcsim.hw.cpu import Processor
from epcsim.kernel.cgroup import EpcCgroups
from epcsim.kernel.instance import Kernel
from epcsim.kernel.ioctl import (
    SGX_IOC_ENCLAVE_ADD_PAGES,
    SGX_IOC_ENCLAVE_CREATE,
    SgxEnclaveAddPages,
    SgxEnclaveCreate,
)
from epcsim.kernel.main import CGT_PARENT, P_WAKE
from epcsim.kernel.mm import PROT_READ, PROT_WRITE

PATHS = ["/", "/a", "/a/x", "/a/y", "/b"]
ENCL_PAGES = 64
RW = secinfo_flags(PageType.REG, PROT_READ | PROT_WRITE)


class CgroupMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cpu = Processor(epc_size=96 * PAGE_SIZE, content=False, n_lps=2)
        self.k = Kernel(self.cpu)
        self.cg = EpcCgroups(self.k.mgr, capacity=2)   # grows as cgroups are made
        for p in PATHS[1:]:
            self.cg.mkdir(p)
        self.files: list = []
        self.next_off: list[int] = []
        self.base = 0x10_0000_0000

    @rule(path=st.sampled_from(PATHS[1:]),
          limit=st.one_of(st.just("max"), st.integers(0, 80).map(lambda n: n * PAGE_SIZE)))
    def set_max(self, path: str, limit: int | str) -> None:
        self.cg.write(path, "misc.max", f"sgx_epc {limit}")
        assert self.cg.read(path, "misc.max") == f"sgx_epc {limit}"

    @rule(path=st.sampled_from(PATHS))
    def open_enclave(self, path: str) -> None:
        with self.cg.charging(path):
            f = self.k.open_enclave()
        secs = Secs(size=ENCL_PAGES * PAGE_SIZE, baseaddr=self.base, ssaframesize=1,
                    attributes=Attribute.MODE64BIT, xfrm=3)
        self.base += 1 << 32
        if f.ioctl(SGX_IOC_ENCLAVE_CREATE, SgxEnclaveCreate(secs.pack())) != 0:
            f.close()
            return
        self.files.append(f)
        self.next_off.append(0)

    @precondition(lambda self: self.files)
    @rule(i=st.integers(0, 100), n=st.integers(1, 12))
    def add_pages(self, i: int, n: int) -> None:
        j = i % len(self.files)
        f, off = self.files[j], self.next_off[j]
        n = min(n, ENCL_PAGES - off // PAGE_SIZE)
        if n == 0:
            return
        arg = SgxEnclaveAddPages(src=bytes(n * PAGE_SIZE), offset=off, length=n * PAGE_SIZE,
                                 secinfo=Secinfo(flags=RW).pack(), flags=0)
        rc = f.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, arg)
        self.next_off[j] = off + arg.count
        if rc == 0:
            c = int(self.k.sgx.ds.e_cg[f.e])
            while c >= 0:
                limit = self.cg.max(self.cg.path_of(c))
                cur = self.cg.current(self.cg.path_of(c))
                assert limit == "max" or cur <= limit, f"cgroup {c}: {cur} > {limit}"
                c = int(self.cg.cgt[c, CGT_PARENT])

    @precondition(lambda self: self.files)
    @rule(i=st.integers(0, 100))
    def close(self, i: int) -> None:
        j = i % len(self.files)
        assert self.files.pop(j).close() == 0
        self.next_off.pop(j)

    @rule()
    def ksgxd(self) -> None:
        self.k.mgr.ms.p[P_WAKE] = 1   # wake it, as an allocation under the low watermark does
        self.k.mgr.run_ksgxd()

    @invariant()
    def charges_add_up(self) -> None:
        self.cg.check()
        self.k.mgr.check()
        # Pages ksgxd wrote back are uncharged on its clock, before they are free at ours.
        used = (self.cpu.npages - self.k.mgr.sgx_nr_free_pages - self.k.mgr.pending_pages
                - self.k.mgr.dirty)
        assert self.cg.current("/") == used * PAGE_SIZE
        for p in PATHS:
            assert self.cg.peak(p) >= self.cg.current(p)

    def teardown(self) -> None:
        for f in self.files:
            f.close()
        assert self.cg.current("/") == 0


TestCgroupMachine = CgroupMachine.TestCase
TestCgroupMachine.settings = settings(max_examples=25, stateful_step_count=30, deadline=None,
                                      suppress_health_check=list(HealthCheck))
