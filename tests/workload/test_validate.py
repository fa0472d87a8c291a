"""``epcsim validate`` lists every problem of a scenario; ``epcsim schema`` prints its schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from epcsim.cli import main
from epcsim.sweep.spec import SweepFile
from epcsim.workload.scenario import Scenario, ScenarioError, problems, validate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

TWO_WRONG_KEYS = """
[platfrm]
preset = "client-sgx1"
[[enclaves]]
name = "a"
sizee = "3MiB"
workload = "zipff"
[kernel]
low = -3
"""


def run(capsys, *args: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_every_error_is_listed_one_line_each_naming_the_key(capsys, tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(TWO_WRONG_KEYS)
    rc, out, err = run(capsys, "validate", f)
    assert rc == 2 and out == ""
    lines = err.splitlines()
    assert all(line.startswith("epcsim: error: ") and line.endswith(f"({f})")
               for line in lines)
    keys = sorted(line.removeprefix("epcsim: error: ").split(":")[0] for line in lines)
    assert keys == ["enclaves[0].sizee", "enclaves[0].workload", "kernel.low", "platfrm"]
    unknown = next(line for line in lines if "platfrm" in line)
    assert "unknown key (known: platform, kernel, run," in unknown


def test_validate_json_and_a_valid_file(capsys, tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(TWO_WRONG_KEYS)
    rc, out, _ = run(capsys, "validate", f, "--json")
    doc = json.loads(out)
    assert rc == 2 and doc["valid"] is False and len(doc["errors"]) == 4
    for name in ("pods.toml", "two_enclaves.toml", "oversubscription.toml"):
        rc, out, err = run(capsys, "validate", EXAMPLES / name)
        assert rc == 0 and out.strip().endswith("a valid scenario") and err == "", name


def test_checks_across_keys_come_when_the_keys_are_right() -> None:
    data = {"pods": [{"name": "a", "size": "1MiB", "workload": "zipf", "epc_request": "1MiB"}],
            "kernel": {"low": 100}}
    assert problems(data) == ["cluster: [[pods]] need a [cluster] with node_epc",
                              "kernel.low: must not exceed kernel.high"]
    with pytest.raises(ScenarioError, match=r"^cluster: \[\[pods\]\] need a \[cluster\]"):
        validate(data)
    assert problems({"enclaves": [{"name": "a", "size": "1MiB", "workload": "zipf"}]}) == []


def test_a_union_field_is_one_line_not_one_per_member() -> None:
    found = problems({"enclaves": [{"name": "a", "size": [1], "workload": "zipf"}]})
    assert len(found) == 1 and found[0].startswith("enclaves[0].size: ")


def test_a_sweep_file_is_checked_as_a_sweep(capsys, tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('[base]\n[[base.enclaves]]\nname = "a"\nsize = "4MiB"\nworkload = "zipf"\n'
                 '[grid]\n"kernel.batchh" = [8, 16]\n')
    rc, _, err = run(capsys, "validate", f)
    assert rc == 2 and err.count("\n") == 1
    assert "unknown key: kernel.batchh" in err and f"({f}:grid.kernel.batchh)" in err
    f.write_text(f.read_text().replace("batchh", "batch"))
    rc, out, _ = run(capsys, "validate", f)
    assert rc == 0 and out.strip() == f"{f}: a valid sweep"


@pytest.mark.parametrize("content, fragment", [
    (None, "no such scenario file"), ("[[enclaves]\n", "not valid TOML"),
    (b"\xff\xfe", "not UTF-8 text"),
])
def test_a_file_that_cannot_be_read_is_one_line(capsys, tmp_path: Path, content, fragment):
    f = tmp_path / "s.toml"
    if isinstance(content, bytes):
        f.write_bytes(content)
    elif content is not None:
        f.write_text(content)
    rc, out, err = run(capsys, "validate", f)
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert fragment in err and err.rstrip().endswith(f"({f})")


def test_schema_is_the_models_json_schema(capsys) -> None:
    rc, out, _ = run(capsys, "schema")
    assert rc == 0
    doc = json.loads(out)
    assert doc == Scenario.model_json_schema()
    assert doc["additionalProperties"] is False
    assert {"platform", "kernel", "run", "enclaves", "pods", "vms"} <= set(doc["properties"])
    rc, out, _ = run(capsys, "schema", "--sweep")
    sweep = json.loads(out)
    assert rc == 0 and sweep == SweepFile.model_json_schema()
    assert sweep["required"] == ["grid"]


def test_the_schema_accepts_the_examples_and_refuses_a_wrong_key() -> None:
    import tomllib

    schema = Scenario.model_json_schema()
    for name in ("pods.toml", "two_enclaves.toml"):
        data = tomllib.loads((EXAMPLES / name).read_text())
        assert set(data) <= set(schema["properties"]), name
    assert "sizee" not in schema["$defs"]["EnclaveSpec"]["properties"]
    assert schema["$defs"]["EnclaveSpec"]["additionalProperties"] is False
