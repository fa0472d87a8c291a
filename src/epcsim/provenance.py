"""Where a result came from: the epcsim version that made it and a digest of its input.

Every output carries both: ``summary.json`` (keys ``epcsim_version`` and
``scenario_digest``), each Parquet file's schema metadata (the same two keys), the report's
footer and each sweep point. The digest is of the scenario as validated, every default
filled in (``scenario.resolved.json``), so two spellings of one scenario share it; a replay's
"scenario" is its trace (path, size, format) and options.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa

VERSION_KEY = "epcsim_version"
DIGEST_KEY = "scenario_digest"


def version() -> str:
    """This epcsim's version (read at each call, so a test may set ``epcsim.__version__``)."""
    import epcsim

    return str(epcsim.__version__)


def digest(data: Any) -> str:
    """A stable name for JSON-ready data: 16 hex digits of the SHA-256 of its canonical JSON."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stamp(summary: dict[str, Any], scenario: Any) -> dict[str, Any]:
    """``summary`` with the version and the digest of ``scenario`` (JSON-ready) set."""
    summary[VERSION_KEY] = version()
    summary[DIGEST_KEY] = digest(scenario)
    return summary


def stamped_table(table: pa.Table, summary: dict[str, Any]) -> pa.Table:
    """``table`` whose schema metadata carries the summary's version and digest."""
    meta = dict(table.schema.metadata or {})
    for key in (VERSION_KEY, DIGEST_KEY):
        value = summary.get(key)
        if value is not None:
            meta[key.encode()] = str(value).encode()
    return table.replace_schema_metadata(meta)


def table_stamp(table: pa.Table) -> dict[str, str]:
    """The version and digest a Parquet table's metadata carries (empty when none)."""
    meta = table.schema.metadata or {}
    return {k: meta[k.encode()].decode() for k in (VERSION_KEY, DIGEST_KEY)
            if k.encode() in meta}
