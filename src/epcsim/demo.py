"""The life of one enclave on the processor model, step by step.

``epcsim demo`` prints these steps. Each step is a leaf the way ring-0 code issues it, the
result the processor gave, and what changed in the EPCM.
"""

from __future__ import annotations

from dataclasses import dataclass

from epcsim.arch import PageType, SecinfoFlags, SgxReturn
from epcsim.hw.baremetal import BareMetal, Segment, tcs_image
from epcsim.hw.cpu import Processor
from epcsim.hw.memory import PROT_READ, PROT_WRITE, AddressSpace

SECRET = b"epcsim: this page survives EWB and ELDU"


@dataclass(frozen=True)
class Step:
    leaf: str
    result: str
    detail: str


def enclave_life(*, content: bool = True, seed: int = 0) -> list[Step]:
    """Build, run, evict, reload and tear down one enclave; return what each step did."""
    cpu = Processor(epc_size=1 << 20, content=content, seed=seed)
    bm = BareMetal(cpu)
    steps: list[Step] = []

    def note(leaf: str, rc: int, detail: str) -> None:
        steps.append(Step(leaf, SgxReturn(rc).name, detail))

    base = 0x10_0000_0000
    encl = bm.build([Segment(0, tcs_image(ossa=0x1000), PageType.TCS),
                     Segment(0x1000, b"", perms=SecinfoFlags.R | SecinfoFlags.W),
                     Segment(0x2000, SECRET, perms=SecinfoFlags.R | SecinfoFlags.W)],
                    base=base, init=False)
    info = cpu.secs_info(encl.secs)
    note("ECREATE", 0, f"SECS at EPC {encl.secs:#x}, ELRANGE {base:#x}+{encl.size:#x}, "
                       f"EID {info['eid']}")
    note("EADD/EEXTEND", 0, f"{len(encl.pages)} pages added and measured; "
                            f"CHLDCNT={info['chldcnt']}")
    note("EINIT", bm.einit(encl), f"MRENCLAVE {cpu.secs_info(encl.secs)['mrenclave'].hex()[:16]}… "
                                  f"matches the signed SIGSTRUCT")

    page = encl.pages[base + 0x2000]
    aspace = AddressSpace()
    for lin, phys in encl.pages.items():
        aspace.map(lin, phys, PROT_READ | PROT_WRITE)
    cpu.aspace[0] = aspace
    note("EENTER", cpu.eenter(0, base), "logical processor 0 runs inside the enclave")
    va = bm.epa()
    note("EPA", 0, f"VA page at {va:#x}: 512 empty version slots")
    note("EBLOCK", cpu.eblock(page), f"page {base + 0x2000:#x} BLOCKED: no new TLB entries")
    note("ETRACK", cpu.etrack(encl.secs), "new tracking epoch; LP 0 entered before it")
    rc, ev = bm.ewb(page, va)
    note("EWB", rc, "refused: LP 0 may still hold a TLB entry for the page")
    cpu.aex(0)
    note("AEX", 0, "an IPI interrupts LP 0: its enclave TLB entries are flushed")
    rc, ev = bm.ewb(page, va)
    sealed = "AES-GCM ciphertext" if content else "metadata"
    note("EWB", rc, f"page sealed ({sealed}) to untrusted memory; version in VA slot 0; "
                    f"CHLDCNT={cpu.secs_info(encl.secs)['chldcnt']}")
    rc, target = bm.eldu(ev, encl.secs)
    aspace.map(base + 0x2000, target, PROT_READ | PROT_WRITE)
    note("ELDU", rc, f"verified and reloaded at EPC {target:#x}; VA slot cleared")
    note("ERESUME", cpu.eresume(0, base), "LP 0 continues where it was interrupted")
    data = cpu.enclave_read(0, base + 0x2000, len(SECRET))
    shown = data.decode() if content else "(metadata mode keeps no bytes)"
    steps.append(Step("read", "ok" if data == SECRET or not content else "MISMATCH",
                      f"enclave reads back: {shown}"))
    rc, _ = bm.eldu(ev, encl.secs)
    note("ELDU", rc, "the same blob again: the version slot is empty, replay refused")
    note("EREMOVE", cpu.eremove(target), "refused while a thread is inside")
    note("EEXIT", cpu.eexit(0), "LP 0 leaves the enclave")
    note("EREMOVE", cpu.eremove(encl.secs), "the SECS still has children")
    for phys in list(encl.pages.values()) + [target]:
        cpu.eremove(phys)
    note("EREMOVE", cpu.eremove(encl.secs), "children removed, then the SECS: the enclave is gone")
    note("EREMOVE", cpu.eremove(va), "the VA page")
    used = int((cpu.st.flags & 0x40).astype(bool).sum())
    steps.append(Step("EPC", "free" if used == 0 else "LEAK", f"{used} EPC pages still valid"))
    return steps
