"""The backing store is a real sparse file per enclave, at the kernel's offsets, that holds
the only copy of evicted data and disappears at release."""

from __future__ import annotations

import os

import pytest
from drvkit import assert_all_free

from epcsim.arch import PAGE_SIZE, PageType, Pcmd
from epcsim.attack import AccessFailed, Lab
from epcsim.cli import main
from epcsim.kernel.backing import Backing


def test_evicted_pages_live_in_a_sparse_file_at_the_kernels_offsets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab = Lab(backing_dir=str(tmp_path), heap_pages=8)
    lab.evict_all()
    files = list(tmp_path.iterdir())
    assert len(files) == 2                                  # one file per enclave
    b = lab.backing(0)
    assert b.path is not None and os.path.dirname(b.path) == str(tmp_path)
    size = lab.enclaves[0].size
    assert b.pcmd_offset(0) == size + PAGE_SIZE and b.secs_index() == size // PAGE_SIZE
    evicted = sorted(b.pcmd)
    assert b.secs_index() in evicted                        # the SECS followed its children
    for idx in evicted:
        raw = b.read_raw(b.pcmd_offset(idx), 128)
        pcmd = Pcmd.unpack(raw)
        pt = (pcmd.secinfo.flags >> 8) & 0xFF
        assert pt == PageType.SECS if idx == b.secs_index() else pt in (PageType.REG, PageType.TCS)
        # The file holds ciphertext: the enclave's plaintext value is nowhere in it.
        page = b.read_raw(b.contents_offset(idx), PAGE_SIZE)
        assert page != bytes(PAGE_SIZE)
    value = lab.values[(0, lab.pages(0)[2] + 8)].to_bytes(8, "little")
    with open(b.path, "rb") as f:
        assert value not in f.read()
    # Sparse: only the evicted pages and the PCMD pages occupy disk.
    on_disk = b.disk_bytes()
    assert on_disk <= (len(evicted) + 2) * PAGE_SIZE + 64 * 1024, on_disk
    assert os.stat(b.path).st_size > on_disk                 # the file spans more than it holds
    assert b.bytes_charged == len(evicted) * (PAGE_SIZE + 128)
    assert lab.verify()                                      # and it all comes back
    lab.close()
    assert list(tmp_path.iterdir()) == []
    assert_all_free(lab.kernel)


def test_eldu_truncates_the_backing_page(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab = Lab(backing_dir=str(tmp_path), enclaves=1)
    addr = lab.pages(0)[2] + 8
    lab.evict_all()
    b = lab.backing(0)
    idx = lab.index(0, addr)
    assert idx in b.pcmd
    lab.read(0, addr)
    assert idx not in b.pcmd
    assert b.read_raw(b.contents_offset(idx), PAGE_SIZE) == bytes(PAGE_SIZE)
    assert b.read_raw(b.pcmd_offset(idx), 128) == bytes(128)
    lab.close()


def test_a_file_cut_short_reads_as_zeros(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The OS may truncate the file: what ELDU reads into its buffer is then what ``load``
    returns, zeros where the file ends."""
    lab = Lab(backing_dir=str(tmp_path), enclaves=1)
    lab.evict_all()
    b = lab.backing(0)
    addr = lab.pages(0)[2] + 8
    idx = lab.index(0, addr)
    assert b.path is not None
    for cut in (b.pcmd_offset(idx) + 100, b.contents_offset(idx) + 1000):
        os.truncate(b.path, cut)
        sealed = b.load(idx, 0)
        assert sealed is not None and sealed.contents is not None
        buf = memoryview(bytearray(b"\xff" * (PAGE_SIZE + 16)))
        assert b.load_into(idx, buf) == (sealed.secinfo, sealed.enclave_id)
        assert bytes(buf[:PAGE_SIZE]) == sealed.contents and bytes(buf[PAGE_SIZE:]) == sealed.mac
    with pytest.raises(AccessFailed):    # the page is gone: its read fails rather than lie
        lab.read(0, addr)
    lab.close()


def test_backing_dir_from_the_environment(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("EPCSIM_BACKING_DIR", str(tmp_path / "store"))
    b = Backing(1 << 20)
    b.write_raw(0, b"x")
    assert b.path is not None and b.path.startswith(str(tmp_path / "store"))
    b.close()
    assert not os.path.exists(b.path)


def test_selftest_threat_model_suite_passes(capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    assert main(["selftest", "--suite", "threat-model", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    names = [t["name"] for t in doc["tests"]]
    assert len(names) == 13 and all(t["passed"] for t in doc["tests"])
    assert all(t["suite"] == "threat-model" for t in doc["tests"])
    assert "replay_old_version" in names and "map_foreign_page" in names


def test_pcmd_bytes_are_the_architectural_layout() -> None:
    from epcsim.hw.cpu import SealedPage
    from epcsim.kernel.backing import pcmd_bytes

    for secinfo, eid, mac in ((0x20B, 7, bytes(range(16))), (0x100, 2**63 - 1, b"\xff" * 16)):
        s = SealedPage(secinfo, eid, mac, 0x1000, None)
        assert pcmd_bytes(s) == s.pcmd().pack()
