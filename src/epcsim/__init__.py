"""epcsim: an executable model of the Intel SGX Enclave Page Cache memory manager.

From Python::

    import epcsim
    r = epcsim.run("examples/pods.toml")          # a path, TOML text or a dict
    r = epcsim.replay("t.oracleGeneral.zst", epc_pages=4096, policy="lru")
    r.summary, r.tables, r.to_pandas("series"), r.save("out")
    r = epcsim.load("out")

(:mod:`epcsim.api`). They are loaded on first use, so importing a submodule stays light.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["Result", "__version__", "load", "replay", "run"]


def __getattr__(name: str) -> Any:
    if name in ("Result", "load", "replay", "run"):
        from epcsim import api

        return getattr(api, name)
    raise AttributeError(f"module 'epcsim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
