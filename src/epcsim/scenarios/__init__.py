"""Scenarios shipped with epcsim: the demo and the sweep the demo's report draws from."""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path


def packaged(name: str) -> Path:
    """A scenario file inside the installed package (a real path: traces sit beside it)."""
    with as_file(files("epcsim.scenarios") / name) as p:
        return Path(p)
