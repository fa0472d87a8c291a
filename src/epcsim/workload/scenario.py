"""Scenarios: a platform, a kernel configuration, enclaves with workloads, a run length.

``epcsim run SCENARIO.toml`` reads one of these::

    [platform]
    preset = "client-sgx1"        # client-sgx1 | server-sgx1 | xeon-icx
    epc_size = "93.5MiB"          # optional: overrides the preset's EPC
    tlb_entries = 1536            # optional: each CPU's TLB (0: every access walks)
    tlb_ways = 12                 # optional: its associativity
    [platform.costs]              # optional: cycles overriding the cost model
    ewb = 12000

    [kernel]
    policy = "sgx"                # sgx | lru | fifo | clock
    low = 32
    high = 64
    batch = 16
    ksgxd = "clock"               # clock | instant: when the pages ksgxd frees are free

    [run]
    requests = 1000000            # total accesses, shared by the enclaves by weight
    seed = 1
    series_step_s = 0.001
    fault_log = 65536             # optional: faults kept in faults.parquet (the first ones)
    mrc = false                   # true: the LRU miss-ratio curve across EPC sizes too
    content = false               # optional: also replay with page contents, verified
    backing_dir = "/var/tmp"      # optional: where content mode's backing files go

    [[enclaves]]
    name = "db"
    size = "64MiB"                # the enclave's footprint (pages it touches)
    workload = "zipf"             # scan | uniform | zipf | phases, or a program
    alpha = 1.0
    weight = 2.0

    [[enclaves]]
    name = "index"
    size = "32MiB"
    workload = "btree"            # a program (epcsim workloads lists them)
    params = { node = 8192, insert_ratio = 0.2 }

    [[enclaves]]
    name = "log"
    trace = "log.oracleGeneral.zst"  # or a trace file (plain, .zst or .gz) instead
    format = "oracleGeneral"      # optional: what the name and the bytes say
    cgroup = "/tenants/log"       # optional: the EPC cgroup its process runs in
    epc_limit = "16MiB"           # misc.max of that cgroup (omit: no limit)
    memory_limit = "64MiB"        # memory.max of that cgroup (the backing store)

    [[cgroups]]                   # optional: limits of cgroups no entry names itself
    path = "/tenants"
    epc_limit = "48MiB"

A VM (``[[vms]]``) takes ``cgroup`` and ``epc_limit`` the same way: its VMM runs there.

Capacity planning replaces ``[[enclaves]]`` by pods placed in EPC cgroups and packed onto
nodes (docs/cgroups.md)::

    [cluster]
    node_epc = "64MiB"            # EPC of each node
    nodes = 2

    [[pods]]
    name = "redis"
    epc_request = "24MiB"         # what the scheduler packs by
    epc_limit = "32MiB"           # misc.max of the pod's cgroup (omit: no limit)
    size = "48MiB"                # then a workload, as for an enclave
    workload = "zipf"

Validation errors name the key: ``enclaves[1].size: not a size: '64XB'``.
"""

from __future__ import annotations

import math
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from epcsim.sim import costs as K


class ScenarioError(ValueError):
    """A scenario that cannot run; one line naming the file and the key."""


KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
PAGE = 4096

# Every bound of a scenario (docs/bounds.md has the table). Memory that grows with one of
# these is held in numpy arrays: an EPC page costs the model about 16 bytes of state
# (512 GiB of EPC: about 2.2 GB), a request about 30 bytes while the run's accesses are
# built (100 million: about 3 GB), a page an enclave touches 8 bytes of a Zipf table.
MIN_EPC = 64 * PAGE              # the smallest EPC the kernel's watermarks leave room in
MAX_EPC = 512 * GiB              # one EPC section's architectural maximum on Ice Lake-SP
MAX_FOOTPRINT = 64 * GiB         # pages one enclave (or pod, or VM enclave) touches
MAX_LIMIT = 1 << 50              # cgroup limits and pod requests: 1 PiB, beyond any host
MAX_REQUESTS = 100_000_000
MAX_SEED = (1 << 32) - 1
MAX_COST = 10_000_000            # cycles of one event: about 1000 times the slowest, EWB
MAX_NAME = 255                   # a cgroup directory's name (NAME_MAX)
MAX_PATH = 4096                  # PATH_MAX
MAX_ENTRIES = 1024               # enclaves, pods or cgroups of a scenario
MAX_TOTAL_FOOTPRINT = 1 << 40    # all entries together: about 4 bytes of state a page
MAX_CONTENT_EPC = 1 << 30        # content mode holds every EPC page's 4 KiB in memory
# Accesses of a VM's guest kernel and of content mode, which run in Python at some 4000 to
# 6000 accesses a second (measured): at this bound a run takes under an hour.
MAX_PYTHON_REQUESTS = 10_000_000
MAX_VMS = 64


