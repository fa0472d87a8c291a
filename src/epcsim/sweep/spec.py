"""A sweep file: a base scenario plus a grid of dotted keys to lists of values.

::

    [sweep]
    base = "two_enclaves.toml"     # a scenario file, relative to this file ...
    # [base] ...                   # ... or the scenario inline as a [base] table

    [grid]
    "platform.epc_size" = ["8MiB", "16MiB", "32MiB"]
    "kernel.batch" = [8, 16]
    "enclaves.0.size" = ["16MiB", "24MiB"]   # list items by index

Every key must name a field of the scenario; every value must be a non-empty list whose
items the scenario accepts. Errors name the file and the key.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from epcsim.workload.scenario import Scenario, ScenarioError, check_files, short_repr, validate

# A point is a file and a row; the grid is checked value by value before any runs.
MAX_POINTS = 10_000


class _SweepTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base: str | None = Field(default=None, description="The base scenario's file, relative "
                             "to the sweep file (or give the scenario as [base]).")


class SweepFile(BaseModel):
    """A sweep file's shape, for its JSON Schema (``epcsim schema --sweep``); the checks
    that need the base scenario (a grid key names a field, each value is accepted) are
    :func:`load_sweep`'s."""

    model_config = ConfigDict(extra="forbid", title="epcsim sweep")

    sweep: _SweepTable | None = None
    base: Scenario | None = Field(default=None, description="The base scenario, inline.")
    grid: dict[str, list[Any]] = Field(description="Dotted keys of the scenario (list items "
                                       "by index, e.g. enclaves.0.size) to lists of values.")


class SweepError(ValueError):
    """A sweep file that cannot run; one line naming the file and the key."""


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep: the base scenario (as data), the grid and where traces are found."""

    path: Path
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    base_dir: Path

    def points(self) -> list[dict[str, Any]]:
        """The cartesian product of the grid, first key slowest, in file order."""
        keys = list(self.grid)
        return [dict(zip(keys, combo, strict=True))
                for combo in itertools.product(*(self.grid[k] for k in keys))]

    def scenario_for(self, params: dict[str, Any]) -> dict[str, Any]:
        """The base scenario with one point's values set (checked when the spec is read)."""
        data = copy.deepcopy(self.base)
        for key, value in params.items():
            set_dotted(data, key, value)
        return data

    def to_json(self) -> str:
        return json.dumps({"base": self.base, "grid": self.grid}, sort_keys=True)


