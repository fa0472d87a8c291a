"""Streaming readers and writers for page-access traces.

A trace is a sequence of requests; each request names one object, and for this simulator
an object is one 4 KiB enclave page. Readers never hold the whole file: binary formats are
read with ``np.fromfile`` in chunks of ``chunk_requests`` records, ``.npy`` files are
memory-mapped and sliced, and CSV is parsed line by line. Every chunk is a :class:`Chunk`
of three equal-length arrays (object id, tenant, write flag), which is what the replay
engine consumes; formats without a tenant or an operation give zeros / ``False``.

Formats
=======

``oracleGeneral`` (libCacheSim, ``traceReader/customizedReader/oracle/oracleGeneralBin.h``)
    Packed little-endian 24-byte records, no header::

        uint32 clock_time; uint64 obj_id; uint32 obj_size; int64 next_access_vtime

    ``next_access_vtime`` is the 1-based position in the trace of the next request to the
    same object, or -1 when there is none. libCacheSim's converter
    (``bin/traceUtils/traceConvOracleGeneral.cpp``: "reference count starts with 1") and
    its Python binding's ``Util.convert_to_oracleGeneral`` both produce exactly that: in the
    trace ``5 7 5`` the first record carries 3. The reader treats -1 and INT64_MAX alike.

``lcs`` (libCacheSim, ``traceReader/customizedReader/lcs.h`` and ``lcs.c``)
    An 8192-byte header, then records of the header's version::

        uint64 start_magic = 0x123456789abcdef0
        uint64 version                         # 1..8, selects the record layout
        lcs_trace_stat stat                    # 1000 x 8 bytes, see _LCS_STAT below
        uint64 unused[21]
        uint64 end_magic   = 0x123456789abcdef0

    ====  =====  ==================================================================
    ver   bytes  record (packed, little-endian)
    ====  =====  ==================================================================
    1     24     same as oracleGeneral
    2     28     u32 clock_time; u64 obj_id; u32 obj_size; u32 op:8, tenant:24;
                 i64 next_access_vtime
    3     36     u32 clock_time; u64 obj_id; i64 obj_size; u32 op:8, tenant:24;
                 u32 ttl; i64 next_access_vtime
    4-8   40/44/52/68/100  the v3 record followed by 1/2/4/8/16 int32 features
    ====  =====  ==================================================================

    (lcs.h's opening comment still says "the header is 1024 bytes"; its struct and static
    assert say 1024 x 8 = 8192, and files from libCacheSim's converter have 8192.)

    Versions 2-8 carry an operation and a tenant; version 1 carries neither. The
    ``op:8, tenant:24`` bit-field is one little-endian uint32 with ``op`` in the low 8
    bits (GCC's layout on x86-64; confirmed on files written by libcachesim 0.3.5's
    ``Util.convert_to_lcs``). libCacheSim's lcs converter writes INT64_MAX, not -1, for
    "no next access", and so does :func:`write_lcs`; its reader accepts both.

    The reader checks both magics, that the version is 1-8, that ``stat.n_req`` and
    ``stat.n_obj`` are not negative (what libCacheSim's ``_verify_lcs_header`` checks), and,
    beyond libCacheSim, that the body is a whole number of records and that a non-zero
    ``stat.n_req`` equals that number, so a file cut at a record boundary is not read as a
    shorter trace.

    Operations that count as a write are libCacheSim's modifying ops (``enum.h``
    ``req_op_e``): SET, ADD, CAS, REPLACE, APPEND, PREPEND, INCR, DECR, WRITE, UPDATE.
    Everything else (NOP, GET, GETS, READ, DELETE, unknown values) is a read: a
    deleted page is not dirtied.

``csv``
    One request per line, fields separated by ``delimiter``. ``columns`` maps ``obj``
    (required), ``tenant``, ``op``, ``time`` and ``size`` to 1-based column numbers (as
    libCacheSim's ``obj-id-col=5``) or to header names. Without ``columns`` the header's
    own names are used when there is a header, else the object id is column 1.
    ``has_header=None`` detects a header: the first non-blank line is a header when its
    obj field is not a number. Object ids and tenants are decimal or ``0x`` hexadecimal.
    (libCacheSim reads ids with ``strtoull(s, NULL, 0)``, which would also take a
    leading ``0`` as octal; here ``010`` is ten, since zero-padded page numbers are
    decimal.) ``op`` is ``read``/``write``, ``r``/``w``, ``0``/``1``, or libCacheSim's
    ``get``/``set``, in any case. ``time`` must be a number and ``size`` a positive integer;
    neither reaches the chunk. Blank lines are skipped but counted in line numbers.

``npy``
    A 1-D integer array of object ids, or a 1-D structured array with an integer ``obj``
    field and optional integer ``tenant`` and bool-or-0/1 ``write`` fields (other fields
    are ignored). Loaded with ``mmap_mode="r"``.

Compressed traces
=================

Every format may come compressed with zstd (libCacheSim publishes ``.oracleGeneral.zst``)
or gzip. Compression is recognised by the file's magic bytes, not its name, and the
decompressed bytes are streamed chunk by chunk like a plain file's (a compressed trace is
never decompressed whole, in memory or on disk). Such a reader cannot know its length
without reading it: ``count()`` is ``None`` (an lcs header's ``n_req`` when set), and a
record cut short is found at the end of the stream. The writers compress by the output's
name: ``.zst`` or ``.gz``.

What a file seems to be
=======================

Before any record is read, :func:`open_trace` looks at the first (decompressed) bytes: a
numpy header, an lcs magic, text (no NUL byte: csv) or headerless binary records
(oracleGeneral). A file given as a format its bytes do not fit is refused with one line
saying what it seems to be, e.g. ``not an oracleGeneral trace: the file seems to be text
(a csv trace?)``; ``fmt=None`` takes the format the name and the bytes say
(:func:`detect_format`). xz, bzip2, lz4, zip and 7-zip data are named and refused.

Errors
======

Every problem with the input is a :class:`TraceError` whose text is one line ending in
``(path:record N)`` (binary formats and npy, 1-based) or ``(path:line N)`` (csv). A trace
with no requests is an error in every format, so writers refuse to write one.
Object sizes are unsigned in every format, but a 32-bit size is rejected when it decodes
negative as int32 ("negative size"), and a size of 0 is rejected ("size 0"): libCacheSim
silently skips size-0 requests by default, which would make its request count differ from
ours.
"""

from __future__ import annotations

import contextlib
import csv as _csv
import gzip
import io
import mmap
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from epcsim.jit import njit

__all__ = [
    "FORMATS",
    "Chunk",
    "TraceError",
    "TraceReader",
    "compressed_as",
    "compression",
    "detect_format",
    "format_by_name",
    "open_trace",
    "write_csv",
    "write_lcs",
    "write_npy",
    "write_oracle_general",
    "write_trace",
]

FORMATS = ("oracleGeneral", "lcs", "csv", "npy")

_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1
_I64_MAX = (1 << 63) - 1
_WRITE_BLOCK = 1 << 20  # records per write() call in the writers


# --------------------------------------------------------------------------- errors

class TraceError(ValueError):
    """Bad trace input; ``str()`` is one line naming the file and the record, e.g.
    ``'truncated record 41 (12 of 24 bytes) (trace.oracleGeneral:record 41)'``.

    ``record`` is the 1-based record index for binary formats and npy, and the 1-based
    line number for csv (then ``unit`` is ``"line"``); ``None`` when the problem is with
    the file as a whole.
    """

    def __init__(self, message: str, path: str | os.PathLike[str], record: int | None = None,
                 *, unit: str = "record") -> None:
        self.message = " ".join(str(message).split())
        self.path = os.fspath(path)
        self.record = record
        self.unit = unit
        # A newline in a file name must not break the one-line promise.
        shown = self.path.replace("\n", "\\n").replace("\r", "\\r")
        where = shown if record is None else f"{shown}:{unit} {record}"
        super().__init__(f"{self.message} ({where})")

    def __reduce__(self):  # keyword-only ``unit`` needs help to survive pickling
        return (_rebuild_trace_error, (self.message, self.path, self.record, self.unit))