def parse_size(value: int | str, *, lo: int = 1, hi: int = MAX_LIMIT,
               page: bool = False) -> int:
    """Bytes from 4096, '4KiB', '93.5MiB', '64GiB', '2M', between ``lo`` and ``hi``."""
    if isinstance(value, bool):
        raise ValueError("a size, not a boolean")
    if isinstance(value, int):
        if value.bit_length() > 64:
            raise ValueError(f"{short_repr(value)} is more than {show_size(hi)}")
        n = value
    else:
        units = {"": 1, "k": KiB, "kib": KiB, "kb": KiB, "m": MiB, "mib": MiB, "mb": MiB,
                 "g": GiB, "gib": GiB, "gb": GiB, "t": TiB, "tib": TiB, "tb": TiB}
        text = str(value)
        if len(text) > 64:
            raise ValueError("not a size: longer than 64 characters")
        t = text.strip().lower().replace(" ", "")
        num = t.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = t[len(num):]
        try:
            f = float(num)
        except ValueError:
            raise ValueError(f"not a size: {short_repr(value)}") from None
        if unit not in units or not math.isfinite(f) or f <= 0:
            raise ValueError(f"not a size: {short_repr(value)}")
        if f * units[unit] > 2 * hi:
            raise ValueError(f"{short_repr(value)} is more than {show_size(hi)}")
        n = int(f * units[unit])
    if n < lo:
        raise ValueError("sizes are positive" if lo <= 1 and n < 1
                         else f"{short_repr(value)} is less than {show_size(lo)}")
    if n > hi:
        raise ValueError(f"{short_repr(value)} is more than {show_size(hi)}")
    if page and n % PAGE:
        raise ValueError(f"{short_repr(value)} is not a multiple of 4 KiB")
    return n


def short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def show_size(n: int) -> str:
    """``n`` bytes in the largest binary unit that divides it."""
    for unit, name in ((1 << 50, "PiB"), (TiB, "TiB"), (GiB, "GiB"), (MiB, "MiB"),
                       (KiB, "KiB")):
        if n >= unit and n % unit == 0:
            return f"{n // unit} {name}"
    return f"{n} bytes"


def _size_type(lo: int, hi: int, page: bool, what: str) -> Any:
    """A size field: an integer of bytes or a string with a unit, within [lo, hi]. The JSON
    schema's minimum and maximum bound the integer form; the description says the rest."""
    check = partial(parse_size, lo=lo, hi=hi, page=page)
    return Annotated[StrictInt | StrictStr, AfterValidator(check),
                     Field(json_schema_extra={"minimum": lo, "maximum": hi},
                           description=f"{what}: bytes, or a number with a unit (KiB, MiB, "
                           f"GiB, TiB), {show_size(lo)} to {show_size(hi)}"
                           + (", a multiple of 4 KiB" if page else ""))]


EpcSize = _size_type(MIN_EPC, MAX_EPC, True, "an EPC")
Footprint = _size_type(PAGE, MAX_FOOTPRINT, False, "pages touched")
Limit = _size_type(1, MAX_LIMIT, False, "a limit")


def _name(v: str) -> str:
    # Pod and VM names become cgroup directories (/kubepods/<name>) and table keys.
    if v in (".", "..") or "/" in v or any(ord(c) < 32 or ord(c) == 127 for c in v):
        raise ValueError(f"{v[:40]!r}: a name has no '/' or control characters and is "
                         "not '.' or '..'")
    return v


Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME), AfterValidator(_name)]
FilePath = Annotated[str, Field(min_length=1, max_length=MAX_PATH)]
Cycles = Annotated[int, Field(ge=0, le=MAX_COST)]


