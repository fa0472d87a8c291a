"""Bad register values through the register-level API (Intel SDM vol. 3D).

Whatever RBX/RCX/RDX hold, a leaf ends in one of three ways: an ``SgxReturn``, an
``ArchFault`` (#GP/#PF/#UD), or an SGX_CONFLICT VM exit. Never an IndexError, an
OverflowError or any other Python exception, and never a silent change on a failing path.
"""

from __future__ import annotations

import pytest
from hwenv import (
    BASE,
    EPC_BASE,
    EPC_SIZE,
    FLAGS_REG_RW,
    OFF_DATA0,
    OFF_DATA1,
    OFF_FREE,
    OFF_SECINFO,
    OFF_TCS,
    SIZE,
    Env,
    assert_same,
    snapshot,
    unchanged,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epcsim.arch import (
    PAGE_SIZE,
    Encls,
    Enclu,
    Enclv,
    PageInfo,
    PageType,
    Secs,
    SgxReturn,
    secinfo_flags,
)
from epcsim.hw.cpu import ArchFault, GeneralProtectionFault, PageFault, SgxConflictExit
from epcsim.hw.crypto import sign_sigstruct
from epcsim.hw.encls import is_child_type

U64 = 2**64 - 1
NOT_EPC = [EPC_BASE - PAGE_SIZE, EPC_BASE + EPC_SIZE, EPC_BASE + 2 * EPC_SIZE, 0, -PAGE_SIZE,
           -(2**40), U64 + 1 - PAGE_SIZE, 2**64, 2**70]


# ------------------------------------------------------------------ a world to aim at

class World:
    """An initialised enclave, an open one, a VA page, an evicted page and operands for
    every leaf, all at known addresses."""

    def __init__(self, content: bool = False) -> None:
        env = self.env = Env(content=content)
        self.encl = env.enclave()
        self.open = env.enclave(base=2 * BASE, init=False)
        self.va = env.va()
        self.ev = env.evict(self.encl.phys(OFF_DATA1), self.va + 8, secs=self.encl.secs)
        self.free = env.free_epc()
        pi = env.pageinfo
        mem = env.mem_addr
        self.ops = {
            Encls.ECREATE: pi(srcpge=env.bm.put(Secs(size=SIZE, baseaddr=4 * BASE,
                                                     ssaframesize=1, attributes=4,
                                                     xfrm=3).pack()),
                              metadata=env.secinfo(secinfo_flags(PageType.SECS))),
            Encls.EADD: pi(linaddr=self.open.lin(OFF_FREE), srcpge=mem(),
                           metadata=env.secinfo(FLAGS_REG_RW), secs=self.open.secs),
            Encls.EAUG: pi(linaddr=self.encl.lin(OFF_FREE), secs=self.encl.secs),
            Encls.EWB: pi(srcpge=mem(), metadata=mem(128, 128)),
            Encls.ELDU: pi(linaddr=self.ev.linaddr, srcpge=self.ev.srcpge,
                           metadata=self.ev.pcmd, secs=self.encl.secs),
            Encls.EMODPR: env.secinfo(secinfo_flags(PageType.REG, 1)),
            Encls.EMODT: env.secinfo(secinfo_flags(PageType.TRIM)),
            Encls.ERDINFO: mem(32, 32),
            Encls.EINIT: env.bm.put(sign_sigstruct(self.open.built.mrenclave)),
        }
        self.token = env.bm.put(bytes(304), 512)
        epc_pages = [self.encl.secs, self.open.secs, self.va, self.free,
                     self.encl.phys(OFF_TCS), self.encl.phys(OFF_DATA0),
                     self.open.phys(OFF_DATA0), EPC_BASE, EPC_BASE + EPC_SIZE - PAGE_SIZE]
        self.pool = sorted(set(epc_pages + list(self.ops.values())
                               + [self.ev.srcpge, self.ev.pcmd, self.va + 8, self.token]
                               + [a for a in NOT_EPC if 0 <= a <= U64]))

    def regs_for(self, leaf: Encls) -> tuple[int, int, int]:
        """Operands that are right for ``leaf`` except for RCX (filled in by the caller)."""
        rbx = self.ops.get(leaf, 0)
        rdx = 0
        if leaf in (Encls.ELDB, Encls.ELDBC, Encls.ELDUC):
            rbx = self.ops[Encls.ELDU]
        if leaf in (Encls.EWB, Encls.ELDU, Encls.ELDB, Encls.ELDBC, Encls.ELDUC):
            rdx = self.va + 8
        if leaf == Encls.EPA:
            rbx = PageType.VA
        if leaf == Encls.EEXTEND:
            rbx = self.open.secs
        if leaf == Encls.EINIT:
            rdx = self.token
        return rbx, 0, rdx


RCX_LEAVES = [leaf for leaf in Encls if leaf not in (Encls.EUPDATESVN, Encls.EINIT,
                                                    Encls.ERDINFO)]


# ------------------------------------------------------------------ scripted cases

@pytest.mark.parametrize("leaf", [0x14, 0x15, 0x16, 0x17, 0x19, 0x77, 0xFF, 0x1_0000_0000, -1])
def test_encls_gp_unknown_leaf(env, leaf):
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.encls(leaf, 0, 0, 0)


@pytest.mark.parametrize("leaf", [0x0C, 0x55, 0xFF, -1])
def test_enclu_gp_unknown_leaf(env, leaf):
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.enclu(0, leaf)


@pytest.mark.parametrize("leaf", [3, 9, 0xFF, -1])
def test_enclv_gp_unknown_leaf(env, leaf):
    with unchanged(env), pytest.raises(GeneralProtectionFault):
        env.cpu.enclv(leaf)


@pytest.mark.parametrize("leaf", RCX_LEAVES, ids=lambda leaf: leaf.name)
@pytest.mark.parametrize("addr", NOT_EPC, ids=lambda a: hex(a))
def test_encls_pf_rcx_not_epc(leaf, addr):
    w = World()
    rbx, _, rdx = w.regs_for(leaf)
    with unchanged(w.env), pytest.raises(PageFault):
        w.env.cpu.encls(leaf, rbx, addr, rdx)


@pytest.mark.parametrize("addr", NOT_EPC, ids=lambda a: hex(a))
def test_erdinfo_sgx_pg_nonepc_any_address(addr):
    w = World()
    with unchanged(w.env):
        assert w.env.cpu.encls(Encls.ERDINFO, w.ops[Encls.ERDINFO], addr) == \
            SgxReturn.SGX_PG_NONEPC


@pytest.mark.parametrize("addr", NOT_EPC, ids=lambda a: hex(a))
def test_einit_pf_secs_not_epc_any_address(addr):
    w = World()
    with unchanged(w.env), pytest.raises(PageFault):
        w.env.cpu.encls(Encls.EINIT, w.ops[Encls.EINIT], addr, w.token)


@pytest.mark.parametrize("leaf", [Encls.ECREATE, Encls.EADD, Encls.EAUG, Encls.EWB, Encls.ELDB,
                                  Encls.ELDU, Encls.ELDBC, Encls.ELDUC],
                         ids=lambda leaf: leaf.name)
@pytest.mark.parametrize("offset", [1, 8, 16, 31, -32 + 4])
def test_encls_gp_misaligned_pageinfo(leaf, offset):
    w = World()
    rbx, _, rdx = w.regs_for(leaf)
    rcx = w.free if leaf != Encls.EWB else w.encl.phys(OFF_DATA0)
    with unchanged(w.env), pytest.raises(GeneralProtectionFault):
        w.env.cpu.encls(leaf, rbx + offset, rcx, rdx)


@pytest.mark.parametrize("leaf", RCX_LEAVES, ids=lambda leaf: leaf.name)
def test_encls_gp_misaligned_rcx(leaf):
    w = World()
    rbx, _, rdx = w.regs_for(leaf)
    with unchanged(w.env), pytest.raises(GeneralProtectionFault):
        w.env.cpu.encls(leaf, rbx, w.encl.phys(OFF_DATA0) + 2, rdx)


@pytest.mark.parametrize("leaf", [Encls.EWB, Encls.ELDB, Encls.ELDU, Encls.ELDBC, Encls.ELDUC],
                         ids=lambda leaf: leaf.name)
@pytest.mark.parametrize("slot", NOT_EPC + [1, 2**64 - 1], ids=lambda a: hex(a))
def test_encls_bad_va_slot(leaf, slot):
    w = World()
    rbx, _, _ = w.regs_for(leaf)
    rcx = w.free if leaf != Encls.EWB else w.encl.phys(OFF_DATA0)
    with unchanged(w.env), pytest.raises(ArchFault):
        w.env.cpu.encls(leaf, rbx, rcx, slot)


@pytest.mark.parametrize("secs", NOT_EPC + [3, 2**64 - 1], ids=lambda a: hex(a))
def test_eadd_bad_secs_field(secs):
    w = World()
    pi = w.env.pageinfo(linaddr=w.open.lin(OFF_FREE), srcpge=w.env.mem_addr(),
                        metadata=w.env.secinfo(FLAGS_REG_RW), secs=secs & U64)
    target = w.free
    with unchanged(w.env), pytest.raises(ArchFault):
        w.env.cpu.encls(Encls.EADD, pi, target)


def test_edbgwr_huge_value_is_truncated_to_64_bits(cenv):
    from epcsim.arch import Attribute
    encl = cenv.enclave(attributes=int(Attribute.MODE64BIT | Attribute.DEBUG))
    addr = encl.phys(OFF_DATA0)
    assert cenv.cpu.encls(Encls.EDBGWR, 2**70 + 0x1234, addr) == 0
    assert cenv.cpu.edbgrd(addr) == (0, 0x1234)


def test_esetcontext_full_64_bit_context(env, encl):
    assert env.cpu.enclv(Enclv.ESETCONTEXT, U64, encl.secs) == 0
    assert env.info(encl)["enclavecontext"] == U64


# ------------------------------------------------------------------ random registers

def chldcnt_invariant(env: Env) -> None:
    """Intel SDM vol. 3D: every resident SECS counts exactly its resident children,
    and every valid child names a resident SECS."""
    st_ = env.cpu.st
    valid = (st_.flags & 0x40) != 0
    child = valid & (st_.pt != PageType.SECS) & (st_.pt != PageType.VA)
    for page in range(env.cpu.npages):
        if child[page]:
            owner = int(st_.s_page[st_.row[page]])
            assert owner >= 0 and valid[owner] and st_.pt[owner] == PageType.SECS, page
    for page in range(env.cpu.npages):
        if valid[page] and st_.pt[page] == PageType.SECS:
            row = int(st_.row[page])
            n = int(((st_.row == row) & child).sum())
            assert int(st_.s_chld[row]) == n, (page, int(st_.s_chld[row]), n)


OFFSETS = [0, 1, 4, 8, 16, 24, 32, 64, 128, 256, 0x800, 0xFF8, PAGE_SIZE, -8, -PAGE_SIZE]


def reg_strategy(pool: list[int]) -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from(pool),               # listed twice: aligned operands reach deeper
        st.integers(0, U64),
        st.integers(-(2**64), 2**72),
        st.sampled_from(pool),
        st.builds(lambda a, o: a + o, st.sampled_from(pool), st.sampled_from(OFFSETS)),
    )