def _rebuild_trace_error(message: str, path: str, record: int | None, unit: str) -> TraceError:
    return TraceError(message, path, record, unit=unit)


def _show(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- chunks

class Chunk(NamedTuple):
    """One slice of a trace: equal-length arrays, one element per request."""

    obj: np.ndarray      # uint64 object ids (an object id is one 4 KiB enclave page)
    tenant: np.ndarray   # uint32 tenant/enclave id per request (zeros when the format has none)
    write: np.ndarray    # bool per request (False when the format has no op)

    @property
    def max_obj(self) -> int:
        """-1, or when every request is tenant 0, the largest object id (capped at 2**62)
        if the reader found it while decoding: the footprint scan then skips a pass."""
        return -1


class _SingleTenantChunk(Chunk):
    """A :class:`Chunk` of tenant 0 whose largest id the decoder found (still the three
    fields when unpacked)."""

    def __new__(cls, obj: np.ndarray, tenant: np.ndarray, write: np.ndarray,
                max_obj: int = -1) -> _SingleTenantChunk:
        self = super().__new__(cls, obj, tenant, write)
        self._max_obj = max_obj
        return self

    @property
    def max_obj(self) -> int:
        return self._max_obj


def _zeros(n: int, dtype: type) -> np.ndarray:
    """``n`` zeros of ``dtype``, shared by every chunk of a format without that column.

    Chunks are read-only to their consumers; one array for all of them spares the replay the
    first touch of a new zero page per 4 KiB of requests (a tenth of reading a binary trace).
    """
    cached = _ZEROS.get(dtype)
    if cached is None or cached.shape[0] < n:
        cached = np.zeros(max(n, 1 << 16), dtype)
        _ZEROS[dtype] = cached
    return cached[:n]


_ZEROS: dict[type, np.ndarray] = {}


def _chunk(obj: np.ndarray, tenant: np.ndarray | None = None,
           write: np.ndarray | None = None) -> Chunk:
    n = len(obj)
    return Chunk(
        np.ascontiguousarray(obj, dtype=np.uint64),
        _zeros(n, np.uint32) if tenant is None else np.ascontiguousarray(tenant, np.uint32),
        _zeros(n, np.bool_) if write is None else np.ascontiguousarray(write, np.bool_),
    )


# --------------------------------------------------------------------------- layouts

_OG_RECORD = np.dtype([
    ("clock_time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"), ("next_access_vtime", "<i8"),
])
assert _OG_RECORD.itemsize == 24

_V2_RECORD = np.dtype([
    ("clock_time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"), ("op_tenant", "<u4"),
    ("next_access_vtime", "<i8"),
])
assert _V2_RECORD.itemsize == 28

_V3_FIELDS = [
    ("clock_time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<i8"), ("op_tenant", "<u4"),
    ("ttl", "<u4"), ("next_access_vtime", "<i8"),
]
_LCS_N_FEATURES = {4: 1, 5: 2, 6: 4, 7: 8, 8: 16}


def _lcs_record(version: int) -> np.dtype:
    if version == 1:
        return _OG_RECORD
    if version == 2:
        return _V2_RECORD
    if version == 3:
        return np.dtype(_V3_FIELDS)
    return np.dtype(_V3_FIELDS + [("features", "<i4", (_LCS_N_FEATURES[version],))])


_LCS_RECORD_SIZE = {v: _lcs_record(v).itemsize for v in range(1, 9)}
assert _LCS_RECORD_SIZE == {1: 24, 2: 28, 3: 36, 4: 40, 5: 44, 6: 52, 7: 68, 8: 100}

_LCS_MAGIC = 0x123456789ABCDEF0
_N_MOST_COMMON = 16
# lcs_trace_stat_t, field for field; packed, 1000 x 8 bytes.
_LCS_STAT = np.dtype([
    ("version", "<i8"), ("n_req", "<i8"), ("n_obj", "<i8"), ("n_req_byte", "<i8"),
    ("n_obj_byte", "<i8"), ("start_timestamp", "<i8"), ("end_timestamp", "<i8"),
    ("n_read", "<i8"), ("n_write", "<i8"), ("n_delete", "<i8"),
    ("smallest_obj_size", "<i8"), ("largest_obj_size", "<i8"),
    ("most_common_obj_sizes", "<i8", (_N_MOST_COMMON,)),
    ("most_common_obj_size_ratio", "<f4", (_N_MOST_COMMON,)),
    ("highest_freq", "<i8", (_N_MOST_COMMON,)),
    ("most_common_freq", "<i4", (_N_MOST_COMMON,)),
    ("most_common_freq_ratio", "<f4", (_N_MOST_COMMON,)),
    ("skewness", "<f8"),
    ("n_tenant", "<i4"),
    ("most_common_tenants", "<i4", (_N_MOST_COMMON,)),
    ("most_common_tenant_ratio", "<f4", (_N_MOST_COMMON,)),
    ("n_ttl", "<i4"), ("smallest_ttl", "<i4"), ("largest_ttl", "<i4"),
    ("most_common_ttls", "<i4", (_N_MOST_COMMON,)),
    ("most_common_ttl_ratio", "<f4", (_N_MOST_COMMON,)),
    ("unused", "<i8", (897,)),
])
assert _LCS_STAT.itemsize == 8000
_LCS_HEADER = np.dtype([
    ("start_magic", "<u8"), ("version", "<u8"), ("stat", _LCS_STAT),
    ("unused", "<u8", (21,)), ("end_magic", "<u8"),
])
assert _LCS_HEADER.itemsize == 8192
_LCS_STAT_VERSION = 1  # CURR_STAT_VERSION in lcs.h

# req_op_e values (libCacheSim enum.h)
OP_READ = 12
OP_WRITE = 13
_WRITE_OPS = np.array([3, 4, 5, 6, 7, 8, 10, 11, 13, 14], np.uint32)


# --------------------------------------------------------------------------- readers

class TraceReader:
    """An iterable of :class:`Chunk`; made by :func:`open_trace`. Iterating again
    re-reads the file from the start."""

    path: str
    fmt: str

    def __init__(self, path: str, fmt: str, chunk_requests: int) -> None:
        self.path = path
        self.fmt = fmt
        self.chunk_requests = chunk_requests

    def __iter__(self) -> Iterator[Chunk]:  # pragma: no cover - subclasses
        raise NotImplementedError

    def count(self) -> int | None:
        """Number of requests when known without reading the trace (binary formats and
        npy: from the file size or array shape); ``None`` for csv."""
        return None

    def most_requests(self) -> int | None:
        """At least as many requests as the trace holds, when that is known without
        reading it (the count, when known); ``None`` otherwise. A replay keeps a trace
        this bound says fits its memory, decided before reading it."""
        return self.count()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.fmt} {self.path!r}>"

    def _error(self, message: str, record: int | None = None) -> TraceError:
        return TraceError(message, self.path, record)


def _open_binary(path: str) -> BinaryIO:
    # The file was checked when the reader was made, but it may have gone since.
    try:
        return open(path, "rb")
    except OSError as e:
        raise TraceError(f"cannot open: {e.strerror}", path) from None


def _file_size(path: str) -> int:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TraceError("no such file", path) from None
    except OSError as e:
        raise TraceError(f"cannot open: {e.strerror}", path) from None
    if not os.path.isfile(path):
        raise TraceError("not a regular file", path)
    if st.st_size == 0:
        raise TraceError("empty file", path)
    return st.st_size


# --------------------------------------------------------------------------- compression

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"
# Containers epcsim does not read; named so that the refusal says what the file is.
_UNREAD = ((b"\xfd7zXZ\x00", "xz-compressed data"), (b"BZh", "bzip2-compressed data"),
           (b"\x04\x22\x4d\x18", "lz4-compressed data"), (b"PK\x03\x04", "a zip archive"),
           (b"7z\xbc\xaf\x27\x1c", "a 7-zip archive"))
_OTHER_MAGIC = ((b"\x89PNG", "a PNG image"), (b"%PDF", "a PDF document"),
                (b"\x7fELF", "an ELF executable"), (b"PAR1", "a Parquet file"),
                (b"SQLite format 3", "an SQLite database"))
