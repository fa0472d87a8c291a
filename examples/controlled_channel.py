"""The controlled channel: a malicious OS reads a secret exponent from page faults alone.

A small enclave computes ``base ** secret % modulus`` by square-and-multiply, the textbook
way: for each bit of the secret it reads the bit from its key page, squares (its squaring
routine's data lives on page S), and, only when the bit is 1, multiplies (page M). The
arithmetic itself is in registers; each step touches one page.

SGX keeps every byte of the enclave confidential: the OS sees only ciphertext in the backing
store and all-ones if it reads the EPC. But the OS owns the page tables. It clears the PTEs
of the enclave's heap pages, so every access to another page faults, and the #PF handler
sees which page (not which byte: the AEX hides the low 12 bits). The fault sequence
K S K S M K S ... is the exponent: a 1 wherever M follows S.

Run: ``python examples/controlled_channel.py`` (prints the secret and what the OS recovered).
"""

from __future__ import annotations

import sys

from epcsim.attack import Lab, PageFaultTracer
from epcsim.kernel.vdso import EENTER, EEXIT, Operation, SgxEnclaveRun

SECRET = 0b1011_0010_1110_0101_1001_0111_0100_1101
BITS = 32
BASE, MODULUS = 0x1234_5678_9ABC, (1 << 61) - 1      # a Mersenne prime


def modexp_operation(lab: Lab, key: int, sq: int, mul: int, out: int, bits: int) -> Operation:
    """The enclave's code: square-and-multiply over the secret held at ``key``."""
    op = Operation("modexp", [])
    regs = {"acc": 1}

    def load_bit(i: int):  # type: ignore[no-untyped-def]
        def step(ctx) -> None:  # type: ignore[no-untyped-def]
            regs["bit"] = (ctx.read_u64(key) >> (bits - 1 - i)) & 1
        return step

    def square(ctx) -> None:  # type: ignore[no-untyped-def]
        n = ctx.read_u64(sq)                       # the modulus, beside the squaring code
        regs["acc"] = regs["acc"] * regs["acc"] % n

    def multiply(ctx) -> None:  # type: ignore[no-untyped-def]
        if regs["bit"]:                            # secret-dependent: touch M or not
            regs["acc"] = regs["acc"] * ctx.read_u64(mul) % MODULUS

    for i in range(bits):
        op.steps += [load_bit(i), square, multiply]
    op.steps.append(lambda ctx: ctx.write_u64(out, regs["acc"]))
    op.steps.append(lambda ctx: op.values.__setitem__("result", regs["acc"]))
    return op


def recover(faults: list[int], key: int, sq: int, mul: int) -> int:
    """The OS's side: read the exponent out of the fault sequence (page offsets)."""
    bits = []
    seq = [f for f in faults if f in (key, sq, mul)]
    for i, page in enumerate(seq):
        if page == sq:
            bits.append(1 if i + 1 < len(seq) and seq[i + 1] == mul else 0)
    return int("".join(map(str, bits)) or "0", 2)


def main() -> int:
    lab = Lab(enclaves=1, heap_pages=4, fill=False)
    key, sq, mul, out = lab.pages(0)[2:6]
    base = lab.enclaves[0].base
    lab.write(0, key, SECRET)                      # provisioned inside the enclave
    lab.write(0, sq, MODULUS)
    lab.write(0, mul, BASE)
    op = modexp_operation(lab, key, sq, mul, out, BITS)
    with PageFaultTracer(lab, 0, [key, sq, mul, out]) as os_view:
        run = SgxEnclaveRun(tcs=lab.enclaves[0].tcs[0])
        assert lab.enclaves[0].thread.enter(run, EENTER, op) == 0
        assert run.function == EEXIT
    result = op.values["result"]
    assert result == pow(BASE, SECRET, MODULUS), "the enclave computed a wrong result"
    pages = {key - base: "K", sq - base: "S", mul - base: "M", out - base: "O"}
    trace = "".join(pages.get(f, "?") for f in os_view.faults)
    guessed = recover(os_view.faults, key - base, sq - base, mul - base)
    lab.close()
    print(f"faults the OS saw ({len(os_view.faults)}): {trace[:60]}...")
    print(f"secret exponent:    {SECRET:#0{BITS // 4 + 2}x}")
    print(f"recovered by the OS: {guessed:#0{BITS // 4 + 2}x}")
    print("controlled channel: " + ("secret recovered" if guessed == SECRET else "failed"))
    return 0 if guessed == SECRET else 1


if __name__ == "__main__":
    sys.exit(main())
