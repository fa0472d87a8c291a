"""Files a command reads and the results directories it writes.

Every file a user names (a scenario, a sweep, its base, a trace, a results directory's
``summary.json``) is checked before it is opened: a regular file, readable, within a size,
UTF-8 when it is text. Opening a FIFO for reading blocks until a writer comes, and a device
may never end, so neither is opened at all.

A results directory appears whole or not at all: a command writes into a fresh directory
beside ``--out`` (``.NAME.XXXX.tmp``), writes ``results.json`` last (which files make the
result complete), and renames it into place. A run stopped at any instant leaves the
previous result as it was and no partial one; ``epcsim report`` refuses a directory without
``results.json`` or missing a file it lists.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# A scenario or sweep file is a page of text; a results summary has a row per enclave.
MAX_TEXT = 1 << 20
MAX_SUMMARY = 64 << 20
# Tables and lists nested deeper than this are no scenario (and no summary) epcsim writes.
MAX_DEPTH = 32

INDEX = "results.json"
INDEX_FORMAT = 1


class InputError(ValueError):
    """A file that cannot be read as asked; one line naming it."""


def _why(e: OSError) -> str:
    if e.errno == errno.ENAMETOOLONG:
        return "file name too long"
    if e.errno == errno.ENOENT:
        return "no such file"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if e.errno == errno.ENOTDIR:
        return "a part of the path is not a directory"
    if e.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    return e.strerror or type(e).__name__


def check_file(path: str | os.PathLike[str], what: str, max_bytes: int | None = None) -> int:
    """The size of ``path`` if it is a regular file a command may read, else InputError."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise InputError(f"no such {what} ({p})") from None
        raise InputError(f"cannot read the {what}: {_why(e)} ({p})") from None
    except ValueError:  # an embedded NUL
        raise InputError(f"cannot read the {what}: not a file name ({p!r})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"the {what} is a directory, not a file ({p})")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"the {what} is not a regular file (a FIFO, socket or device) ({p})")
    if not os.access(p, os.R_OK):
        raise InputError(f"cannot read the {what}: permission denied ({p})")
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputError(f"the {what} is larger than {max_bytes >> 10} KiB ({p})")
    return st.st_size


def read_text(path: str | os.PathLike[str], what: str, max_bytes: int = MAX_TEXT) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes``."""
    p = os.fspath(path)
    check_file(p, what, max_bytes)
    try:
        # O_NONBLOCK: were the file swapped for a FIFO since the check, open would not wait.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise InputError(f"the {what} is not a regular file ({p})")
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise InputError(f"cannot read the {what}: {_why(e)} ({p})") from None
    if len(raw) > max_bytes:
        raise InputError(f"the {what} is larger than {max_bytes >> 10} KiB ({p})")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"the {what} is not UTF-8 text at byte {e.start} ({p})") from None


def parse(text: str, p: str | os.PathLike[str], what: str, as_json: bool) -> Any:
    """TOML or JSON text as data, refusing documents nested deeper than MAX_DEPTH."""
    try:
        data = json.loads(text) if as_json else tomllib.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON: {e} ({os.fspath(p)})") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"not valid TOML: {e} ({os.fspath(p)})") from None
    except RecursionError:
        raise InputError(f"the {what} is nested too deep ({os.fspath(p)})") from None
    if depth(data) > MAX_DEPTH:
        raise InputError(f"the {what} is nested more than {MAX_DEPTH} deep ({os.fspath(p)})")
    return data


def depth(data: Any) -> int:
    """How deep tables and lists nest in ``data`` (a scalar is 0), without recursion."""
    best = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            best = max(best, d + 1)
            if best > MAX_DEPTH:
                return best
            stack.extend((x, d + 1) for x in node)
    return best


def check_parent(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path whose parent is an existing directory (nothing is created above
    a directory the user names)."""
    p = Path(os.fspath(path))
    if not os.fspath(path).strip():
        raise InputError(f"{what}: an empty path")
    if len(os.fsencode(p.name)) > 255:
        raise InputError(f"{what}: file name too long ({p})")
    parent = p.absolute().parent
    if not parent.is_dir():
        raise InputError(f"{what}: no such directory {str(parent)!r} to put it in ({p})")
    return p


def check_backing_dir(path: str) -> None:
    """Content mode's backing directory: an existing directory, or one whose parent exists."""
    p = check_parent(path, "run.backing_dir")
    if p.exists() and not p.is_dir():
        raise InputError(f"run.backing_dir: not a directory ({p})")
    if p.is_dir() and not os.access(p, os.W_OK | os.X_OK):
        raise InputError(f"run.backing_dir: cannot write there: permission denied ({p})")


# ----------------------------------------------------------------- results directories
def is_result(path: Path) -> bool:
    return (path / INDEX).is_file()


def check_out(out: str | os.PathLike[str], what: str = "--out") -> Path:
    """Where a result may go: a new directory under an existing one, an empty directory, or
    a previous result of epcsim (replaced whole). Any other directory is the user's."""
    p = check_parent(out, what)
    if p.is_symlink() or (p.exists() and not p.is_dir()):
        raise InputError(f"{what}: exists and is not a directory ({p})")
    if not os.access(p.absolute().parent, os.W_OK | os.X_OK):
        # The result is staged beside --out and renamed into place: both need its parent.
        raise InputError(f"{what}: cannot write in {str(p.absolute().parent)!r}: permission "
                         f"denied ({p})")
    if p.is_dir() and any(p.iterdir()) and not is_result(p) and not (p / "report.html").is_file():
        raise InputError(f"{what}: {p} holds files that are not an epcsim result; give a new "
                         "or empty directory")
    return p


def write_index(path: Path, kind: str) -> None:
    """``results.json``, written last: the files that make this result complete."""
    files = sorted(str(f.relative_to(path)) for f in path.rglob("*")
                   if f.is_file() and f != path / INDEX)
    tmp = path / f".{INDEX}.tmp"
    with open(tmp, "w") as f:
        json.dump({"format": INDEX_FORMAT, "kind": kind, "files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / INDEX)


def missing(path: Path) -> list[str]:
    """What ``path`` lacks to be a complete result (empty when it is one)."""
    index = path / INDEX
    if not index.is_file():
        return [INDEX]
    try:
        doc = json.loads(read_text(index, INDEX, MAX_SUMMARY))
        files = doc["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise TypeError
    except (InputError, ValueError, KeyError, TypeError):
        return [f"{INDEX} (unreadable)"]
    return [f for f in files if not (path / f).is_file()]


@contextmanager
def staged(out: Path, kind: str) -> Iterator[Path]:
    """A fresh directory beside ``out`` to write a result into; on a clean exit it gets its
    ``results.json`` and replaces ``out``; on any error (or Ctrl-C) it is removed."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.absolute().parent))
    try:
        yield tmp
        write_index(tmp, kind)
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish(tmp: Path, out: Path) -> None:
    """Put ``tmp`` where ``out`` is; an old ``out`` is moved aside first, then removed."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old",
                                    dir=out.absolute().parent))
        os.rmdir(old)
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