_NPY_MAGIC = b"\x93NUMPY"
_HEAD = 8192  # bytes looked at to say what a file seems to be


def compression(path: str | os.PathLike[str]) -> str | None:
    """``"zstd"`` or ``"gzip"`` when the file starts with that magic, else ``None``;
    TraceError for compressed or archived data epcsim does not read (xz, bzip2, lz4, zip,
    7-zip), naming it."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise TraceError(f"cannot open: {e.strerror}", path) from None
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    for magic, what in _UNREAD:
        if head.startswith(magic):
            raise TraceError(f"the file seems to be {what}; epcsim reads traces plain or "
                             f"compressed with zstd (.zst) or gzip (.gz)", path)
    return None


class _Stream(io.RawIOBase):
    """The decompressed bytes of a file, whose errors are TraceErrors naming it.

    zstd is decoded frame by frame here rather than by zstandard's stream reader, which
    ends quietly at a frame cut short: a truncated download must not read as a shorter
    trace. pzstd and split files hold several frames, read one after the other.
    """

    def __init__(self, path: str, kind: str) -> None:
        self.path, self.kind = path, kind
        self._raw = open(path, "rb")
        self._buf = b""
        if kind == "zstd":
            import zstandard

            self._errors: tuple[type[BaseException], ...] = (zstandard.ZstdError,)
            self._parts: Iterator[bytes] = self._zstd(zstandard.ZstdDecompressor())
        else:
            import zlib

            self._errors = (gzip.BadGzipFile, EOFError, zlib.error)
            inner = gzip.GzipFile(fileobj=self._raw, mode="rb")
            self._parts = iter(lambda: inner.read(1 << 18), b"")

    def _zstd(self, dctx: Any) -> Iterator[bytes]:
        obj, fed, pending = dctx.decompressobj(), False, b""
        while True:
            data = pending or self._raw.read(1 << 18)
            pending = b""
            if not data:
                if fed and not obj.eof:
                    raise TraceError("the zstd data stops inside a frame (file cut short?)",
                                     self.path)
                return
            fed = True
            out = obj.decompress(data)
            if out:
                yield out
            if obj.eof:
                pending = obj.unused_data
                obj, fed = dctx.decompressobj(), False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._parts)
            except StopIteration:
                return 0
            except self._errors as e:
                raise TraceError(f"corrupt {self.kind} data: {e}", self.path) from None
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def _open_stream(path: str, kind: str | None = None) -> BinaryIO:
    """The file's bytes, decompressed when it is compressed (``kind`` as
    :func:`compression` says; looked up when not given)."""
    kind = compression(path) if kind is None else kind
    if kind is None:
        return _open_binary(path)
    try:
        return io.BufferedReader(_Stream(path, kind), 1 << 20)  # type: ignore[return-value]
    except OSError as e:
        raise TraceError(f"cannot open: {e.strerror}", path) from None


def _read_exact(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes, fewer only at the end of the stream."""
    parts, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def _head(path: str, kind: str | None) -> bytes:
    with _open_stream(path, kind) as f:
        return _read_exact(f, _HEAD)


def _seems(head: bytes, kind: str | None) -> tuple[str, str]:
    """(format the bytes fit or ``"other"``, what the file seems to be, in words)."""
    packed = {"zstd": "zstd-compressed ", "gzip": "gzip-compressed "}.get(kind or "", "")
    if not head:
        return "other", f"{packed}data that decompresses to nothing (cut short or corrupt?)"
    if head.startswith(_NPY_MAGIC):
        return "npy", f"a {packed}numpy .npy array"
    if len(head) >= 16 and int.from_bytes(head[:8], "little") == _LCS_MAGIC:
        v = int.from_bytes(head[8:16], "little")
        return "lcs", f"a {packed}libCacheSim lcs trace (version {v})"
    if head.startswith((_ZSTD_MAGIC, _GZIP_MAGIC)):
        return "other", f"{packed}data compressed twice"
    for magic, what in _OTHER_MAGIC + _UNREAD:
        if head.startswith(magic):
            return "other", f"{packed}{what}".replace(f"{packed}a ", f"a {packed}")
    if b"\x00" not in head:
        first = head.split(b"\n", 1)[0][:40].decode("utf-8", "replace")
        return "csv", f"{packed}text (a csv trace? its first line: {first!r})"
    return "oracleGeneral", f"{packed}binary records without a header"


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format a trace's name and first bytes say: the name's ``oracleGeneral``,
    ``.lcs``, ``.csv`` or ``.npy`` (under any ``.zst``/``.gz``) when the bytes agree, else
    what the bytes fit; TraceError when they fit none."""
    path = os.fspath(path)
    _file_size(path)
    kind = compression(path)
    fmt, what = _seems(_head(path, kind), kind)
    if fmt == "other":
        raise TraceError(f"not a trace: the file seems to be {what}", path)
    return fmt


def format_by_name(path: str | os.PathLike[str]) -> str | None:
    """The format a trace's file name says (under any .zst or .gz), or None."""
    path = os.fspath(path)
    name = os.path.basename(path).lower()
    for suffix in (".zst", ".zstd", ".gz"):
        name = name.removesuffix(suffix)
    if "oraclegeneral" in name:
        return "oracleGeneral"
    for fmt in ("lcs", "csv", "npy"):
        if name.endswith(f".{fmt}"):
            return fmt
    return None


def _fits(path: str, fmt: str, kind: str | None) -> None:
    """Refuse, in one line saying what the file seems to be, a file whose first bytes do
    not fit ``fmt``. Headerless binary data may be an oracleGeneral trace or the body of
    some other; an lcs file with a damaged magic is left to the lcs reader's own checks."""
    seems, what = _seems(_head(path, kind), kind)
    if seems == fmt or (fmt == "lcs" and seems == "oracleGeneral"):
        return
    hint = "" if seems == "other" else f"; read it as format {seems}"
    if fmt == "npy":
        raise TraceError(f"not a readable .npy file: the file seems to be {what}{hint}", path)
    article = "a" if fmt == "csv" else "an"
    raise TraceError(f"not {article} {fmt} trace: the file seems to be {what}{hint}", path)


# Requests in the first chunk of a binary trace (at most ``chunk_requests``).
FIRST_CHUNK = 1 << 16

# A footprint scan maps a binary trace up to this size in one call (MAP_POPULATE) when it
# reads it on one thread.
POPULATE_BYTES = 1 << 30
# A footprint scan gives each core the process may use a part of the records, at least
# this many bytes: the page faults of the mapping and the scan then run in parallel (120 MB
# on two cores: 10 ms, against 16 ms on one thread with or without MAP_POPULATE).
SCAN_PART_BYTES = 16 << 20


