"""Scenarios: a platform, a kernel configuration, enclaves with workloads, a run length.

``epcsim run SCENARIO.toml`` reads one of these::

    [platform]
    preset = "client-sgx1"        # client-sgx1 | server-sgx1 | xeon-icx
    epc_size = "93.5MiB"          # optional: overrides the preset's EPC
    [platform.costs]              # optional: cycles overriding the cost model
    ewb = 12000

    [kernel]
    policy = "sgx"                # sgx | lru | fifo | clock
    low = 32
    high = 64
    batch = 16

    [run]
    requests = 1000000            # total accesses, shared by the enclaves by weight
    seed = 1
    series_step_s = 0.001
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

import tomllib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from epcsim.sim import costs as K


class ScenarioError(ValueError):
    """A scenario that cannot run; one line naming the file and the key."""


def parse_size(value: int | str) -> int:
    """Bytes from 4096, '4KiB', '93.5MiB', '64GiB', '2M'."""
    if isinstance(value, bool):
        raise ValueError("a size, not a boolean")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("sizes are positive")
        return value
    units = {"": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
             "mb": 1 << 20, "g": 1 << 30, "gib": 1 << 30, "gb": 1 << 30, "t": 1 << 40,
             "tib": 1 << 40, "tb": 1 << 40}
    t = str(value).strip().lower().replace(" ", "")
    num = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = t[len(num):]
    try:
        n = float(num)
    except ValueError:
        raise ValueError(f"not a size: {value!r}") from None
    if unit not in units or n <= 0:
        raise ValueError(f"not a size: {value!r}")
    return int(n * units[unit])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlatformSpec(_Strict):
    preset: str = "client-sgx1"
    epc_size: int | str | None = None
    nodes: int | None = Field(default=None, ge=1, le=8)
    costs: dict[str, int] = Field(default_factory=dict)

    @field_validator("preset")
    @classmethod
    def _preset(cls, v: str) -> str:
        K.preset(v)
        return v

    @field_validator("epc_size")
    @classmethod
    def _size(cls, v: int | str | None) -> int | None:
        if v is None:
            return None
        n = parse_size(v)
        if n % 4096 or n < 64 * 4096:
            raise ValueError("the EPC must be a multiple of 4 KiB and at least 256 KiB")
        return n


class KernelSpec(_Strict):
    policy: Literal["sgx", "lru", "fifo", "clock"] = "sgx"
    low: int = Field(default=32, ge=0)
    high: int = Field(default=64, ge=0)
    batch: int = Field(default=16, ge=1, le=1024)


class RunSpec(_Strict):
    requests: int = Field(default=1_000_000, ge=1)
    seed: int = 0
    series_step_s: float = Field(default=0.001, gt=0)
    mrc: bool = False             # also write the LRU miss-ratio curve (mrc.parquet)
    content: bool = False
    backing_dir: str | None = None


class _InCgroup(_Strict):
    """An entry whose process (the enclave's, or a VM's VMM) may be placed in an EPC cgroup."""

    cgroup: str | None = None                # the EPC cgroup: its allocations are charged there
    epc_limit: int | str | None = None       # misc.max of that cgroup

    @field_validator("epc_limit")
    @classmethod
    def _limit(cls, v: int | str | None) -> int | None:
        return None if v is None else parse_size(v)

    @field_validator("cgroup")
    @classmethod
    def _cgroup(cls, v: str | None) -> str | None:
        return None if v is None else cgroup_path(v)


class EnclaveSpec(_InCgroup):
    name: str
    size: int | str | None = None
    workload: str | None = None          # a distribution or a program (programs.py)
    params: dict[str, Any] = Field(default_factory=dict)   # a program's parameters
    alpha: float = Field(default=1.0, gt=0)
    phases: int = Field(default=4, ge=1)
    working_set: int | str | None = None
    weight: float = Field(default=1.0, gt=0)
    trace: str | None = None
    format: Literal["oracleGeneral", "lcs", "csv", "npy"] | None = None
    memory_limit: int | str | None = None    # memory.max of its cgroup

    @field_validator("size", "working_set", "memory_limit")
    @classmethod
    def _size(cls, v: int | str | None) -> int | None:
        return None if v is None else parse_size(v)


def cgroup_path(v: str) -> str:
    """A cgroup v2 path, normalised: absolute, no empty parts."""
    if not v.startswith("/"):
        raise ValueError(f"a cgroup path is absolute, like '/tenants/db', not {v!r}")
    return "/" + "/".join(p for p in v.split("/") if p)


class CgroupSpec(_Strict):
    """Limits of a cgroup (``[[cgroups]]``), e.g. a parent no entry names itself."""

    path: str
    epc_limit: int | str | None = None
    memory_limit: int | str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return cgroup_path(v)

    @field_validator("epc_limit", "memory_limit")
    @classmethod
    def _limit(cls, v: int | str | None) -> int | None:
        return None if v is None else parse_size(v)


class ClusterSpec(_Strict):
    node_epc: int | str
    nodes: int = Field(default=1, ge=1, le=1024)

    @field_validator("node_epc")
    @classmethod
    def _size(cls, v: int | str) -> int:
        n = parse_size(v)
        if n % 4096 or n < 64 * 4096:
            raise ValueError("a node's EPC must be a multiple of 4 KiB and at least 256 KiB")
        return n


class PodSpec(EnclaveSpec):
    # epc_limit and memory_limit as for an enclave; the cgroup is /kubepods/<name>.
    epc_request: int | str

    @field_validator("epc_request")
    @classmethod
    def _bytes(cls, v: int | str) -> int:
        return parse_size(v)


class VmEnclaveSpec(_Strict):
    """An enclave inside a VM (``[[vms.enclaves]]``)."""

    name: str
    size: int | str                      # data pages it touches
    workload: Literal["scan", "uniform", "zipf"] = "uniform"
    alpha: float = Field(default=1.0, gt=0)
    weight: float = Field(default=1.0, gt=0)
    writes: float = Field(default=0.5, ge=0, le=1)
    start: float = Field(default=0.0, ge=0, lt=1)   # fraction of the run before it runs

    @field_validator("size")
    @classmethod
    def _size(cls, v: int | str) -> int:
        n = parse_size(v)
        if n < 4096:
            raise ValueError("at least one page")
        return n


class VmSpec(_InCgroup):
    """A virtual machine (``[[vms]]``): its vEPC, vCPUs, mode and guest enclaves."""

    name: str
    mode: Literal["reserved", "oversubscribed", "balloon"] = "reserved"
    epc_size: int | str
    vcpus: int = Field(default=1, ge=1, le=64)
    enclaves: list[VmEnclaveSpec] = Field(default_factory=list)

    @field_validator("epc_size")
    @classmethod
    def _size(cls, v: int | str) -> int:
        n = parse_size(v)
        if n % 4096 or n < 64 * 4096:
            raise ValueError("a vEPC must be a multiple of 4 KiB and at least 256 KiB")
        return n


class VirtSpec(_Strict):
    """How the host runs its VMs (``[virt]``)."""

    mode: Literal["reserved", "oversubscribed", "balloon"] | None = None  # overrides vms
    reserve: int = Field(default=128, ge=8)          # host pages for EPT violations
    ecall: int = Field(default=8, ge=1, le=4096)     # accesses per ECALL
    guest_low: int = Field(default=8, ge=0)
    guest_high: int = Field(default=16, ge=0)
    series_every: int = Field(default=64, ge=1)      # ECALLs between samples
    # Accesses of all VMs together; [run] requests when not given. VMs run through the
    # guest kernel's Python paths, so a scenario that also has enclaves gives them fewer.
    requests: int | None = Field(default=None, ge=1)


class Scenario(_Strict):
    # ``platform = "host"`` is short for ``[platform] preset = "host"``: this machine's EPC.
    platform: PlatformSpec = Field(default_factory=PlatformSpec)
    kernel: KernelSpec = Field(default_factory=KernelSpec)
    run: RunSpec = Field(default_factory=RunSpec)
    enclaves: list[EnclaveSpec] = Field(default_factory=list)
    cluster: ClusterSpec | None = None
    pods: list[PodSpec] = Field(default_factory=list)
    vms: list[VmSpec] = Field(default_factory=list)
    virt: VirtSpec = Field(default_factory=VirtSpec)
    cgroups: list[CgroupSpec] = Field(default_factory=list)

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
        return p


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario; ScenarioError names the file and the key."""
    return validate(read(path), str(path))


def read(path: str | Path) -> dict[str, Any]:
    """A scenario file's data (TOML, or JSON for ``.json``), not yet validated;
    ScenarioError names the file when it cannot be read."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        # scenario.resolved.json, as ``epcsim run --out`` writes it, repeats a run exactly.
        data = _read_json(text, p) if p.suffix == ".json" else tomllib.loads(text)
    except FileNotFoundError:
        raise ScenarioError(f"no such scenario file ({p})") from None
    except UnicodeDecodeError as e:
        raise ScenarioError(f"not UTF-8 text at byte {e.start} ({p})") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"not valid TOML: {e} ({p})") from None
    except IsADirectoryError:
        raise ScenarioError(f"a directory, not a scenario file ({p})") from None
    return data


def _read_json(text: str, p: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ScenarioError(f"not valid JSON: {e} ({p})") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"a scenario is a JSON object ({p})")
    return data


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
    names = [v.name for v in sc.vms]
    for i, v in enumerate(sc.vms):
        if v.name in names[:i]:
            out.append((f"vms[{i}].name", f"{v.name!r} is used twice"))
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
    if not out:
        try:
            _check_cgroups(sc, "")
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
