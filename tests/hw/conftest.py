"""Fixtures for the processor-model tests; the helpers live in :mod:`hwenv`."""

from __future__ import annotations

import pytest
from hwenv import Enclave, Env


@pytest.fixture
def env() -> Env:
    return Env()


@pytest.fixture
def cenv() -> Env:
    return Env(content=True)


@pytest.fixture(params=[False, True], ids=["metadata", "content"])
def anyenv(request: pytest.FixtureRequest) -> Env:
    return Env(content=request.param)


@pytest.fixture
def encl(env: Env) -> Enclave:
    return env.enclave()
