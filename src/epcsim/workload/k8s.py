"""Kubernetes manifests as pods for the capacity planner (``epcsim plan``).

Read: ``Pod``, ``Deployment``, ``StatefulSet``, ``ReplicaSet``, ``Job`` and ``List`` (its
``items``), in any number of files of any number of YAML documents. A workload kind gives
``spec.replicas`` pods (a Job: ``spec.parallelism``; default 1), named ``<name>-0``,
``<name>-1``, ... (Kubernetes adds a random suffix to a Deployment's pods; the planner needs
names that stay put). Other kinds (Service, ConfigMap, ...) are skipped and counted.

A pod's EPC is the sum over its containers of ``resources.requests`` and
``resources.limits`` of ``sgx.intel.com/epc`` (the Intel SGX device plugin's resource), in
Kubernetes quantities: ``512Mi``, ``1Gi``, ``100M``, ``1.5Gi``, ``65536``, ``1e6``. A
container with only a limit requests its limit, as Kubernetes defaults it. (Kubernetes'
admission insists that an extended resource's request equal its limit; the planner takes
them as given, to answer "what if the limit were lower".) A pod with no EPC request asks
for no SGX and is skipped.

Its workload comes from the annotation ``epcsim.io/workload`` of the pod (or of the
template's metadata), a generator and ``key=value`` pairs::

    metadata:
      annotations:
        epcsim.io/workload: "zipf size=48Mi alpha=1.1 weight=2"

Generators: ``scan``, ``uniform``, ``zipf``, ``phases``; keys: ``size`` (the pages it
touches, a quantity; default: the pod's EPC limit, else its request), ``alpha`` (zipf),
``phases`` and ``working_set`` (phases), ``weight`` (its share of the requests). Without
the annotation a pod runs the stated default, ``zipf`` over its limit (else its request).

Every problem is a :class:`ManifestError` whose one line names the file, the document (1-based)
and the field path, e.g. ``not a quantity: '12XB' (app.yaml:document 2:spec.template.spec.
containers[0].resources.limits.sgx.intel.com/epc)``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

RESOURCE = "sgx.intel.com/epc"
ANNOTATION = "epcsim.io/workload"
DEFAULT_WORKLOAD = "zipf"
GENERATORS = ("scan", "uniform", "zipf", "phases")
WORKLOAD_KEYS = {"size": "quantity", "alpha": float, "phases": int, "working_set": "quantity",
                 "weight": float}
_WORKLOADS = {"Deployment", "StatefulSet", "ReplicaSet"}

_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50,
           "Ei": 1 << 60}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^([+]?(?:\d+\.?\d*|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)|"
                       r"[eE]([+-]?\d+))?$")


class ManifestError(ValueError):
    """A manifest the planner cannot read; one line naming the file, document and field."""

    def __init__(self, message: str, path: str, doc: int | None = None,
                 where: str = "") -> None:
        place = path if doc is None else f"{path}:document {doc}"
        if where:
            place += f":{where}"
        super().__init__(f"{message} ({place})")


def parse_quantity(value: Any) -> int:
    """Bytes from a Kubernetes quantity (``512Mi``, ``1.5Gi``, ``100M``, ``1e6``, 4096),
    rounded up to a whole byte; ValueError when it is not one or not positive."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float):
        n = int(-(-value // 1))
    else:
        m = _QUANTITY.match(str(value).strip())
        if not m:
            raise ValueError(f"not a quantity: {value!r} (e.g. 512Mi, 1Gi, 100M, 1.5Gi)")
        num, suffix, exp = m.groups()
        from fractions import Fraction

        x = Fraction(num)
        if exp is not None:
            x *= Fraction(10) ** int(exp)
        elif suffix == "m":
            x /= 1000
        elif suffix:
            x *= _BINARY.get(suffix) or _DECIMAL[suffix]
        n = -(-x.numerator // x.denominator)
    if n <= 0:
        raise ValueError(f"not a positive quantity: {value!r}")
    return int(n)


@dataclass
class Plan:
    """Pods read from manifests (scenario ``[[pods]]`` entries) and what was skipped."""

    pods: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)   # pod name -> "file:document N"


def read_manifests(paths: list[str], default_workload: str = DEFAULT_WORKLOAD) -> Plan:
    """The pods of every manifest, in file and document order."""
    import yaml

    plan = Plan()
    origin = plan.origin
    for path in paths:
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise ManifestError("no such manifest file", path) from None
        except IsADirectoryError:
            raise ManifestError("a directory, not a manifest file", path) from None
        except UnicodeDecodeError as e:
            raise ManifestError(f"not UTF-8 text at byte {e.start}", path) from None
        except OSError as e:
            raise ManifestError(f"cannot read: {e.strerror}", path) from None
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f":line {mark.line + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ManifestError(f"not valid YAML: {problem}", f"{path}{line}") from None
        for d, doc in enumerate(docs, start=1):
            if doc is None:
                continue
            _object(doc, path, d, "", plan, default_workload, origin)
    if not plan.pods:
        raise ManifestError(f"no pod asks for {RESOURCE} in these manifests", ", ".join(
            os.fspath(p) for p in paths))
    return plan


def _object(obj: Any, path: str, d: int, where: str, plan: Plan, default: str,
            origin: dict[str, str]) -> None:
    def err(msg: str, at: str) -> ManifestError:
        return ManifestError(msg, path, d, f"{where}{at}".rstrip("."))

    if not isinstance(obj, dict):
        raise err(f"not a Kubernetes object (a mapping), but {type(obj).__name__}", "")
    kind = obj.get("kind")
    if not isinstance(kind, str):
        raise err("missing: every object has a kind", "kind")
    if kind == "List" or kind.endswith("List"):
        items = obj.get("items")
        if not isinstance(items, list):
            raise err("a List has a list of items", "items")
        for i, item in enumerate(items):
            _object(item, path, d, f"{where}items[{i}].", plan, default, origin)
        return
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or \
            not meta["name"]:
        raise err("missing: the object's name", "metadata.name")
    name = meta["name"]
    if kind == "Pod":
        replicas, spec_at, spec, tmeta = 1, "spec", obj.get("spec"), meta
    elif kind in _WORKLOADS or kind == "Job":
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            raise err("missing: a workload's spec", "spec")
        key = "parallelism" if kind == "Job" else "replicas"
        replicas = spec.get(key, 1)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise err(f"not a count of pods: {replicas!r}", f"spec.{key}")
        template = spec.get("template")
        if not isinstance(template, dict):
            raise err("missing: the pod template", "spec.template")
        spec_at, spec = "spec.template.spec", template.get("spec")
        tmeta = template.get("metadata") or {}
        if not isinstance(tmeta, dict):
            raise err("not a mapping", "spec.template.metadata")
    else:
        plan.skipped.append(f"{kind}/{name}")
        return
    if not isinstance(spec, dict):
        raise err("missing: the pod's spec", spec_at)
    request, limit = _epc(spec, err, spec_at)
    if request is None:
        plan.skipped.append(f"{kind}/{name} (no {RESOURCE} request)")
        return
    ann = {**(meta.get("annotations") or {}), **(tmeta.get("annotations") or {})}
    ann_at = ("spec.template.metadata" if tmeta is not meta else "metadata") + \
        f".annotations.{ANNOTATION}"
    text = ann.get(ANNOTATION)
    workload = _workload(text if text is not None else default, limit or request,
                         err, ann_at if text is not None else "")
    for r in range(replicas):
        pod_name = name if kind == "Pod" else f"{name}-{r}"
        if pod_name in origin:
            raise err(f"a second pod named {pod_name!r} (the first is from {origin[pod_name]})",
                      "metadata.name")
        origin[pod_name] = f"{path}:document {d}"
        pod = {"name": pod_name, "epc_request": request, **workload}
        if limit is not None:
            pod["epc_limit"] = limit
        plan.pods.append(pod)


def _epc(spec: dict[str, Any], err: Any, at: str) -> tuple[int | None, int | None]:
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise err("a pod has a list of containers", f"{at}.containers")
    request = limit = 0
    any_request = any_limit = False
    for c, cont in enumerate(containers):
        where = f"{at}.containers[{c}]"
        if not isinstance(cont, dict):
            raise err("a container is a mapping", where)
        res = cont.get("resources") or {}
        if not isinstance(res, dict):
            raise err("not a mapping", f"{where}.resources")
        got: dict[str, int] = {}
        for part in ("requests", "limits"):
            table = res.get(part) or {}
            if not isinstance(table, dict):
                raise err("not a mapping", f"{where}.resources.{part}")
            if RESOURCE in table:
                try:
                    got[part] = parse_quantity(table[RESOURCE])
                except ValueError as e:
                    raise err(str(e), f"{where}.resources.{part}.{RESOURCE}") from None
        if "limits" in got:
            any_limit = True
            limit += got["limits"]
        if "requests" in got or "limits" in got:
            any_request = True
            # Kubernetes defaults a missing request to the limit.
            request += got.get("requests", got.get("limits", 0))
    return (request if any_request else None), (limit if any_limit else None)


def _workload(text: Any, size: int, err: Any, at: str) -> dict[str, Any]:
    if not isinstance(text, str) or not text.split():
        raise err(f"a workload is a generator and key=value pairs, got {text!r}", at)
    words = text.split()
    gen = words[0]
    if gen not in GENERATORS:
        raise err(f"unknown generator {gen!r} (known: {', '.join(GENERATORS)})", at)
    out: dict[str, Any] = {"workload": gen, "size": size}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or key not in WORKLOAD_KEYS:
            raise err(f"{word!r} is not one of {', '.join(k + '=' for k in WORKLOAD_KEYS)}", at)
        kind = WORKLOAD_KEYS[key]
        try:
            if kind == "quantity":
                out[key] = parse_quantity(value)
            else:
                out[key] = kind(value)  # type: ignore[operator]
        except ValueError as e:
            raise err(f"{key}: {e}", at) from None
    return out