class _Strict(BaseModel):
    # NaN and infinities are never a valid float of a scenario.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PlatformSpec(_Strict):
    preset: str = Field(default="client-sgx1", max_length=64)
    epc_size: EpcSize | None = None
    nodes: int | None = Field(default=None, ge=1, le=8)
    # The second-level TLB of each CPU (sim/costs.py, Platform): entries, 0 for none.
    tlb_entries: int | None = Field(default=None, ge=0, le=1 << 16)
    tlb_ways: int | None = Field(default=None, ge=1, le=127)
    # Cycles of each event (sim/costs.py); the work per access is at least a cycle, since
    # a run's slowdown divides by it.
    costs: dict[str, Cycles] = Field(default_factory=dict)

    @field_validator("preset")
    @classmethod
    def _preset(cls, v: str) -> str:
        K.preset(v)
        return v

    @field_validator("costs")
    @classmethod
    def _costs(cls, v: dict[str, int]) -> dict[str, int]:
        known = {f.name for f in fields(K.CostModel)}
        for name in v:
            if name not in known:
                raise ValueError(f"unknown cost {name[:40]!r}; known: {', '.join(sorted(known))}")
        if v.get("request") == 0:
            raise ValueError("request: at least 1 cycle (the slowdown divides by it)")
        return v

    @model_validator(mode="after")
    def _tlb(self) -> PlatformSpec:
        K.with_tlb(K.preset(self.preset), self.tlb_entries, self.tlb_ways)
        return self


