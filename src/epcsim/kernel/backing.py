"""The backing store of evicted enclave pages: one sparse file per enclave, on disk.

The kernel backs each enclave with a shmem file (``encl->backing``) of ELRANGE's size plus the
SECS page plus the PCMDs; EWB writes the sealed page and its PCMD there, and ELDU reads them
back (the kernel's SGX code). The file is the OS's memory: the model keeps it as a real file so
that more evicted data than RAM works and so that anyone with the path (the malicious OS of
:mod:`epcsim.attack`) can edit it with ordinary file I/O.

Layout, as the kernel's ``sgx_encl_get_backing``:

* contents of page ``i``: offset ``i * 4096``; the SECS: offset ``size``;
* PCMD of page ``i`` (the SECS is page ``size / 4096``): offset ``size + 4096 + i * 128``,
  encoded as :class:`~epcsim.arch.Pcmd` (SECINFO, ENCLAVEID, reserved, MAC).

What the hardware needs besides these bytes comes from the kernel's own state, never from the
file: the VA slot (version) and PAGEINFO.LINADDR (the page's offset in ELRANGE).

The points where backing memory is allocated and released are :meth:`Backing._charge` and
:meth:`Backing._uncharge`; memory accounting (a cgroup charge) belongs there.
"""

from __future__ import annotations

import ctypes
import os
import struct
import tempfile
import weakref

from epcsim.arch import PAGE_SIZE, Pcmd
from epcsim.hw.cpu import SealedPage

PCMD_SIZE = Pcmd.SIZE
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _fallocate = _libc.fallocate
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _fallocate = None


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Free ``length`` bytes at ``offset`` (reads give zeros), as shmem truncation does."""
    if _fallocate is not None and _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE,
                                             offset, length) == 0:
        return
    os.pwrite(fd, bytes(length), offset)  # pragma: no cover - a file system without holes


def pcmd_bytes(sealed: SealedPage) -> bytes:
    """The 128-byte PCMD of a sealed page (:class:`~epcsim.arch.Pcmd` layout, packed directly:
    SECINFO.FLAGS @0, reserved, ENCLAVEID @64, reserved, MAC @112)."""
    return (struct.pack("<Q", sealed.secinfo) + _ZERO56 + struct.pack("<Q", sealed.enclave_id)
            + _ZERO40 + bytes(sealed.mac).ljust(16, b"\0"))


_ZERO56 = bytes(56)
_ZERO40 = bytes(40)
# The PCMD up to its MAC (SECINFO.FLAGS @0, ENCLAVEID @64), and where the MAC starts.
_PCMD_HEAD = struct.Struct("<Q56xQ40x")
_PCMD_MAC = _PCMD_HEAD.size


def _close_file(fd: int, path: str) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def default_backing_dir() -> str:
    """``$EPCSIM_BACKING_DIR`` if set, else the system's temporary directory."""
    return os.environ.get("EPCSIM_BACKING_DIR") or tempfile.gettempdir()


