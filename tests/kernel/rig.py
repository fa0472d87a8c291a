"""A processor, the minimal owner and a manager over them, for the kernel-layer tests."""

from __future__ import annotations

from minimal_owner import MinimalOwner

from epcsim.hw.cpu import Processor
from epcsim.kernel.main import EpcManager


class Rig:
    """A processor, the minimal owner and a manager over them."""

    def __init__(self, pages: int = 256, n_enclaves: int = 2, nodes: int = 1,
                 **mgr_kw: object) -> None:
        self.cpu = Processor(epc_size=pages * 4096, nodes=nodes)
        self.owner = MinimalOwner(self.cpu, n_enclaves)
        self.mgr = EpcManager(self.cpu, [self.owner], **mgr_kw)  # type: ignore[arg-type]
        for e in range(n_enclaves):
            self.owner.create(self.mgr, e)

    def fill(self, e: int, n: int, reclaim: bool = True) -> list[int]:
        return [self.owner.add(self.mgr, e, reclaim) for _ in range(n)]
