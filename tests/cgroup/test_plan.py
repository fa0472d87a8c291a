"""``epcsim plan``: Kubernetes manifests read into pods, packed and replayed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from epcsim.cli import main
from epcsim.workload.k8s import ManifestError, parse_quantity, read_manifests

MiB = 1 << 20

DEPLOYMENT_AND_POD = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  template:
    metadata:
      annotations:
        epcsim.io/workload: "zipf size=12Mi alpha=0.6 weight=2"
    spec:
      containers:
        - name: app
          resources:
            requests:
              sgx.intel.com/epc: 6Mi
            limits:
              sgx.intel.com/epc: 8Mi
---
apiVersion: v1
kind: Pod
metadata:
  name: db
spec:
  containers:
    - name: db
      resources:
        limits:
          sgx.intel.com/epc: "10Mi"
    - name: sidecar
      resources:
        requests:
          sgx.intel.com/epc: 1Mi
        limits:
          sgx.intel.com/epc: 2Mi
---
apiVersion: v1
kind: Service
metadata:
  name: web
"""


@pytest.mark.parametrize("text, value", [
    ("512Mi", 512 * MiB), ("1Gi", 1 << 30), ("100M", 100_000_000), ("1.5Gi", 3 << 29),
    ("65536", 65536), (65536, 65536), ("1e6", 1_000_000), ("2k", 2000), ("1500m", 2),
    ("0.5Ki", 512),
])
def test_kubernetes_quantities(text, value) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("bad", ["12XB", "-1Mi", "Mi", "", "1.2.3Gi", True, "0"])
def test_what_is_not_a_quantity(bad) -> None:
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(bad)


def test_a_deployment_and_a_pod(tmp_path: Path) -> None:
    f = tmp_path / "app.yaml"
    f.write_text(DEPLOYMENT_AND_POD)
    plan = read_manifests([str(f)])
    assert [p["name"] for p in plan.pods] == ["web-0", "web-1", "web-2", "db"]
    web = plan.pods[0]
    assert (web["epc_request"], web["epc_limit"]) == (6 * MiB, 8 * MiB)
    assert (web["workload"], web["size"], web["alpha"], web["weight"]) == (
        "zipf", 12 * MiB, 0.6, 2.0)
    db = plan.pods[3]
    # A container with only a limit requests its limit; a pod's EPC is its containers' sum.
    assert (db["epc_request"], db["epc_limit"]) == (11 * MiB, 12 * MiB)
    # No annotation: the stated default, over the pod's limit.
    assert (db["workload"], db["size"]) == ("zipf", 12 * MiB)
    assert plan.skipped == ["Service/web"]


def test_lists_statefulsets_jobs_and_pods_without_epc(tmp_path: Path) -> None:
    f = tmp_path / "list.yaml"
    f.write_text("""
kind: List
items:
  - kind: StatefulSet
    metadata: {name: kv}
    spec:
      replicas: 2
      template:
        spec:
          containers:
            - resources: {limits: {sgx.intel.com/epc: 4Mi}}
  - kind: Job
    metadata: {name: batch}
    spec:
      parallelism: 2
      template:
        metadata:
          annotations: {epcsim.io/workload: "scan size=3Mi"}
        spec:
          containers:
            - resources: {requests: {sgx.intel.com/epc: 2Mi}}
  - kind: Pod
    metadata: {name: plain}
    spec:
      containers: [{name: c, resources: {requests: {cpu: 1}}}]
""")
    plan = read_manifests([str(f)], default_workload="uniform")
    assert [(p["name"], p["epc_request"], p.get("epc_limit"), p["workload"]) for p in plan.pods] \
        == [("kv-0", 4 * MiB, 4 * MiB, "uniform"), ("kv-1", 4 * MiB, 4 * MiB, "uniform"),
            ("batch-0", 2 * MiB, None, "scan"), ("batch-1", 2 * MiB, None, "scan")]
    assert plan.skipped == ["Pod/plain (no sgx.intel.com/epc request)"]