class Backing:
    """One enclave's backing file (created on the first write-back, removed at release).

    ``pcmd`` is the set of page indices whose sealed copy the kernel stored and has not yet
    loaded back (the kernel's view; an attacker editing the file does not change it).
    """

    def __init__(self, size: int, directory: str | None = None) -> None:
        self.size = size
        self.directory = directory
        self.pcmd: set[int] = set()
        self.path: str | None = None
        self._fd = -1
        self._finalizer: weakref.finalize | None = None
        self.bytes_charged = 0
        self._head = bytearray(_PCMD_MAC)   # the PCMD read by load_into, up to its MAC

    # -------------------------------------------------------------- layout
    def secs_index(self) -> int:
        return self.size // PAGE_SIZE

    def contents_offset(self, index: int) -> int:
        return index * PAGE_SIZE

    def pcmd_offset(self, index: int) -> int:
        return self.size + PAGE_SIZE + index * PCMD_SIZE

    # -------------------------------------------------------------- the file
    def fd(self) -> int:
        """The open file, created on first use in the configured directory."""
        if self._fd < 0:
            d = self.directory or default_backing_dir()
            os.makedirs(d, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix="epcsim-encl-", suffix=".backing", dir=d)
            self._fd, self.path = fd, path
            self._finalizer = weakref.finalize(self, _close_file, fd, path)
        return self._fd

    def close(self) -> None:
        """Release: the file and every page in it go (``fput`` of the shmem file)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._fd = -1
        for index in list(self.pcmd):
            self._uncharge(index)
        self.pcmd.clear()

    # -------------------------------------------------------------- memory accounting
    def _charge(self, index: int) -> None:
        """A backing page (contents + PCMD) is allocated for page ``index``."""
        self.bytes_charged += PAGE_SIZE + PCMD_SIZE

    def _uncharge(self, index: int) -> None:
        """The backing page of ``index`` is freed."""
        self.bytes_charged -= PAGE_SIZE + PCMD_SIZE

    # -------------------------------------------------------------- EWB / ELDU
    def store(self, index: int, sealed: SealedPage) -> None:
        """After EWB: write the sealed contents and the PCMD."""
        fd = self.fd()
        if sealed.contents is not None:
            os.pwrite(fd, sealed.contents, self.contents_offset(index))
        os.pwrite(fd, pcmd_bytes(sealed), self.pcmd_offset(index))
        if index not in self.pcmd:
            self.pcmd.add(index)
            self._charge(index)

    def store_sealed(self, index: int, sealed: memoryview, secinfo: int,
                     enclave_id: int) -> None:
        """:meth:`store` of a page sealed in place: ``sealed`` is the ciphertext then the MAC
        (4112 bytes); the PCMD gets ``secinfo`` and ``enclave_id``."""
        fd = self.fd()
        os.pwrite(fd, sealed[:PAGE_SIZE], index * PAGE_SIZE)
        os.pwrite(fd, _PCMD_HEAD.pack(secinfo, enclave_id) + sealed[PAGE_SIZE:],
                  self.pcmd_offset(index))
        if index not in self.pcmd:
            self.pcmd.add(index)
            self._charge(index)

    def load_into(self, index: int, sealed: memoryview) -> tuple[int, int] | None:
        """:meth:`load` into ``sealed`` (4112 bytes: ciphertext then MAC); returns the PCMD's
        SECINFO.FLAGS and ENCLAVEID, or None when the kernel never stored the page."""
        if index not in self.pcmd or self._fd < 0:
            return None
        head = self._head
        got = os.preadv(self._fd, [sealed[:PAGE_SIZE]], index * PAGE_SIZE)
        # One read puts the MAC right after the ciphertext, where AES-GCM wants it.
        got_pcmd = os.preadv(self._fd, [head, sealed[PAGE_SIZE:]], self.pcmd_offset(index))
        if got < PAGE_SIZE or got_pcmd < PCMD_SIZE:   # the OS cut the file short: zeros
            if got < PAGE_SIZE:
                sealed[got:PAGE_SIZE] = bytes(PAGE_SIZE - got)
            if got_pcmd < PCMD_SIZE:
                whole = (bytes(head) + bytes(sealed[PAGE_SIZE:]))[:got_pcmd].ljust(PCMD_SIZE,
                                                                                   b"\0")
                head[:] = whole[:_PCMD_MAC]
                sealed[PAGE_SIZE:] = whole[_PCMD_MAC:]
        return _PCMD_HEAD.unpack(head)

    def load(self, index: int, linaddr: int) -> SealedPage | None:
        """Before ELDU: what the file holds for page ``index`` now, whoever wrote it.

        ``linaddr`` is the kernel's PAGEINFO.LINADDR (from the page's index, not the file).
        None only when the kernel never stored the page.
        """
        if index not in self.pcmd or self._fd < 0:
            return None
        contents = os.pread(self._fd, PAGE_SIZE, self.contents_offset(index))
        raw = os.pread(self._fd, PCMD_SIZE, self.pcmd_offset(index))
        contents = contents.ljust(PAGE_SIZE, b"\0")
        raw = raw.ljust(PCMD_SIZE, b"\0")
        secinfo = int.from_bytes(raw[0:8], "little")
        eid = int.from_bytes(raw[64:72], "little")
        mac = raw[112:128]
        return SealedPage(secinfo, eid, mac, linaddr, contents)

    def truncate(self, index: int) -> None:
        """After ELDU (or removal): free the contents page and zero the PCMD."""
        if index not in self.pcmd:
            return
        self.pcmd.discard(index)
        if self._fd >= 0:
            punch_hole(self._fd, self.contents_offset(index), PAGE_SIZE)
            os.pwrite(self._fd, bytes(PCMD_SIZE), self.pcmd_offset(index))
        self._uncharge(index)

    # -------------------------------------------------------------- raw access (the OS's)
    def read_raw(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd(), length, offset).ljust(length, b"\0")

    def write_raw(self, offset: int, data: bytes) -> None:
        os.pwrite(self.fd(), data, offset)

    def disk_bytes(self) -> int:
        """Bytes the file occupies on disk (sparse: only pages written and not punched)."""
        if self._fd < 0:
            return 0
        return os.fstat(self._fd).st_blocks * 512


__all__ = ["PCMD_SIZE", "Backing", "default_backing_dir", "punch_hole"]