def _check_call(w: World, call, *, enclave_lp: int | None = None) -> None:
    env = w.env
    before = snapshot(env.cpu)
    inside_before = enclave_lp is not None and env.cpu.inside(enclave_lp)
    try:
        rc = call()
    except (ArchFault, SgxConflictExit):
        failed = True
    else:
        assert isinstance(rc, SgxReturn), type(rc)
        failed = rc not in (SgxReturn.SGX_SUCCESS, SgxReturn.SGX_VA_SLOT_OCCUPIED)
    if failed:
        after = snapshot(env.cpu)
        if inside_before and not env.cpu.inside(enclave_lp):   # delivered through an AEX
            for name in ("lp_row", "lp_epoch", "lp_tcs", "tcs", "s_refcnt", "s_prev"):
                before[0][name] = after[0][name]
        assert_same(before, after)
    chldcnt_invariant(env)


FUZZ = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(st.data())
def test_encls_random_registers(data):
    w = World()
    regs = reg_strategy(w.pool)
    # Some PAGEINFOs whose every field is drawn too.
    for _ in range(data.draw(st.integers(0, 2))):
        pi = PageInfo(*(data.draw(regs) & U64 for _ in range(4)))
        w.pool.append(w.env.bm.put(pi.pack(), 32))
    regs = reg_strategy(w.pool)
    for _ in range(data.draw(st.integers(1, 4))):
        leaf = data.draw(st.sampled_from(list(Encls)))
        rbx, rcx, rdx = data.draw(regs), data.draw(regs), data.draw(regs)
        ctx = data.draw(st.sampled_from([0, 1]))
        # _check_call runs the lambda before the loop rebinds its operands.
        _check_call(w, lambda: w.env.cpu.encls(leaf, rbx, rcx, rdx, ctx=ctx))  # noqa: B023