@pytest.mark.parametrize("text, message, place", [
    ("kind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n    - resources:\n"
     "        limits: {sgx.intel.com/epc: 12XB}\n",
     "not a quantity: '12XB'",
     "document 1:spec.containers[0].resources.limits.sgx.intel.com/epc"),
    ("kind: Pod\nmetadata: {name: a}\nspec: {containers: []}\n---\n"
     "kind: Deployment\nmetadata: {name: b}\nspec: {replicas: three}\n",
     "a pod has a list of containers", "document 1:spec.containers"),
    ("kind: Deployment\nmetadata: {name: b}\nspec: {replicas: three, template: {}}\n",
     "not a count of pods: 'three'", "document 1:spec.replicas"),
    ("kind: List\nitems:\n  - kind: Pod\n    spec: {}\n",
     "missing: the object's name", "document 1:items[0].metadata.name"),
    ("---\nkind: Service\nmetadata: {name: s}\n---\n- just a list\n",
     "not a Kubernetes object (a mapping), but list", "document 2"),
    ("kind: Pod\nmetadata:\n  name: a\n  annotations: {epcsim.io/workload: 'zipf sizze=3Mi'}\n"
     "spec: {containers: [{resources: {limits: {sgx.intel.com/epc: 4Mi}}}]}\n",
     "'sizze=3Mi' is not one of size=", "document 1:metadata.annotations.epcsim.io/workload"),
    ("kind: Pod\nmetadata: {name: a\nspec: x\n", "not valid YAML", "line 3"),
])
def test_a_bad_manifest_names_the_document_and_the_field(tmp_path: Path, capsys, text,
                                                         message, place) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ManifestError) as exc:
        read_manifests([str(f)])
    assert message in str(exc.value)
    assert str(exc.value).endswith(f"({f}:{place})") or f"({f}:{place}" in str(exc.value)
    rc = main(["plan", str(f), "--node-epc", "64Mi"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("epcsim: error: ") and message in err and str(f) in err


def test_duplicate_pod_names_and_nothing_to_plan(tmp_path: Path) -> None:
    f = tmp_path / "dup.yaml"
    pod = ("kind: Pod\nmetadata: {name: a}\n"
           "spec: {containers: [{resources: {limits: {sgx.intel.com/epc: 4Mi}}}]}\n")
    f.write_text(pod + "---\n" + pod)
    with pytest.raises(ManifestError, match=r"a second pod named 'a' \(the first is from "
                       r".*dup.yaml:document 1\) \(.*dup.yaml:document 2:metadata.name\)"):
        read_manifests([str(f)])
    g = tmp_path / "none.yaml"
    g.write_text("kind: Service\nmetadata: {name: s}\n")
    with pytest.raises(ManifestError, match=r"no pod asks for sgx\.intel\.com/epc"):
        read_manifests([str(g)])
    with pytest.raises(ManifestError, match="no such manifest file"):
        read_manifests([str(tmp_path / "missing.yaml")])


def test_plan_a_deployment_of_three_and_a_pod_on_two_nodes(tmp_path: Path, capsys) -> None:
    f = tmp_path / "app.yaml"
    f.write_text(DEPLOYMENT_AND_POD)
    out_dir = tmp_path / "out"
    rc = main(["plan", str(f), "--node-epc", "20Mi", "--nodes", "2", "--requests", "100000",
               "--json", "--out", str(out_dir)])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    pods = {p["name"]: p for p in doc["pods"]}
    assert set(pods) == {"web-0", "web-1", "web-2", "db"}
    assert doc["nodes"] == 2 and len(doc["per_node"]) == 2
    for node in doc["per_node"]:
        on = [p for p in doc["pods"] if p["node"] == node["node"]]
        assert node["pods"] == len(on)
        assert node["epc_request"] == sum(p["epc_request"] for p in on) <= 20 * MiB
        assert node["failures"] == sum(p["status"] != "ok" for p in on)
        assert node["limit_hits"] == sum(p["limit_hits"] for p in on)
    # First fit decreasing: db (11 MiB) and one web on node 0, two webs on node 1.
    assert pods["db"]["node"] == 0
    assert sorted(pods[w]["node"] for w in ("web-0", "web-1", "web-2")) == [0, 1, 1]
    for p in doc["pods"]:
        if p["status"] == "ok":
            assert 0 < p["peak"] <= (p["epc_limit"] if p["epc_limit"] != "max" else 20 * MiB)
            assert p["slowdown"] >= 1.0 and p["requests"] > 0
    # web pods touch 12 MiB under an 8 MiB limit: the limit is hit and paging costs.
    assert any(pods[w]["limit_hits"] > 0 or pods[w]["reclaimed"] > 0
               for w in ("web-0", "web-1", "web-2"))
    assert doc["skipped"] == ["Service/web"]
    assert {p.name for p in out_dir.iterdir()} >= {"summary.json", "pods.parquet",
                                                   "nodes.parquet", "scenario.resolved.json"}


def test_plan_prints_tables_that_fit_80_columns(tmp_path: Path, capsys, monkeypatch) -> None:
    from rich.console import Console

    import epcsim.cli as cli

    monkeypatch.setattr(cli, "console", Console(width=80, file=None, force_terminal=False))
    f = tmp_path / "app.yaml"
    f.write_text(DEPLOYMENT_AND_POD.replace("10Mi", "13Mi"))   # db asks for 14 MiB
    rc = main(["plan", str(f), "--node-epc", "16Mi", "--nodes", "2", "--requests", "20000"])
    out = capsys.readouterr().out
    assert rc == 0
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "…" not in out
    assert "request" in out and "MiB" in out and "slowdown" in out
    # db fills node 0, two webs node 1: the third fits nowhere, its reason on a line of its own.
    assert "web-2: unscheduled: no node has room for its request" in out


def test_a_pod_larger_than_a_node_is_named_with_its_manifest(tmp_path: Path, capsys) -> None:
    f = tmp_path / "app.yaml"
    f.write_text(DEPLOYMENT_AND_POD)
    rc = main(["plan", str(f), "--node-epc", "8Mi"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err == (f"epcsim: error: pod db: epc_request: larger than a node's EPC "
                   f"({f}:document 2)\n")
    rc = main(["plan", str(f), "--node-epc", "lots"])
    assert rc == 2 and "--node-epc: not a size: 'lots'" in capsys.readouterr().err