def _err(what: str, path: Path, key: str) -> SweepError:
    if len(key) > 60:
        key = key[:57] + "..."
    if len(what) > 300:
        what = what[:297] + "..."
    return SweepError(f"{what} ({path}:{key})")


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file; SweepError names the file and the key."""
    from epcsim.files import InputError, parse, read_text

    p = Path(path)
    try:
        data = parse(read_text(p, "sweep file"), p, "sweep file", as_json=False)
    except InputError as e:
        raise SweepError(str(e)) from None
    for key in data:
        if key not in ("sweep", "base", "grid"):
            raise _err("unknown key (use [sweep], [base] and [grid])", p, key)
    sweep = data.get("sweep", {})
    if not isinstance(sweep, dict):
        raise _err("must be a table", p, "sweep")
    for key in sweep:
        if key != "base":
            raise _err("unknown key", p, f"sweep.{key}")
    base_dir = p.resolve().parent
    if "base" in sweep and "base" in data:
        raise _err("give the base scenario once: a path or a [base] table", p, "sweep.base")
    if "base" in sweep:
        if not isinstance(sweep["base"], str):
            raise _err("must be the path of a scenario file", p, "sweep.base")
        bpath = Path(sweep["base"])
        if not bpath.is_absolute():
            bpath = base_dir / bpath
        base = _read_scenario(bpath, p)
        base_dir = bpath.resolve().parent
    elif "base" in data:
        if not isinstance(data["base"], dict):
            raise _err("must be a table", p, "base")
        base = data["base"]
    else:
        raise _err("missing: a base scenario ([sweep] base = \"file.toml\" or [base])", p, "base")
    try:
        check_files(validate(base, f"{p}:base"), base_dir, f"{p}:base")
    except ScenarioError as e:
        raise SweepError(f"base scenario: {e}") from None

    grid = data.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise _err("empty grid: give at least one dotted key with a list of values", p, "grid")
    npoints = 1
    for values in grid.values():
        npoints *= max(1, len(values)) if isinstance(values, list) else 1
    if npoints > MAX_POINTS:
        raise _err(f"{npoints} points: a sweep has at most {MAX_POINTS}", p, "grid")
    for key, values in grid.items():
        where = f"grid.{key}"
        if not isinstance(values, list):
            raise _err(f"wrong type: a list of values, not {type(values).__name__}", p, where)
        if not values:
            raise _err("empty list of values", p, where)
        problem = unknown_key(base, key)
        if problem:
            raise _err(problem, p, where)
        for value in values:
            trial = copy.deepcopy(base)
            set_dotted(trial, key, value)
            try:
                check_files(validate(trial, str(p)), base_dir, str(p))
            except ScenarioError as e:
                msg = str(e).rsplit(" (", 1)[0]
                raise _err(f"wrong value {short_repr(value)}: {msg}", p, where) from None
    spec = SweepSpec(p, base, {k: list(v) for k, v in grid.items()}, base_dir)
    # Values right alone may clash together (kernel.high against a smaller EPC): every
    # point is checked here, so none fails in a worker.
    for index, params in enumerate(spec.points()):
        try:
            validate(spec.scenario_for(params), str(p))
        except ScenarioError as e:
            msg = str(e).rsplit(" (", 1)[0]
            shown = ", ".join(f"{k} = {short_repr(v)}" for k, v in params.items())
            raise _err(f"point {index} ({shown}): {msg}", p, "grid") from None
    return spec


def _read_scenario(path: Path, sweep: Path) -> dict[str, Any]:
    from epcsim.files import InputError, parse, read_text

    try:
        out = parse(read_text(path, "scenario file"), path, "base scenario",
                    as_json=path.suffix == ".json")
    except InputError as e:
        raise _err(f"base scenario: {e}", sweep, "sweep.base") from None
    if not isinstance(out, dict):
        raise _err("base scenario is not a table", sweep, "sweep.base")
    return out


def short_key(key: str) -> str:
    return key if len(key) <= 60 else key[:57] + "..."


def _parts(key: str) -> list[str | int]:
    return [int(s) if s.isdigit() else s for s in key.replace("[", ".").replace("]", "")
            .split(".") if s != ""]


def unknown_key(base: dict[str, Any], key: str) -> str | None:
    """Why ``key`` names no field of a scenario built on ``base``, or None when it does."""
    model: Any = Scenario
    node: Any = base
    parts = _parts(key)
    if not parts:
        return "unknown key"
    for i, part in enumerate(parts):
        shown = short_key(".".join(str(x) for x in parts[: i + 1]))
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return f"unknown key: {shown} (no such list item in the base scenario)"
            node = node[part]
            continue
        if model is None or not (isinstance(model, type) and issubclass(model, BaseModel)):
            if model is dict:  # free-form tables such as platform.costs
                return None if i == len(parts) - 1 else f"unknown key: {shown}"
            return f"unknown key: {shown}"
        fields = model.model_fields
        if part not in fields:
            return f"unknown key: {shown}"
        model = _inner_model(fields[part].annotation)
        node = node.get(part, {}) if isinstance(node, dict) else {}
        if i + 1 < len(parts) and isinstance(parts[i + 1], int) and not isinstance(node, list):
            return f"unknown key: {shown} is not a list in the base scenario"
    return None


def _inner_model(annotation: Any) -> Any:
    import typing

    origin = typing.get_origin(annotation)
    if origin in (list,):
        return _inner_model(typing.get_args(annotation)[0])
    if origin is dict:
        return dict
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.0.c`` in nested tables/lists, creating tables on the way."""
    parts = _parts(key)
    node: Any = data
    for part, nxt in itertools.pairwise(parts):
        if isinstance(part, int):
            node = node[part]
        else:
            if part not in node or node[part] is None:
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
    last = parts[-1]
    node[last] = value