@FUZZ
@given(st.data())
def test_encls_random_registers_near_valid(data):
    """Right operands for the leaf, one of them replaced by a random value."""
    w = World(content=data.draw(st.booleans()))
    regs = reg_strategy(w.pool)
    leaf = data.draw(st.sampled_from(list(Encls)))
    rbx, _, rdx = w.regs_for(leaf)
    ops = [rbx, data.draw(st.sampled_from(w.pool)), rdx]
    ops[data.draw(st.integers(0, 2))] = data.draw(regs)
    _check_call(w, lambda: w.env.cpu.encls(leaf, *ops))


@FUZZ
@given(st.data())
def test_enclu_random_registers(data):
    w = World(content=True)        # ENCLU reads SECINFO from enclave memory in this mode
    env = w.env
    lp = data.draw(st.integers(0, env.cpu.n_lps - 1))
    env.cpu.aspace[lp] = w.encl.aspace
    if data.draw(st.booleans()):
        env.enter(w.encl, lp)
        env.eaug(w.encl, OFF_FREE)
    lin_pool = sorted(w.encl.built.pages) + [w.encl.lin(OFF_SECINFO), BASE - PAGE_SIZE]
    regs = st.one_of(reg_strategy(w.pool), st.sampled_from(lin_pool),
                     st.builds(lambda a, o: a + o, st.sampled_from(lin_pool),
                               st.sampled_from(OFFSETS)))
    for _ in range(data.draw(st.integers(1, 3))):
        leaf = data.draw(st.sampled_from(list(Enclu)))
        rbx, rcx, rdx = data.draw(regs), data.draw(regs), data.draw(regs)
        # _check_call runs the lambda before the loop rebinds its operands.
        _check_call(w, lambda: env.cpu.enclu(lp, leaf, rbx, rcx, rdx), enclave_lp=lp)  # noqa: B023


