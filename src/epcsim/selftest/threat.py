"""Suite ``threat-model``: the malicious-OS attacks of :mod:`epcsim.attack`, each on a
fresh victim machine, each required to end as the architecture says (Intel SDM vol. 3D)
with every enclave's data intact."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from epcsim.attack import ATTACKS, AttackResult, Lab

# attack -> (the architectural outcome, what the victim thread sees)
EXPECTED: dict[str, tuple[str, str]] = {
    "tamper-contents": ("SGX_MAC_COMPARE_FAIL", "SIGBUS"),
    "tamper-pcmd-mac": ("SGX_MAC_COMPARE_FAIL", "SIGBUS"),
    "tamper-pcmd-secinfo": ("SGX_MAC_COMPARE_FAIL", "SIGBUS"),
    "replay-old-version": ("SGX_MAC_COMPARE_FAIL", "SIGBUS"),
    "swap-same-enclave": ("SGX_MAC_COMPARE_FAIL", "SIGBUS"),
    "swap-across-enclaves": ("SGX_MAC_COMPARE_FAIL", "SIGBUS"),
    "drop-page": ("SGX_MAC_COMPARE_FAIL", "SIGBUS"),
    "reload-elsewhere": ("SGX_MAC_COMPARE_FAIL", "nothing"),
    "eremove-secs-with-children": ("SGX_CHILD_PRESENT", "nothing"),
    "ewb-secs-with-children": ("SGX_CHILD_PRESENT", "nothing"),
    "eremove-while-inside": ("SGX_ENCLAVE_ACT", "nothing"),
    "map-foreign-page": ("#PF", "#PF(SGX)"),
    "read-epc-from-outside": ("abort-page", "nothing"),
}


def _test(name: str) -> Callable[[Any], None]:
    def run(h: Any) -> None:
        lab = Lab(epc_pages=h.epc_size // 4096, seed=h.seed)
        try:
            r: AttackResult = ATTACKS[name](lab)
        finally:
            lab.close()
        outcome, seen = EXPECTED[name]
        for step in r.steps:
            h.checks.append(step)
        h.expect(f"{name}: outcome", r.outcome, outcome)
        h.expect(f"{name}: the enclave saw", r.enclave_saw, seen)
        h.expect(f"{name}: detected", r.detected, True)
        h.expect(f"{name}: every enclave's data unchanged", r.data_unchanged, True)
        h.expect(f"{name}: kernel consistent, nothing leaked", r.clean, True)
    run.__doc__ = ATTACKS[name].__doc__
    return run


TESTS: dict[str, Callable[[Any], None]] = {name.replace("-", "_"): _test(name)
                                           for name in ATTACKS}
