"""Fixtures for the driver tests; the helpers live in :mod:`drvkit`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from drvkit import assert_clean, machine

from epcsim.kernel.instance import Kernel


@pytest.fixture
def k() -> Iterator[Kernel]:
    """A metadata-mode machine with room to spare (no reclaim unless a test forces it)."""
    kernel = machine(128)
    yield kernel
    assert_clean(kernel)