@FUZZ
@given(st.data())
def test_enclv_random_registers(data):
    w = World()
    regs = reg_strategy(w.pool)
    for _ in range(data.draw(st.integers(1, 4))):
        leaf = data.draw(st.sampled_from(list(Enclv)))
        rbx, rcx = data.draw(regs), data.draw(regs)
        # _check_call runs the lambda before the loop rebinds its operands.
        _check_call(w, lambda: w.env.cpu.enclv(leaf, rbx, rcx))  # noqa: B023


def test_world_sanity():
    """The operands World prepares are right: each leaf succeeds with them."""
    w = World()
    cpu = w.env.cpu
    assert cpu.encls(Encls.EADD, w.ops[Encls.EADD], w.free) == 0
    assert cpu.encls(Encls.EAUG, w.ops[Encls.EAUG], w.env.free_epc()) == 0
    assert cpu.encls(Encls.ELDU, w.ops[Encls.ELDU], w.env.free_epc(), w.va + 8) == 0
    assert cpu.encls(Encls.ECREATE, w.ops[Encls.ECREATE], w.env.free_epc()) == 0
    assert cpu.encls(Encls.EMODPR, w.ops[Encls.EMODPR], w.encl.phys(OFF_DATA0)) == 0
    assert is_child_type(PageType.TRIM)
    chldcnt_invariant(w.env)


@pytest.mark.parametrize("lin", [2**63, U64 + 1 - PAGE_SIZE, -PAGE_SIZE])
def test_enclu_upper_half_linear_addresses(env, encl, lin):
    """Linear operands with bit 63 set are ordinary 64-bit values, not a Python overflow."""
    env.enter(encl)
    env.eaug(encl, OFF_FREE)
    with pytest.raises(GeneralProtectionFault):          # SECINFO outside ELRANGE
        env.cpu.enclu(0, Enclu.EACCEPT, lin, encl.lin(OFF_FREE))
    if not env.cpu.inside(0):
        env.enter(encl)
    encl.aspace.map(lin, encl.phys(OFF_DATA0), 3)      # an alias outside ELRANGE
    assert env.cpu.eaccept(0, encl.lin(OFF_SECINFO), lin, flags=FLAGS_REG_RW | 0x8) == \
        SgxReturn.SGX_PAGE_ATTRIBUTES_MISMATCH
    assert env.cpu.enclave_read(0, lin, 8) == b"\xff" * 8   # EPC outside ELRANGE: abort page
    env.cpu.eexit(0)
    encl.aspace.map(lin, encl.phys(OFF_TCS), 3)
    env.cpu.aspace[0] = encl.aspace
    with pytest.raises(PageFault):                       # not the TCS's ENCLAVEADDRESS
        env.cpu.eenter(0, lin)