class KernelSpec(_Strict):
    policy: Literal["sgx", "lru", "fifo", "clock"] = "sgx"
    # ksgxd's watermarks in pages: checked against the EPC in validate().
    low: int = Field(default=32, ge=0, le=MAX_EPC // PAGE)
    high: int = Field(default=64, ge=0, le=MAX_EPC // PAGE)
    batch: int = Field(default=16, ge=1, le=1024)
    # When the pages ksgxd writes back are free: at its own clock (the kernel's thread on
    # another CPU), or at once (the model before ksgxd had a clock, for comparison).
    ksgxd: Literal["clock", "instant"] = "clock"


class RunSpec(_Strict):
    requests: int = Field(default=1_000_000, ge=1, le=MAX_REQUESTS)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    # A sample per step of virtual time: the series grows with virtual time over the step.
    series_step_s: float = Field(default=0.001, ge=1e-6, le=3600)
    # The first faults kept in faults.parquet; None: the replay's default (one per 16 EPC
    # pages, 65 536 to 2^20; sim.replay.fault_log_entries).
    fault_log: int | None = Field(default=None, ge=0, le=1 << 30)
    mrc: bool = False             # also write the LRU miss-ratio curve (mrc.parquet)
    content: bool = False
    backing_dir: FilePath | None = None


class _InCgroup(_Strict):
    """An entry whose process (the enclave's, or a VM's VMM) may be placed in an EPC cgroup."""

    cgroup: str | None = Field(default=None, max_length=MAX_PATH)  # charged there
    epc_limit: Limit | None = None           # misc.max of that cgroup

    @field_validator("cgroup")
    @classmethod
    def _cgroup(cls, v: str | None) -> str | None:
        return None if v is None else cgroup_path(v)


class EnclaveSpec(_InCgroup):
    @field_validator("workload")
    @classmethod
    def _workload(cls, v: str | None) -> str | None:
        from epcsim.workload.programs import PROGRAMS

        if v is not None and v not in DISTRIBUTIONS and v not in PROGRAMS:
            raise ValueError(f"no workload {v[:40]!r} (one of "
                             f"{', '.join(DISTRIBUTIONS + tuple(PROGRAMS))})")
        return v

    name: Name
    size: Footprint | None = None
    workload: str | None = Field(default=None, max_length=64)  # a distribution or a program
    params: dict[str, Any] = Field(default_factory=dict)   # a program's (programs.py)
    alpha: float = Field(default=1.0, gt=0, le=10)
    phases: int = Field(default=4, ge=1, le=1_000_000)
    working_set: Footprint | None = None
    weight: float = Field(default=1.0, gt=0, le=1e6)
    trace: FilePath | None = None
    format: Literal["oracleGeneral", "lcs", "csv", "npy"] | None = None
    memory_limit: Limit | None = None        # memory.max of its cgroup


def cgroup_path(v: str) -> str:
    """A cgroup v2 path, normalised: absolute, no empty parts, no '.' or '..'."""
    if not v.startswith("/"):
        raise ValueError(f"a cgroup path is absolute, like '/tenants/db', not {v[:40]!r}")
    parts = [p for p in v.split("/") if p]
    for p in parts:
        if p in (".", ".."):
            raise ValueError(f"a cgroup path has no '.' or '..' parts ({v[:80]!r})")
        if len(p) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in p):
            raise ValueError(f"a cgroup's name is 1 to {MAX_NAME} characters, none of them "
                             f"control characters ({v[:80]!r})")
    if len(parts) > 32:
        raise ValueError(f"a cgroup path is at most 32 levels deep ({v[:80]!r})")
    return "/" + "/".join(parts)


class CgroupSpec(_Strict):
    """Limits of a cgroup (``[[cgroups]]``), e.g. a parent no entry names itself."""

    path: str = Field(max_length=MAX_PATH)
    epc_limit: Limit | None = None
    memory_limit: Limit | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return cgroup_path(v)


class ClusterSpec(_Strict):
    node_epc: EpcSize
    nodes: int = Field(default=1, ge=1, le=1024)

    @model_validator(mode="after")
    def _total(self) -> ClusterSpec:
        if int(self.node_epc) * self.nodes > MAX_EPC:
            raise ValueError(f"nodes x node_epc is more than {show_size(MAX_EPC)} of EPC "
                             "in all")
        return self


class PodSpec(EnclaveSpec):
    # epc_limit and memory_limit as for an enclave; the cgroup is /kubepods/<name>.
    epc_request: Limit


class VmEnclaveSpec(_Strict):
    """An enclave inside a VM (``[[vms.enclaves]]``)."""

    name: Name
    size: Footprint                      # data pages it touches
    workload: Literal["scan", "uniform", "zipf"] = "uniform"
    alpha: float = Field(default=1.0, gt=0, le=10)
    weight: float = Field(default=1.0, gt=0, le=1e6)
    writes: float = Field(default=0.5, ge=0, le=1)
    start: float = Field(default=0.0, ge=0, lt=1)   # fraction of the run before it runs


# A VM's vEPC and its guest kernel run in Python objects: a few hundred bytes a page.
MAX_VEPC = 64 * GiB


class VmSpec(_InCgroup):
    """A virtual machine (``[[vms]]``): its vEPC, vCPUs, mode and guest enclaves."""

    name: Name
    mode: Literal["reserved", "oversubscribed", "balloon"] = "reserved"
    epc_size: _size_type(MIN_EPC, MAX_VEPC, True, "a vEPC")  # type: ignore[valid-type]
    vcpus: int = Field(default=1, ge=1, le=64)
    enclaves: list[VmEnclaveSpec] = Field(default_factory=list, max_length=MAX_VMS)


class VirtSpec(_Strict):
    """How the host runs its VMs (``[virt]``)."""

    mode: Literal["reserved", "oversubscribed", "balloon"] | None = None  # overrides vms
    reserve: int = Field(default=128, ge=8, le=1 << 20)   # host pages for EPT violations
    ecall: int = Field(default=8, ge=1, le=4096)     # accesses per ECALL
    guest_low: int = Field(default=8, ge=0, le=MAX_VEPC // PAGE)
    guest_high: int = Field(default=16, ge=0, le=MAX_VEPC // PAGE)
    series_every: int = Field(default=64, ge=1, le=1_000_000)   # ECALLs between samples
    # Accesses of all VMs together; [run] requests when not given. VMs run through the
    # guest kernel's Python paths, so a scenario that also has enclaves gives them fewer.
    requests: int | None = Field(default=None, ge=1, le=MAX_PYTHON_REQUESTS)


class Scenario(_Strict):
    # ``platform = "host"`` is short for ``[platform] preset = "host"``: this machine's EPC.
    platform: PlatformSpec = Field(default_factory=PlatformSpec)
    kernel: KernelSpec = Field(default_factory=KernelSpec)
    run: RunSpec = Field(default_factory=RunSpec)
    enclaves: list[EnclaveSpec] = Field(default_factory=list, max_length=MAX_ENTRIES)
    cluster: ClusterSpec | None = None
    pods: list[PodSpec] = Field(default_factory=list, max_length=MAX_ENTRIES)
    vms: list[VmSpec] = Field(default_factory=list, max_length=MAX_VMS)
    virt: VirtSpec = Field(default_factory=VirtSpec)
    cgroups: list[CgroupSpec] = Field(default_factory=list, max_length=MAX_ENTRIES)

    @field_validator("platform", mode="before")
    @classmethod
    def _platform_name(cls, v: Any) -> Any:
        return {"preset": v} if isinstance(v, str) else v

    def cgroup_tree(self, part: str) -> dict[str, tuple[int | None, int | None]]:
        """The cgroups ``part`` (``"enclaves"`` or ``"vms"``) runs in: path -> (misc.max,
        memory.max) in bytes, None for "max". Empty when no entry of ``part`` names one;
        ``[[cgroups]]`` limits apply to both parts (on a host they share, one tree).
        """
        entries: list[Any] = list(getattr(self, part))
        if not any(e.cgroup for e in entries):
            return {}
        tree: dict[str, tuple[int | None, int | None]] = {}
        for c in self.cgroups:
            tree[c.path] = (c.epc_limit, c.memory_limit)  # type: ignore[assignment]
        for e in entries:
            if e.cgroup is None:
                continue
            epc, mem = tree.get(e.cgroup, (None, None))
            tree[e.cgroup] = (e.epc_limit if e.epc_limit is not None else epc,
                              getattr(e, "memory_limit", None) or mem)
        return tree

    def resolved_platform(self) -> K.Platform:
        base = K.preset(self.platform.preset)
        from dataclasses import replace

        p = replace(base, costs=base.costs.with_cycles(**self.platform.costs))
        if self.platform.epc_size:
            p = replace(p, epc_bytes=int(self.platform.epc_size))  # type: ignore[arg-type]
        if self.platform.nodes:
            p = replace(p, nodes=self.platform.nodes)
        return K.with_tlb(p, self.platform.tlb_entries, self.platform.tlb_ways)


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, str) and (part in ("int", "str", "float", "bool")
                                      or part.startswith(("function-", "union[", "nullable["))):
            continue  # a union member or a validator, not a key
        if isinstance(part, str) and len(part) > 40:
            part = part[:37] + "..."  # a key the user made up: enough of it to find it
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario; ScenarioError names the file and the key."""
    return validate(read(path), str(path))


def read(path: str | Path) -> dict[str, Any]:
    """A scenario file's data (TOML, or JSON for ``.json``), not yet validated;
    ScenarioError names the file when it cannot be read."""
    from epcsim.files import InputError, parse, read_text

    p = Path(path)
    try:
        # scenario.resolved.json, as ``epcsim run --out`` writes it, repeats a run exactly.
        data = parse(read_text(p, "scenario file"), p, "scenario file", p.suffix == ".json")
    except InputError as e:
        raise ScenarioError(str(e)) from None
    if not isinstance(data, dict):
        raise ScenarioError(f"a scenario is a JSON object ({p})")
    return data


def check_files(sc: Scenario, base_dir: Path, where: str = "scenario") -> None:
    """The files a scenario names, checked before it runs: each trace a regular file, the
    backing directory one that exists or whose parent does."""
    from epcsim.files import InputError, check_backing_dir, check_file

    for i, enc in enumerate(sc.enclaves):
        if enc.trace is None:
            continue
        path = Path(enc.trace)
        try:
            check_file(path if path.is_absolute() else base_dir / path, "trace")
        except InputError as e:
            raise ScenarioError(f"enclaves[{i}].trace: {e} ({where})") from None
    if sc.run.backing_dir is not None:
        try:
            check_backing_dir(sc.run.backing_dir)
        except InputError as e:
            raise ScenarioError(f"{e} ({where})") from None


def validate(data: dict[str, Any], where: str = "scenario") -> Scenario:
    """The scenario ``data`` describes; ScenarioError names the first problem's key
    (:func:`problems` lists them all)."""
    sc, found = _checked(data)
    if found:
        raise ScenarioError(f"{found[0]} ({where})")
    assert sc is not None
    return sc


def problems(data: dict[str, Any]) -> list[str]:
    """Every problem of a scenario, one ``key: what is wrong`` line each (empty: none).

    All the models' errors at once (unknown keys with the keys that are known there, wrong
    types, bad sizes); the checks across keys (pods need a cluster, a limit needs a cgroup)
    need a scenario whose keys are right, so they are listed when there are no others.
    """
    return _checked(data)[1]


def _checked(data: dict[str, Any]) -> tuple[Scenario | None, list[str]]:
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as e:
        seen: dict[str, str] = {}
        for err in e.errors():
            key, known = _key_path(err["loc"])
            if key in seen:  # one line per key: a union's members each complain
                continue
            if err["type"] == "extra_forbidden":
                msg = "unknown key" + (f" (known: {', '.join(known)})" if known else "")
            else:
                msg = err["msg"].removeprefix("Value error, ")
            seen[key] = f"{key}: {msg}"
        return None, list(seen.values())
    return sc, [f"{key}: {msg}" for key, msg in _cross_checks(sc)]


def _key_path(loc: tuple[Any, ...]) -> tuple[str, list[str]]:
    """A pydantic error location as the scenario's key (``enclaves[0].size``: without a
    union member's tag such as ``int``), and the keys the table holding it takes."""
    import typing

    model: Any = Scenario
    parent: list[str] = []
    parts: list[Any] = []
    for n, part in enumerate(loc):
        if isinstance(part, int):
            parts.append(part)
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None and model is None and parts and isinstance(part, str):
            parts.append(part)      # a key of a table of free keys (platform.costs.ewb)
            continue
        if fields is None or part not in fields:
            if fields is not None and n == len(loc) - 1:   # a key the table does not take
                parts.append(part)
                parent = list(fields)
            continue
        parts.append(part)
        parent = list(fields)
        model = None
        ann = fields[part].annotation
        for t in (ann, *typing.get_args(ann)):
            for u in (t, *typing.get_args(t)):
                if isinstance(u, type) and issubclass(u, BaseModel):
                    model = u
    return _fmt_loc(tuple(parts)), parent


def _cross_checks(sc: Scenario) -> list[tuple[str, str]]:
    """The checks across keys, as (key, what is wrong)."""
    out: list[tuple[str, str]] = []
    if not sc.enclaves and not sc.pods and not sc.vms:
        out.append(("enclaves", "a scenario needs enclaves, pods or vms"))
    # Rows, tables and cgroups (/kubepods/<pod>) are keyed by name: two entries of one
    # name would share a cgroup and a row.
    lists: list[tuple[str, list[Any]]] = [("enclaves", sc.enclaves), ("pods", sc.pods),
                                          ("vms", sc.vms)]
    lists += [(f"vms[{i}].enclaves", v.enclaves) for i, v in enumerate(sc.vms)]
    for kind_, entries in lists:
        seen: set[str] = set()
        for i, e in enumerate(entries):
            if e.name in seen:
                out.append((f"{kind_}[{i}].name", f"{e.name[:40]!r} is used twice"))
            seen.add(e.name)
    if sc.pods and sc.enclaves:
        out.append(("pods", "a scenario has [[enclaves]] or [[pods]], not both"))
    if sc.pods and sc.cluster is None:
        out.append(("cluster", "[[pods]] need a [cluster] with node_epc"))
    for i, pod in enumerate(sc.pods):
        node_epc = sc.cluster.node_epc if sc.cluster is not None else None
        if node_epc is not None and pod.epc_request > node_epc:  # type: ignore[operator]
            out.append((f"pods[{i}].epc_request", "larger than a node's EPC"))
        if pod.trace is not None:
            out.append((f"pods[{i}].trace", "pods take a generated workload"))
    for i, enc in enumerate(sc.enclaves or sc.pods):
        kind = "enclaves" if sc.enclaves else "pods"
        if (enc.trace is None) == (enc.workload is None):
            out.append((f"{kind}[{i}]", "give either a workload or a trace"))
        if enc.workload is not None and enc.size is None:
            out.append((f"{kind}[{i}].size", "a generated workload needs a size"))
        if enc.size is not None and int(enc.size) < 4096:  # type: ignore[arg-type]
            out.append((f"{kind}[{i}].size", "at least one page"))
        try:
            _check_workload(enc, f"{kind}[{i}]", "")
        except ScenarioError as e:
            key, _, msg = str(e).removesuffix(" ()").partition(": ")
            out.append((key, msg))
    if sc.kernel.low > sc.kernel.high:
        out.append(("kernel.low", "must not exceed kernel.high"))
    kind = "enclaves" if sc.enclaves else "pods"
    total = sum(int(e.size or 0) for e in sc.enclaves or sc.pods)  # type: ignore[arg-type]
    total += sum(int(e.size or 0) for v in sc.vms for e in v.enclaves)  # type: ignore[arg-type]
    if total > MAX_TOTAL_FOOTPRINT:
        out.append((kind, f"their sizes add up to more than {show_size(MAX_TOTAL_FOOTPRINT)}"))
    if sc.run.content and sc.run.requests > MAX_PYTHON_REQUESTS:
        out.append(("run.requests", f"content mode replays in Python: at most "
                                    f"{MAX_PYTHON_REQUESTS}"))
    if sc.vms and (sc.virt.requests or sc.run.requests) > MAX_PYTHON_REQUESTS:
        key = "virt.requests" if sc.virt.requests else "run.requests"
        out.append((key, f"VMs' guest kernels run in Python: at most {MAX_PYTHON_REQUESTS} "
                         f"accesses for the VMs (give virt.requests to run the enclaves "
                         f"longer)"))
    if sc.run.content and sc.resolved_platform().epc_bytes > MAX_CONTENT_EPC:
        out.append(("platform.epc_size", f"content mode holds the EPC's bytes in memory: at "
                                         f"most {show_size(MAX_CONTENT_EPC)}"))
    if not out:
        for check in (_check_watermarks, _check_cgroups):
            try:
                check(sc, "")
            except ScenarioError as e:
                key, _, msg = str(e).removesuffix(" ()").partition(": ")
                out.append((key, msg))
    return out


DISTRIBUTIONS = ("scan", "uniform", "zipf", "phases")


def _check_workload(enc: EnclaveSpec, key: str, where: str) -> None:
    """A distribution by name, or a program whose parameters and size fit it."""
    from epcsim.workload.programs import PROGRAMS, ProgramError, check_params

    if enc.workload is None:
        if enc.params:
            raise ScenarioError(f"{key}.params: parameters go with a program workload "
                                f"({where})")
        return
    if enc.workload in DISTRIBUTIONS:
        if enc.params:
            raise ScenarioError(f"{key}.params: {enc.workload} takes its parameters as keys "
                                f"of the entry (alpha, phases, working_set) ({where})")
        return
    if enc.workload not in PROGRAMS:
        raise ScenarioError(f"{key}.workload: no workload {enc.workload!r} (one of "
                            f"{', '.join(DISTRIBUTIONS + tuple(PROGRAMS))}) ({where})")
    if "accesses" in enc.params:
        raise ScenarioError(f"{key}.params.accesses: an enclave's accesses are its share of "
                            f"[run] requests ({where})")
    try:
        check_params(enc.workload, enc.size, enc.params, prefix=f"{key}.params.")
    except ProgramError as e:
        msg = str(e)
        # the size is the entry's own key, not one of params
        msg = msg.replace(f"{key}.params.size:", f"{key}.size:")
        raise ScenarioError(f"{msg} ({where})") from None


def _check_watermarks(sc: Scenario, where: str) -> None:
    """ksgxd's watermarks fit the EPC they watch (a node's, for pods); a guest's its vEPC."""
    epc = int(sc.cluster.node_epc) if sc.pods and sc.cluster \
        else sc.resolved_platform().epc_bytes  # type: ignore[arg-type]
    pages = epc // PAGE
    if sc.kernel.high >= pages:
        raise ScenarioError(f"kernel.high: {sc.kernel.high} pages does not fit the EPC "
                            f"({pages} pages) ({where})")
    if sc.kernel.batch >= pages:
        raise ScenarioError(f"kernel.batch: {sc.kernel.batch} pages does not fit the EPC "
                            f"({pages} pages) ({where})")
    if sc.virt.guest_low > sc.virt.guest_high:
        raise ScenarioError(f"virt.guest_low: must not exceed virt.guest_high ({where})")
    for i, vm in enumerate(sc.vms):
        vpages = int(vm.epc_size) // PAGE  # type: ignore[arg-type]
        if sc.virt.guest_high >= vpages:
            raise ScenarioError(f"virt.guest_high: {sc.virt.guest_high} pages does not fit "
                                f"vms[{i}]'s vEPC ({vpages} pages) ({where})")
    if sc.vms and sc.virt.reserve >= pages:
        raise ScenarioError(f"virt.reserve: {sc.virt.reserve} pages does not fit the EPC "
                            f"({pages} pages) ({where})")


def _check_cgroups(sc: Scenario, where: str) -> None:
    """Each cgroup's limits are given once; a limit needs a cgroup; the root has none."""
    given: dict[tuple[str, str], tuple[int, str]] = {}
    seen: set[str] = set()
    for i, c in enumerate(sc.cgroups):
        if c.path in seen:
            raise ScenarioError(f"cgroups[{i}].path: {c.path} is listed twice ({where})")
        seen.add(c.path)
        for key in ("epc_limit", "memory_limit"):
            if getattr(c, key) is not None:
                given[(c.path, key)] = (getattr(c, key), f"cgroups[{i}]")
    for i, pod in enumerate(sc.pods):
        if pod.cgroup is not None:
            raise ScenarioError(f"pods[{i}].cgroup: a pod runs in /kubepods/<name> ({where})")
    for kind in ("enclaves", "vms"):
        for i, e in enumerate(getattr(sc, kind)):
            for key in ("epc_limit", "memory_limit"):
                v = getattr(e, key, None)
                if v is None:
                    continue
                if e.cgroup is None:
                    raise ScenarioError(f"{kind}[{i}].{key}: a limit needs a cgroup ({where})")
                old = given.get((e.cgroup, key))
                if old is not None and old[0] != v:
                    raise ScenarioError(f"{kind}[{i}].{key}: {e.cgroup} already has {old[0]} "
                                        f"from {old[1]} ({where})")
                given[(e.cgroup, key)] = (v, f"{kind}[{i}]")
    for (path, key), (_, src) in given.items():
        if path == "/":
            raise ScenarioError(f"{src}.{key}: the root cgroup has no limit ({where})")
    if sc.kernel.policy != "sgx" and any(e.cgroup for e in sc.enclaves):
        i = next(i for i, e in enumerate(sc.enclaves) if e.cgroup)
        raise ScenarioError(f"enclaves[{i}].cgroup: EPC cgroups need kernel.policy = "
                            f"'sgx' (the other policies replay no kernel) ({where})")


def requests_for(sc: Scenario, base_dir: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The scenario's accesses: (tenant, page) arrays, interleaved by weight, and names."""
    tenants, pages, _, names = accesses_for(sc, base_dir)
    return tenants, pages, names


def accesses_for(sc: Scenario, base_dir: Path
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(tenant, page, write) arrays interleaved by weight, and names. Programs give their
    stores as writes; distributions and trace files give reads only."""
    from epcsim.workload import generators as G
    from epcsim.workload import programs as P
    from epcsim.workload.traces import open_trace

    rng = np.random.default_rng(sc.run.seed)
    weights = np.array([e.weight for e in sc.enclaves], dtype=float)
    owner = rng.choice(len(sc.enclaves), size=sc.run.requests, p=weights / weights.sum())
    counts = np.bincount(owner, minlength=len(sc.enclaves))
    pages = np.empty(sc.run.requests, dtype=np.int64)
    writes = np.zeros(sc.run.requests, dtype=np.bool_)
    for i, enc in enumerate(sc.enclaves):
        n = int(counts[i])
        seed = sc.run.seed * 1000 + i
        if enc.trace is not None:
            path = Path(enc.trace)
            if not path.is_absolute():
                path = base_dir / path
            # No format: the one the trace's name and first bytes say (compressed or not).
            ids = np.concatenate([c.obj for c in open_trace(str(path), enc.format)]
                                 or [np.zeros(0, np.uint64)])
            if ids.size == 0:
                raise ScenarioError(f"enclaves[{i}].trace: empty trace ({path})")
            _, dense = np.unique(ids, return_inverse=True)
            stream = np.resize(dense, n)
        else:
            npages = max(1, int(enc.size) // 4096)  # type: ignore[arg-type]
            if enc.workload == "scan":
                stream = G.sequential_scan(npages, n, seed=seed)
            elif enc.workload == "uniform":
                stream = G.uniform(npages, n, seed=seed)
            elif enc.workload == "zipf":
                stream = G.zipf(npages, n, alpha=enc.alpha, seed=seed)
            elif enc.workload in P.PROGRAMS:
                if n == 0:
                    continue
                stream, w = P.accesses(enc.workload, enc.size, n, seed=seed, **enc.params)
                writes[owner == i] = w
            else:
                ws = max(1, int(enc.working_set or npages // 4) // 4096) if enc.working_set \
                    else max(1, npages // 4)
                stream = G.working_set_phases(npages, n, phases=enc.phases,
                                              working_set=min(ws, npages), seed=seed)
        pages[owner == i] = np.asarray(stream, dtype=np.int64)[:n]
    return owner.astype(np.uint32), pages, writes, [e.name for e in sc.enclaves]