def _scan_workers(nbytes: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, nbytes // SCAN_PART_BYTES))


def _scan_parts(ids: np.ndarray, size: np.ndarray, workers: int) -> tuple[int, int]:
    """(largest id capped as ``_scan_ids`` caps it, or -1; the first record whose size is
    not positive, or -1) of the records, in ``workers`` parts on as many threads."""
    n = ids.shape[0]
    bounds = [n * k // workers for k in range(workers + 1)]
    tops = np.full(workers, -1, dtype=np.int64)
    bad = [-1] * workers
    errors: list[BaseException] = []

    def part(k: int) -> None:
        a, b = bounds[k], bounds[k + 1]
        try:
            bad[k] = _scan_ids(ids[a:b], size[a:b], tops[k:k + 1])
        except BaseException as e:  # raised below, on the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=part, args=(k,), name="epcsim-scan")
               for k in range(1, workers)]
    for t in threads:
        t.start()
    part(0)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    for k in range(workers):
        if bad[k] >= 0:
            return -1, bounds[k] + bad[k]
    return int(tops.max()), -1


class _BinaryReader(TraceReader):
    """Fixed-size records after an optional header."""

    def __init__(self, path: str, fmt: str, chunk_requests: int, record: np.dtype,
                 offset: int, n: int, version: int) -> None:
        super().__init__(path, fmt, chunk_requests)
        self._record = record
        self._offset = offset
        self._n = n
        self.version = version  # lcs version; 1 for oracleGeneral (same layout)

    def count(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[Chunk]:
        with _open_binary(self.path) as f:
            # Records are decoded straight from the page cache when the file can be mapped
            # (one copy fewer than reading it); otherwise read chunk by chunk.
            try:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                mm = None
            try:
                start = 0
                while start < self._n:
                    # A short first chunk: a consumer that starts on the first chunk (a
                    # one-pass replay, reading ahead on a thread) waits for less.
                    k = min(self.chunk_requests if start else
                            min(self.chunk_requests, FIRST_CHUNK), self._n - start)
                    if mm is not None:
                        end = self._offset + (start + k) * self._record.itemsize
                        if os.fstat(f.fileno()).st_size < end or len(mm) < end:
                            raise self._error("file shrank while being read", start + 1)
                        rec = np.frombuffer(mm, dtype=self._record, count=k,
                                            offset=self._offset + start * self._record.itemsize)
                    else:
                        f.seek(self._offset + start * self._record.itemsize)
                        rec = np.fromfile(f, dtype=self._record, count=k)
                        if len(rec) != k:
                            raise self._error("file shrank while being read",
                                              start + len(rec) + 1)
                    chunk = self._convert(rec, start)
                    del rec
                    if mm is not None:
                        _drop_pages(mm, self._offset + start * self._record.itemsize,
                                    self._offset + (start + k) * self._record.itemsize)
                    yield chunk
                    start += k
            finally:
                if mm is not None:
                    _unmap(mm)

    def scan_ids(self) -> tuple[int, int] | None:
        """(requests, largest object id) of a trace without tenants, read in place.

        A footprint scan needs no copy of the ids: one pass over the mapped records finds
        the largest and checks every size, and the replay decodes the chunks later, on the
        thread that reads ahead of it. None when the records carry tenants or the file
        cannot be mapped (the caller then reads chunks). Ids are capped at 2**62, as in
        the chunks' ``max_obj``; -1 for an empty trace.
        """
        if "op_tenant" in self._record.names:
            return None
        with _open_binary(self.path) as f:
            nbytes = os.fstat(f.fileno()).st_size
            workers = _scan_workers(nbytes)
            # On one thread the kernel maps a file of one window (below) in one call
            # instead of a page fault per 64 KiB; a larger one is mapped as it is read.
            populate = getattr(mmap, "MAP_POPULATE", 0)
            if nbytes > min(POPULATE_BYTES, SCAN_PART_BYTES) or workers > 1:
                populate = 0
            try:
                mm = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | populate,
                               prot=mmap.PROT_READ)
            except (OSError, ValueError, AttributeError):
                return None
            try:
                end = self._offset + self._n * self._record.itemsize
                if len(mm) < end:
                    raise self._error("file shrank while being read",
                                      (len(mm) - self._offset) // self._record.itemsize + 1)
                # In windows of a part per worker: what a window mapped is dropped before
                # the next, so the scan holds a few tens of megabytes of the file, not all.
                item = self._record.itemsize
                step = max(1, SCAN_PART_BYTES * workers // item)
                top = -1
                for first in range(0, self._n, step):
                    k = min(step, self._n - first)
                    rec = np.frombuffer(mm, dtype=self._record, count=k,
                                        offset=self._offset + first * item)
                    size = _sizes(rec)
                    part_top, bad = _scan_parts(rec["obj_id"], size, workers)
                    if bad >= 0:
                        raise self._size_error(size, bad, first)
                    top = max(top, part_top)
                    del rec, size
                    _drop_pages(mm, self._offset + first * item,
                                self._offset + (first + k) * item)
                return self._n, top
            finally:
                _unmap(mm)

    def _size_error(self, size: np.ndarray, i: int, start: int) -> TraceError:
        """The error of record ``start + i + 1``, whose size is not positive."""
        v = int(size[i])
        return self._error("size 0" if v == 0 else f"negative size {v}", start + i + 1)

    def _convert(self, rec: np.ndarray, start: int) -> Chunk:
        size = _sizes(rec)
        obj = np.empty(len(rec), dtype=np.uint64)
        top = np.zeros(1, dtype=np.int64)
        i = _copy_ids(rec["obj_id"], size, obj, top)
        if i >= 0:
            raise self._size_error(size, i, start)
        if "op_tenant" not in rec.dtype.names:
            n = len(obj)
            return _SingleTenantChunk(obj, _zeros(n, np.uint32), _zeros(n, np.bool_),
                                      int(top[0]) if n else -1)
        ot = rec["op_tenant"]
        return _chunk(obj, ot >> 8, np.isin(ot & 0xFF, _WRITE_OPS))


def _sizes(rec: np.ndarray) -> np.ndarray:
    """The records' sizes as signed numbers: a u32 size of 2**31 or more is negative."""
    size = rec["obj_size"]
    return size.view(np.int32) if size.dtype == np.uint32 else size


def _drop_pages(mm: mmap.mmap, start: int, end: int) -> None:
    """Take bytes ``[start, end)`` of a read-only file mapping out of the process's resident
    memory once they are decoded (the page cache keeps them): otherwise every page a scan or
    a replay read stays resident until the file is unmapped, and a trace file larger than
    the model's state set the replay's peak RSS (a 120 MB file, 57 bytes per simulated page
    of a 1 Mi-page EPC with an enclave as large)."""
    advise = getattr(mm, "madvise", None)
    dontneed = getattr(mmap, "MADV_DONTNEED", None)
    if advise is None or dontneed is None:
        return
    # From the page holding ``start``: its bytes before ``start`` were decoded before.
    page = mmap.PAGESIZE
    a = start // page * page
    b = min(end // page * page, len(mm))
    if b > a:
        advise(dontneed, a, b - a)


def _unmap(mm: mmap.mmap) -> None:
    try:
        mm.close()
    except BufferError:
        pass  # an error's traceback still holds a view; the GC unmaps it


@njit
def _copy_ids(ids: np.ndarray, size: np.ndarray, out: np.ndarray, top: np.ndarray) -> int:
    """Copy the object ids out of the records, and their largest (capped at 2**62) into
    ``top[0]``; returns the first record whose size is not positive, or -1."""
    cap = np.uint64(1 << 62)
    m = np.uint64(0)
    for i in range(out.shape[0]):
        if size[i] <= 0:
            return i
        o = ids[i]
        out[i] = o
        m = max(m, min(o, cap))
    top[0] = np.int64(m)
    return -1


@njit
def _scan_ids(ids: np.ndarray, size: np.ndarray, top: np.ndarray) -> int:
    """The largest id (capped at 2**62) into ``top[0]``, with no copy; returns the first
    record whose size is not positive, or -1."""
    cap = np.uint64(1 << 62)
    m = np.uint64(0)
    for i in range(ids.shape[0]):
        if size[i] <= 0:
            return i
        m = max(m, min(ids[i], cap))
    if ids.shape[0]:
        top[0] = np.int64(m)
    return -1


class _StreamBinaryReader(_BinaryReader):
    """Fixed-size records of a compressed file, decompressed as they are read.

    Its length is unknown until the end (``count()`` is None, or an lcs header's
    ``n_req``); a record cut short, or fewer records than the lcs header says, is an error
    raised there.
    """

    scan_ids = None  # type: ignore[assignment]  # nothing to map: the replay reads chunks

    def __init__(self, path: str, fmt: str, chunk_requests: int, record: np.dtype,
                 offset: int, n_req: int, version: int, kind: str) -> None:
        super().__init__(path, fmt, chunk_requests, record, offset, -1, version)
        self._n_req = n_req
        self._kind = kind

    def count(self) -> int | None:  # type: ignore[override]
        return self._n_req or None

    def __iter__(self) -> Iterator[Chunk]:
        item = self._record.itemsize
        with _open_stream(self.path, self._kind) as f:
            _read_exact(f, self._offset)
            start = 0
            while True:
                want = self.chunk_requests if start else min(self.chunk_requests, FIRST_CHUNK)
                raw = _read_exact(f, want * item)
                k, rest = divmod(len(raw), item)
                if k:
                    rec = np.frombuffer(raw, dtype=self._record, count=k)
                    yield self._convert(rec, start)
                    start += k
                if rest:
                    lcs = f", lcs v{self.version}" if self.fmt == "lcs" else ""
                    raise self._error(f"truncated record {start + 1} ({rest} of {item} "
                                      f"bytes{lcs})", start + 1)
                if len(raw) < want * item:
                    break
        if start == 0:
            raise self._error("no requests after the lcs header" if self.fmt == "lcs"
                              else "no requests in the decompressed file")
        if self._n_req and self._n_req != start:
            raise self._error(f"lcs header says {self._n_req} requests but the file holds "
                              f"{start}")


def _open_oracle_general(path: str, chunk_requests: int, kind: str | None = None) \
        -> TraceReader:
    if kind is not None:
        return _StreamBinaryReader(path, "oracleGeneral", chunk_requests, _OG_RECORD, 0, 0, 1,
                                   kind)
    size = _file_size(path)
    n, rest = divmod(size, _OG_RECORD.itemsize)
    if rest:
        raise TraceError(f"truncated record {n + 1} ({rest} of {_OG_RECORD.itemsize} bytes)",
                         path, n + 1)
    return _BinaryReader(path, "oracleGeneral", chunk_requests, _OG_RECORD, 0, n, 1)


def _open_lcs(path: str, chunk_requests: int, kind: str | None = None) -> TraceReader:
    size = _file_size(path)
    with _open_stream(path, kind) as f:
        raw = _read_exact(f, _LCS_HEADER.itemsize)
    if len(raw) >= 8:
        magic = int.from_bytes(raw[:8], "little")
        if magic != _LCS_MAGIC:
            _, what = _seems(raw, kind)
            raise TraceError(f"bad lcs magic {magic:#018x} (expected {_LCS_MAGIC:#x}): the "
                             f"file seems to be {what}", path)
    if len(raw) < _LCS_HEADER.itemsize:
        raise TraceError(f"truncated lcs header ({len(raw)} of {_LCS_HEADER.itemsize} bytes)",
                         path)
    header = np.frombuffer(raw, _LCS_HEADER)[0]
    if int(header["end_magic"]) != _LCS_MAGIC:
        raise TraceError(f"bad lcs end magic {int(header['end_magic']):#018x} "
                         f"(expected {_LCS_MAGIC:#x})", path)
    version = int(header["version"])
    if version not in _LCS_RECORD_SIZE:
        raise TraceError(f"unsupported lcs version {version} (known: 1-8)", path)
    stat = header["stat"]
    n_req, n_obj = int(stat["n_req"]), int(stat["n_obj"])
    if n_req < 0 or n_obj < 0:
        raise TraceError(f"bad lcs header: n_req {n_req}, n_obj {n_obj}", path)
    if kind is not None:
        return _StreamBinaryReader(path, "lcs", chunk_requests, _lcs_record(version),
                                   _LCS_HEADER.itemsize, n_req, version, kind)
    item = _LCS_RECORD_SIZE[version]
    n, rest = divmod(size - _LCS_HEADER.itemsize, item)
    if rest:
        raise TraceError(f"truncated record {n + 1} ({rest} of {item} bytes, lcs v{version})",
                         path, n + 1)
    if n == 0:
        raise TraceError("no requests after the lcs header", path)
    if n_req and n_req != n:
        raise TraceError(f"lcs header says {n_req} requests but the file holds {n}", path)
    return _BinaryReader(path, "lcs", chunk_requests, _lcs_record(version),
                         _LCS_HEADER.itemsize, n, version)


# --- npy

class _NpyReader(TraceReader):
    def __init__(self, path: str, chunk_requests: int, arr: np.ndarray) -> None:
        super().__init__(path, "npy", chunk_requests)
        self._arr = arr

    def count(self) -> int:
        return len(self._arr)

    def __iter__(self) -> Iterator[Chunk]:
        arr = self._arr
        # The file's mapping (np.memmap maps from the allocation granule below the data):
        # each chunk's pages are dropped once copied, as a binary trace's are.
        mm = getattr(arr, "_mmap", None)
        base = int(getattr(arr, "offset", 0)) % mmap.ALLOCATIONGRANULARITY
        item = arr.dtype.itemsize
        for start in range(0, len(arr), self.chunk_requests):
            end = min(start + self.chunk_requests, len(arr))
            chunk = self._decode(np.array(arr[start:end]), start)
            if mm is not None:
                _drop_pages(mm, base + start * item, base + end * item)
            yield chunk

    def _decode(self, part: np.ndarray, start: int) -> Chunk:
        names = part.dtype.names
        if names is None:
            return _chunk(self._ids(part, start, "id"))
        obj = self._ids(part["obj"], start, "id")
        tenant = write = None
        if "tenant" in names:
            tenant = self._ids(part["tenant"], start, "tenant", _U32_MAX)
        if "write" in names:
            write = part["write"]
            if write.dtype != np.bool_:
                bad = (write != 0) & (write != 1)
                if bad.any():
                    i = int(np.argmax(bad))
                    raise self._error(f"write flag {_show(write[i].item())} is not 0 or 1",
                                      start + i + 1)
                write = write != 0
        return _chunk(obj, tenant, write)

    def _ids(self, a: np.ndarray, start: int, what: str, top: int = _U64_MAX) -> np.ndarray:
        if a.dtype.kind == "i":
            neg = a < 0
            if neg.any():
                i = int(np.argmax(neg))
                raise self._error(f"negative {what} {int(a[i])}", start + i + 1)
        if top < _U64_MAX and a.dtype.itemsize > 4:
            over = a > top
            if over.any():
                i = int(np.argmax(over))
                raise self._error(f"{what} {int(a[i])} does not fit in 32 bits", start + i + 1)
        return a


class _StreamNpyReader(_NpyReader):
    """A compressed .npy file, its array decompressed chunk by chunk."""

    def __init__(self, path: str, chunk_requests: int, n: int, dtype: np.dtype,
                 kind: str) -> None:
        super().__init__(path, chunk_requests, np.zeros(0, dtype))
        self._len, self._dtype, self._kind = n, dtype, kind

    def count(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Chunk]:
        item = self._dtype.itemsize
        with _open_stream(self.path, self._kind) as f:
            _npy_header(f, self.path)
            start = 0
            while start < self._len:
                k = min(self.chunk_requests, self._len - start)
                raw = _read_exact(f, k * item)
                if len(raw) < k * item:
                    raise self._error(f"the array stops at record {start + len(raw) // item + 1}"
                                      f" of {self._len}", start + len(raw) // item + 1)
                yield self._decode(np.frombuffer(raw, self._dtype, count=k), start)
                start += k


def _npy_header(f: BinaryIO, path: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            return fmt.read_array_header_1_0(f)  # type: ignore[no-any-return]
        return fmt.read_array_header_2_0(f)  # type: ignore[no-any-return]
    except (ValueError, OSError, EOFError) as e:
        raise TraceError(f"not a readable .npy file: {e}", path) from None


def _open_npy(path: str, chunk_requests: int, kind: str | None = None) -> TraceReader:
    _file_size(path)
    if kind is not None:
        with _open_stream(path, kind) as f:
            shape, _, dt = _npy_header(f, path)
        if dt.hasobject:
            raise TraceError("not a readable .npy file: it holds Python objects", path)
        _check_npy(path, shape, dt)
        return _StreamNpyReader(path, chunk_requests, shape[0], dt, kind)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise TraceError(f"not a readable .npy file: {e}", path) from None
    if not isinstance(arr, np.ndarray):  # an .npz archive loads as a mapping
        raise TraceError("not a .npy file (an .npz archive?)", path)
    _check_npy(path, arr.shape, arr.dtype)
    return _NpyReader(path, chunk_requests, arr)


def _check_npy(path: str, shape: tuple[int, ...], dt: np.dtype) -> None:
    if len(shape) != 1:
        raise TraceError(f"npy array is {len(shape)}-D with shape {shape}; need 1-D", path)
    if dt.names is None:
        if dt.kind not in "iu":
            raise TraceError(f"npy array has dtype {dt}; need integer object ids", path)
    else:
        if "obj" not in dt.names:
            raise TraceError(f"npy structured array has no 'obj' field (fields: "
                             f"{', '.join(dt.names)})", path)
        for name, kinds in (("obj", "iu"), ("tenant", "iu"), ("write", "biu")):
            if name in dt.names and dt.fields[name][0].kind not in kinds:
                raise TraceError(f"npy field {name!r} has dtype {dt.fields[name][0]}; "
                                 f"need {'bool or ' if 'b' in kinds else ''}integer", path)
            if name in dt.names and dt.fields[name][0].shape:
                raise TraceError(f"npy field {name!r} is not a scalar field", path)
    if shape[0] == 0:
        raise TraceError("npy array has no requests", path)


# --- csv

_COLUMN_KEYS = ("obj", "tenant", "op", "time", "size")
_OPS = {"read": False, "r": False, "0": False, "get": False,
        "write": True, "w": True, "1": True, "set": True}
_HEX = frozenset("0123456789abcdefABCDEF")


def _parse_uint(text: str) -> int | None:
    """Decimal or 0x-hex non-negative integer, or None when it is not one."""
    s = text.strip()
    if s[:2] in ("0x", "0X"):
        digits = s[2:]
        if digits and all(c in _HEX for c in digits):
            return int(digits, 16)
        return None
    if s.isascii() and s.isdigit():
        return int(s)
    return None


def _is_negative_number(text: str) -> bool:
    s = text.strip()
    return s.startswith("-") and _parse_uint(s[1:]) is not None


class _CsvReader(TraceReader):
    def __init__(self, path: str, chunk_requests: int, delimiter: str,
                 cols: dict[str, int], skip_lines: int, kind: str | None = None) -> None:
        super().__init__(path, "csv", chunk_requests)
        self._kind = kind
        self._delim = delimiter
        self._cols = cols  # 0-based field index per key
        self._skip = skip_lines  # lines before the first data line (blank lines + header)

    def _err(self, message: str, line: int) -> TraceError:
        return TraceError(message, self.path, line, unit="line")

    def most_requests(self) -> int | None:
        """A record takes two bytes at least (a digit and the line's end), so an
        uncompressed file holds at most half its size in requests."""
        if self._kind is not None:
            return None
        try:
            return os.path.getsize(self.path) // 2
        except OSError:
            return None

    def __iter__(self) -> Iterator[Chunk]:
        cols = self._cols
        c_obj = cols["obj"]
        c_tenant = cols.get("tenant")
        c_op = cols.get("op")
        c_time = cols.get("time")
        c_size = cols.get("size")
        need = max(cols.values()) + 1
        delim = self._delim
        limit = self.chunk_requests
        obj: list[int] = []
        tenant: list[int] = []
        write: list[bool] = []
        seen = 0
        with _open_stream(self.path, self._kind) as f:
            for lineno, raw in enumerate(f, start=1):
                if lineno <= self._skip:
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise self._err(f"invalid UTF-8 at byte {e.start + 1} of the line",
                                    lineno) from None
                if lineno == 1:
                    text = text.lstrip("\ufeff")
                text = text.rstrip("\r\n")
                if not text.strip():
                    continue
                if '"' in text:
                    fields = next(_csv.reader([text], delimiter=delim))
                else:
                    fields = text.split(delim)
                if len(fields) < need:
                    missing = [k for k, c in cols.items() if c >= len(fields)]
                    raise self._err(
                        f"column {cols[missing[0]] + 1} ({missing[0]}) is beyond the row's "
                        f"{len(fields)} field{'s' if len(fields) != 1 else ''}", lineno)
                field = fields[c_obj]
                v = _parse_uint(field)
                if v is None:
                    if _is_negative_number(field):
                        raise self._err(f"negative id {_show(field.strip())}", lineno)
                    raise self._err(f"non-numeric id {_show(field)}", lineno)
                if v > _U64_MAX:
                    raise self._err(f"id {_show(field.strip())} does not fit in 64 bits", lineno)
                obj.append(v)
                if c_tenant is not None:
                    field = fields[c_tenant]
                    t = _parse_uint(field)
                    if t is None or t > _U32_MAX:
                        raise self._err(f"bad tenant {_show(field)} (need 0..2^32-1)", lineno)
                    tenant.append(t)
                if c_op is not None:
                    field = fields[c_op]
                    w = _OPS.get(field.strip().lower())
                    if w is None:
                        raise self._err(f"unknown op {_show(field)} (read/write, r/w or 0/1)",
                                        lineno)
                    write.append(w)
                if c_time is not None:
                    field = fields[c_time]
                    try:
                        float(field)
                    except ValueError:
                        raise self._err(f"non-numeric time {_show(field)}", lineno) from None
                if c_size is not None:
                    field = fields[c_size]
                    s = _parse_uint(field)
                    if s is None:
                        if _is_negative_number(field):
                            raise self._err(f"negative size {field.strip()}", lineno)
                        raise self._err(f"non-numeric size {_show(field)}", lineno)
                    if s == 0:
                        raise self._err("size 0", lineno)
                if len(obj) >= limit:
                    seen += len(obj)
                    yield self._make(obj, tenant, write)
                    obj, tenant, write = [], [], []
        if obj:
            seen += len(obj)
            yield self._make(obj, tenant, write)
        if seen == 0:
            raise self._error("no requests in the csv file")

    def _make(self, obj: list[int], tenant: list[int], write: list[bool]) -> Chunk:
        return _chunk(np.array(obj, dtype=np.uint64),
                      np.array(tenant, dtype=np.uint32) if tenant else None,
                      np.array(write, dtype=np.bool_) if write else None)


def _split_header(text: str, delimiter: str) -> list[str]:
    return [f.strip() for f in next(_csv.reader([text], delimiter=delimiter))]


def _open_csv(path: str, chunk_requests: int, columns: dict[str, int | str] | None,
              delimiter: str, has_header: bool | None, kind: str | None = None) -> TraceReader:
    _file_size(path)
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\r\n\"":
        raise TraceError(f"delimiter must be one character other than a quote or newline, "
                         f"got {_show(delimiter)}", path)
    if columns is not None:
        unknown = [k for k in columns if k not in _COLUMN_KEYS]
        if unknown:
            raise TraceError(f"unknown column key {_show(unknown[0])} "
                             f"(known: {', '.join(_COLUMN_KEYS)})", path)
        if "obj" not in columns:
            raise TraceError("missing obj column in columns", path)
        for k, c in columns.items():
            if isinstance(c, bool) or not isinstance(c, (int, str)):
                raise TraceError(f"column for {k} must be a 1-based number or a header name, "
                                 f"got {_show(c)}", path)
            if isinstance(c, int) and c < 1:
                raise TraceError(f"column numbers are 1-based; {k} has {c}", path)

    # The first non-blank line decides about the header.
    first_no, first = 0, None
    with _open_stream(path, kind) as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TraceError(f"invalid UTF-8 at byte {e.start + 1} of the line", path,
                                 lineno, unit="line") from None
            if lineno == 1:
                text = text.lstrip("\ufeff")
            text = text.rstrip("\r\n")
            if text.strip():
                first_no, first = lineno, text
                break
    if first is None:
        raise TraceError("no requests in the csv file", path)

    named = columns is not None and any(isinstance(c, str) for c in columns.values())
    if has_header is None:
        if named:
            has_header = True
        else:
            obj_col = 0 if columns is None else int(columns["obj"]) - 1
            fields = _split_header(first, delimiter)
            if obj_col >= len(fields):
                raise TraceError(f"column {obj_col + 1} (obj) is beyond the row's "
                                 f"{len(fields)} fields", path, first_no, unit="line")
            has_header = _parse_uint(fields[obj_col]) is None and not _is_negative_number(
                fields[obj_col])
    elif named and not has_header:
        raise TraceError("columns given by name need a header row (has_header=False)", path)

    cols: dict[str, int] = {}
    if has_header:
        names = _split_header(first, delimiter)
        index = {n: i for i, n in enumerate(names)}
        if columns is None:
            lowered = {n.lower(): i for i, n in reversed(list(enumerate(names)))}
            cols = {k: lowered[k] for k in _COLUMN_KEYS if k in lowered}
            if "obj" not in cols:
                raise TraceError(f"missing obj column: the header has no 'obj' column "
                                 f"({_show(first, 60)}); pass columns=", path, first_no,
                                 unit="line")
        else:
            for k, c in columns.items():
                if isinstance(c, str):
                    if c not in index:
                        raise TraceError(f"unknown column name {_show(c)} (header: "
                                         f"{_show(', '.join(names), 60)})", path, first_no,
                                         unit="line")
                    cols[k] = index[c]
                else:
                    cols[k] = c - 1
        skip = first_no
    else:
        cols = {"obj": 0} if columns is None else {k: int(c) - 1 for k, c in columns.items()}
        skip = first_no - 1
    return _CsvReader(path, chunk_requests, delimiter, cols, skip, kind)


# --- entry point

def open_trace(path: str | os.PathLike[str], fmt: str | None = None, *,
               columns: dict[str, int | str] | None = None, delimiter: str = ",",
               has_header: bool | None = None, chunk_requests: int = 1 << 20) -> TraceReader:
    """Open a trace for streaming in chunks of at most ``chunk_requests`` requests.

    ``fmt`` None takes the format the file's name and first bytes say
    (:func:`detect_format`). zstd and gzip files are decompressed as they are read.

    Problems with the file's framing (missing, empty, of another format, truncated, bad lcs
    header, wrong npy dtype, csv header/column mapping) are raised here; problems inside
    records (bad sizes, ids, ops), and in a compressed file a record cut short, are raised
    while iterating, naming the record or line.
    """
    path = os.fspath(path)
    if fmt is not None and fmt not in FORMATS:
        raise TraceError(f"unknown format {_show(fmt)} (known: {', '.join(FORMATS)})", path)
    if isinstance(chunk_requests, bool) or not isinstance(chunk_requests, (int, np.integer)) \
            or chunk_requests < 1:
        raise ValueError(f"chunk_requests must be a positive integer, got {chunk_requests!r}")
    chunk_requests = int(chunk_requests)
    _file_size(path)
    kind = compression(path)
    if fmt is None:
        named = format_by_name(path)
        seems, what = _seems(_head(path, kind), kind)
        if seems == "other":
            raise TraceError(f"not a trace: the file seems to be {what}", path)
        fmt = named if named is not None and (named == seems or (
            named == "lcs" and seems == "oracleGeneral")) else seems
    else:
        _fits(path, fmt, kind)
    if fmt != "csv" and (columns is not None or has_header is not None or delimiter != ","):
        raise TraceError(f"columns, delimiter and has_header apply to csv, not {fmt}", path)
    if fmt == "oracleGeneral":
        return _open_oracle_general(path, chunk_requests, kind)
    if fmt == "lcs":
        return _open_lcs(path, chunk_requests, kind)
    if fmt == "npy":
        return _open_npy(path, chunk_requests, kind)
    return _open_csv(path, chunk_requests, columns, delimiter, has_header, kind)


def read_ahead(chunks: Iterable[Chunk], depth: int = 1,
               prepare: Callable[[Chunk], Any] | None = None) -> Iterator[Any]:
    """The same chunks, decoded by a second thread up to ``depth`` chunks ahead.

    The decoders and the replay engine are compiled without the GIL, so on a second core
    the next chunk is read while the current one replays. ``prepare``, when given, also
    runs on that thread, and what it returns for a chunk is yielded instead of the chunk
    (a replay maps ids and computes its engine's columns there). An error of the reader or
    of ``prepare`` is raised here, where that chunk would have been; stopping early stops
    the thread.
    """
    q: queue.Queue[tuple[int, object]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: tuple[int, object]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        it = iter(chunks)
        try:
            for ch in it:
                if not put((0, ch if prepare is None else prepare(ch))):
                    break
            else:
                put((1, None))
        except BaseException as e:  # the consumer re-raises it
            put((2, e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    th = threading.Thread(target=run, name="epcsim-read-ahead", daemon=True)
    th.start()
    try:
        while True:
            kind, item = q.get()
            if kind == 0:
                yield item  # type: ignore[misc]
            elif kind == 1:
                return
            else:
                raise item  # type: ignore[misc]
    finally:
        stop.set()
        th.join()


# --------------------------------------------------------------------------- writers

def _ids(obj: object) -> np.ndarray:
    a = np.asarray(obj)
    if a.ndim != 1:
        raise ValueError(f"obj must be a 1-D array, got shape {a.shape}")
    if len(a) == 0:
        raise ValueError("obj is empty; a trace with no requests cannot be read back")
    if a.dtype.kind not in "iu":
        raise ValueError(f"obj must be integers, got dtype {a.dtype}")
    if a.dtype.kind == "i" and (a < 0).any():
        raise ValueError("obj has negative ids")
    return a.astype(np.uint64, copy=False)


def _per_request(value: object, n: int, name: str, lo: int, hi: int,
                 default: int | None = None) -> np.ndarray:
    """A scalar or length-n integer array in [lo, hi], as int64/uint64 of length n."""
    if value is None:
        value = default
    a = np.asarray(value)
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, got dtype {a.dtype}")
    if a.ndim == 0:
        a = np.full(n, a, dtype=a.dtype)
    if a.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {a.shape}")
    if n and (int(a.min()) < lo or int(a.max()) > hi):
        raise ValueError(f"{name} values must lie in [{lo}, {hi}]")
    return a


def _next_access(obj: np.ndarray, none: int) -> np.ndarray:
    """1-based position of the next request to the same object, ``none`` if there is none."""
    order = np.argsort(obj, kind="stable")  # equal ids stay in trace order
    same = obj[order[1:]] == obj[order[:-1]]
    nxt = np.full(len(obj), none, dtype=np.int64)
    nxt[order[:-1][same]] = order[1:][same] + 1
    return nxt


def compressed_as(path: str | os.PathLike[str]) -> str | None:
    """The compression a writer gives ``path`` by its name: ``.zst``/``.zstd`` zstd,
    ``.gz`` gzip, else none."""
    name = os.fspath(path).lower()
    if name.endswith((".zst", ".zstd")):
        return "zstd"
    return "gzip" if name.endswith(".gz") else None


@contextlib.contextmanager
def _sink(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write, compressed as its name says (:func:`compressed_as`)."""
    kind = compressed_as(path)
    with open(path, "wb") as raw:
        if kind is None:
            yield raw
        elif kind == "gzip":
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
                yield f  # type: ignore[misc]
        else:
            import zstandard

            with zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as f:
                yield f  # type: ignore[misc]


def _write_records(path: str | os.PathLike[str], dtype: np.dtype, fields: dict[str, np.ndarray],
                   n: int, header: bytes = b"") -> None:
    with _sink(path) as f:
        f.write(header)
        for start in range(0, n, _WRITE_BLOCK):
            stop = min(n, start + _WRITE_BLOCK)
            rec = np.zeros(stop - start, dtype=dtype)
            for name, values in fields.items():
                rec[name] = values[start:stop]
            f.write(rec.view(np.uint8).data)


def write_oracle_general(path: str | os.PathLike[str], obj: np.ndarray, *, time=None,
                         size: int = 4096, tenant=None) -> None:
    """Write libCacheSim oracleGeneral records.

    ``time`` (clock_time, uint32) defaults to 0 for every request; ``size`` is a scalar or
    per-request array in [1, 2^31-1]. oracleGeneral has no tenant field, so a non-zero
    ``tenant`` is refused rather than dropped: use :func:`write_lcs` with version >= 2.
    """
    ids = _ids(obj)
    n = len(ids)
    if tenant is not None and np.any(np.asarray(tenant) != 0):
        raise ValueError("oracleGeneral has no tenant field; use write_lcs(version>=2)")
    fields = {
        "clock_time": _per_request(time, n, "time", 0, _U32_MAX, 0),
        "obj_id": ids,
        "obj_size": _per_request(size, n, "size", 1, (1 << 31) - 1),
        "next_access_vtime": _next_access(ids, -1),
    }
    _write_records(path, _OG_RECORD, fields, n)


def _lcs_stat(ids: np.ndarray, size: np.ndarray, time: np.ndarray, tenant: np.ndarray,
              write: np.ndarray) -> np.ndarray:
    """The header's statistics, computed the way libCacheSim's lcs converter does."""
    n = len(ids)
    stat = np.zeros((), dtype=_LCS_STAT)
    stat["version"] = _LCS_STAT_VERSION
    stat["n_req"] = n
    # libCacheSim scans backwards, so an object's size is the one at its last request.
    uniq, last_rev, freq = np.unique(ids[::-1], return_index=True, return_counts=True)
    obj_size = size[n - 1 - last_rev].astype(np.int64)
    n_obj = len(uniq)
    stat["n_obj"] = n_obj
    stat["n_req_byte"] = int(size.sum(dtype=np.int64))
    stat["n_obj_byte"] = int(obj_size.sum())
    stat["start_timestamp"] = int(time[0])
    stat["end_timestamp"] = int(time[-1])
    n_write = int(write.sum())
    stat["n_read"] = n - n_write
    stat["n_write"] = n_write
    stat["smallest_obj_size"] = int(obj_size.min())
    stat["largest_obj_size"] = int(obj_size.max())

    def top(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v, c = np.unique(values, return_counts=True)
        order = np.argsort(-c, kind="stable")[:_N_MOST_COMMON]
        return v[order], c[order]

    k = _N_MOST_COMMON
    v, c = top(obj_size)
    stat["most_common_obj_sizes"][: len(v)] = v
    stat["most_common_obj_size_ratio"][: len(v)] = c / n_obj
    distinct_freq = np.unique(freq)[::-1][:k]
    stat["highest_freq"][: len(distinct_freq)] = distinct_freq
    v, c = top(freq)
    stat["most_common_freq"][: len(v)] = v
    stat["most_common_freq_ratio"][: len(v)] = c / n_obj
    if n_obj > 1:
        # Zipf alpha: slope of log(frequency) against log(rank), as the converter fits it.
        f_sorted = np.sort(freq)[::-1].astype(np.float64)
        slope = np.polyfit(np.log(np.arange(1, n_obj + 1)), np.log(f_sorted), 1)[0]
        stat["skewness"] = -slope
    v, c = top(tenant)
    stat["n_tenant"] = len(np.unique(tenant))
    stat["most_common_tenants"][: len(v)] = v
    stat["most_common_tenant_ratio"][: len(v)] = c / n
    # No ttl is written, so every request has ttl 0: one distinct value.
    stat["n_ttl"] = 1
    stat["most_common_ttl_ratio"][0] = 1.0
    return stat


def write_lcs(path: str | os.PathLike[str], obj: np.ndarray, *, version: int = 2, tenant=None,
              size=4096, time=None, write=None) -> None:
    """Write an lcs trace of ``version`` (1-8) that libCacheSim's lcs reader accepts.

    ``tenant`` (< 2^24) and ``write`` need version >= 2; write flags become OP_WRITE,
    other requests OP_READ. ``size`` must be in [1, 2^31-1] for versions 1-2 (uint32 on
    disk, read back as int32) and [1, 2^63-1] from version 3. ttl and features are 0.

    The header statistics are computed as libCacheSim's lcs converter computes them
    (``stat.version`` 1, request/object/byte counts, timestamps, read/write counts, size,
    frequency, tenant and ttl summaries, Zipf skewness); only the order of ties in the
    "most common" lists may differ from the converter's.
    """
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) \
            or int(version) not in _LCS_RECORD_SIZE:
        raise ValueError(f"lcs version must be 1-8, got {version!r}")
    version = int(version)
    ids = _ids(obj)
    n = len(ids)
    if version == 1:
        if tenant is not None and np.any(np.asarray(tenant) != 0):
            raise ValueError("lcs version 1 has no tenant field; use version >= 2")
        if write is not None and np.any(np.asarray(write)):
            raise ValueError("lcs version 1 has no op field; use version >= 2")
    size_max = (1 << 31) - 1 if version <= 2 else _I64_MAX
    sizes = _per_request(size, n, "size", 1, size_max)
    times = _per_request(time, n, "time", 0, _U32_MAX, 0)
    tenants = _per_request(tenant, n, "tenant", 0, (1 << 24) - 1, 0)
    writes = _per_request(write, n, "write", 0, 1, 0).astype(np.bool_)
    fields = {
        "clock_time": times,
        "obj_id": ids,
        "obj_size": sizes,
        "next_access_vtime": _next_access(ids, _I64_MAX),
    }
    if version >= 2:
        op = np.where(writes, OP_WRITE, OP_READ).astype(np.uint32)
        fields["op_tenant"] = op | (tenants.astype(np.uint32) << 8)
    header = np.zeros((), dtype=_LCS_HEADER)
    header["start_magic"] = _LCS_MAGIC
    header["end_magic"] = _LCS_MAGIC
    header["version"] = version
    header["stat"] = _lcs_stat(ids, sizes, times, tenants, writes)
    _write_records(path, _lcs_record(version), fields, n, header.tobytes())


def write_csv(path: str | os.PathLike[str], obj: np.ndarray, *, tenant=None, header: bool = True,
              write=None) -> None:
    """Write a csv trace with columns ``obj[,tenant][,op]`` (op is ``read``/``write``),
    readable by :func:`open_trace` with no ``columns`` argument."""
    ids = _ids(obj)
    n = len(ids)
    cols = [ids]
    names = ["obj"]
    if tenant is not None:
        cols.append(_per_request(tenant, n, "tenant", 0, _U32_MAX))
        names.append("tenant")
    if write is not None:
        w = _per_request(write, n, "write", 0, 1).astype(np.bool_)
        cols.append(np.where(w, "write", "read"))
        names.append("op")
    with _sink(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as f:
        if header:
            f.write(",".join(names) + "\n")
        for start in range(0, n, _WRITE_BLOCK):
            stop = min(n, start + _WRITE_BLOCK)
            rows = zip(*(c[start:stop].tolist() for c in cols))
            f.write("".join(",".join(map(str, row)) + "\n" for row in rows))


def write_npy(path: str | os.PathLike[str], obj: np.ndarray, *, tenant=None,
              write=None) -> None:
    """Write an npy trace: a uint64 array of ids, or with ``tenant`` or ``write`` a
    structured array with ``obj``, ``tenant`` (uint32) and ``write`` (bool) fields."""
    ids = _ids(obj)
    n = len(ids)
    if tenant is None and write is None:
        arr = ids
    else:
        arr = np.zeros(n, [("obj", "<u8"), ("tenant", "<u4"), ("write", "?")])
        arr["obj"] = ids
        arr["tenant"] = _per_request(tenant, n, "tenant", 0, _U32_MAX, 0)
        arr["write"] = _per_request(write, n, "write", 0, 1, 0).astype(np.bool_)
    with _sink(path) as f:
        np.lib.format.write_array(f, arr, allow_pickle=False)


def write_trace(path: str | os.PathLike[str], fmt: str, obj: np.ndarray, *, tenant=None,
                write=None) -> None:
    """Write ``obj`` (with ``tenant`` and ``write`` where the format has them) as ``fmt``,
    compressed as the name says. A format without a field the trace uses is refused
    (ValueError) rather than losing it: oracleGeneral has neither tenant nor op; lcs is
    written as version 2, which has both."""
    has_tenant = tenant is not None and bool(np.any(np.asarray(tenant) != 0))
    has_write = write is not None and bool(np.any(np.asarray(write)))
    if fmt == "oracleGeneral":
        if has_tenant or has_write:
            lost = " and ".join(x for x, h in (("tenants", has_tenant), ("writes", has_write))
                                if h)
            raise ValueError(f"oracleGeneral has no field for the trace's {lost}; "
                             f"write lcs, csv or npy")
        write_oracle_general(path, obj)
    elif fmt == "lcs":
        write_lcs(path, obj, version=2, tenant=tenant, write=write)
    elif fmt == "csv":
        write_csv(path, obj, tenant=tenant if has_tenant else None,
                  write=write if has_write else None)
    elif fmt == "npy":
        write_npy(path, obj, tenant=tenant if has_tenant else None,
                  write=write if has_write else None)
    else:
        raise ValueError(f"unknown format {_show(fmt)} (known: {', '.join(FORMATS)})")
