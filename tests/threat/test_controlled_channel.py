"""The controlled channel (docs/threat-model.md): what SGX does not protect, shown."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from epcsim.attack import Lab, PageFaultTracer
from epcsim.kernel.vdso import EENTER, EEXIT, SgxEnclaveRun

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "controlled_channel.py"


@pytest.fixture(scope="module")
def example() -> dict:  # type: ignore[type-arg]
    return runpy.run_path(str(EXAMPLE))


def test_the_example_recovers_the_secret(example, capsys) -> None:  # type: ignore[no-untyped-def]
    assert example["main"]() == 0
    out = capsys.readouterr().out
    assert "controlled channel: secret recovered" in out
    assert f"recovered by the OS: {example['SECRET']:#010x}" in out


def _trace(example, secret: int, isolate: bool) -> tuple[list[int], int, int]:  # type: ignore[no-untyped-def]
    lab = Lab(enclaves=1, heap_pages=4, fill=False)
    key, sq, mul, out = lab.pages(0)[2:6]
    lab.write(0, key, secret)
    lab.write(0, sq, example["MODULUS"])
    lab.write(0, mul, example["BASE"])
    op = example["modexp_operation"](lab, key, sq, mul, out, 16)
    with PageFaultTracer(lab, 0, [key, sq, mul, out], isolate=isolate) as view:
        run = SgxEnclaveRun(tcs=lab.enclaves[0].tcs[0])
        assert lab.enclaves[0].thread.enter(run, EENTER, op) == 0
        assert run.function == EEXIT
    assert op.values["result"] == pow(example["BASE"], secret, example["MODULUS"])
    base = lab.enclaves[0].base
    guessed = example["recover"](view.faults, key - base, sq - base, mul - base)
    assert view.table().num_rows == len(view.faults)
    lab.close()
    return view.faults, guessed, base


@pytest.mark.parametrize("secret", [0x0000, 0xFFFF, 0xA5C3, 0x0001, 0x8000])
def test_any_secret_leaks_through_the_fault_sequence(example, secret: int) -> None:  # type: ignore[no-untyped-def]
    _, guessed, _ = _trace(example, secret, isolate=True)
    assert guessed == secret


def test_without_clearing_ptes_the_os_sees_only_first_touches(example) -> None:  # type: ignore[no-untyped-def]
    faults, guessed, _ = _trace(example, 0xA5C3, isolate=False)
    assert len(faults) <= 4                     # each page faults once, when first touched
    assert guessed != 0xA5C3
