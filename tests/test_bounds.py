"""Issue 36's examples, one test each: what a careless or hostile user types is refused with
exit status 2 and one line naming the key, and a results directory is whole or absent."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from epcsim.cli import main

SMALL = ('[platform]\nepc_size = "1MiB"\n[kernel]\npolicy = "lru"\n[run]\nrequests = 3000\n'
         '[[enclaves]]\nname = "a"\nsize = "2MiB"\nworkload = "uniform"\n')


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], *words: str) -> str:
    """Run ``argv``; it must exit 2 with one line on stderr holding every word."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("epcsim: error: ") and "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def scenario(tmp_path: Path, text: str, name: str = "s.toml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_an_infinite_size_is_refused_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = scenario(tmp_path, SMALL.replace('size = "2MiB"', 'size = "1e309"'))
    refused(capsys, ["run", s], "enclaves[0].size", "not a size")
    s = scenario(tmp_path, SMALL.replace('epc_size = "1MiB"', "epc_size = 1e400"))
    refused(capsys, ["run", s], "platform.epc_size")
    s = scenario(tmp_path, SMALL.replace('epc_size = "1MiB"', 'epc_size = "2TiB"'))
    refused(capsys, ["run", s], "platform.epc_size", "more than 512 GiB")


def test_a_trillion_requests_is_refused_with_its_bound(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = scenario(tmp_path, SMALL.replace("requests = 3000", "requests = 1000000000000"))
    refused(capsys, ["run", s], "run.requests", "100000000")


@pytest.mark.parametrize("where", ["scenario", "trace", "sweep", "sweep base"])
def test_a_fifo_is_refused_not_waited_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    if where == "scenario":
        argv = ["run", str(fifo)]
    elif where == "trace":
        argv = ["run", scenario(tmp_path, SMALL.replace(
            'size = "2MiB"\nworkload = "uniform"', f'trace = "{fifo}"\nformat = "npy"'))]
    elif where == "sweep":
        argv = ["sweep", str(fifo), "--out", str(tmp_path / "o")]
    else:
        sweep = tmp_path / "sw.toml"
        sweep.write_text(f'[sweep]\nbase = "{fifo}"\n[grid]\n"run.seed" = [1, 2]\n')
        argv = ["sweep", str(sweep), "--out", str(tmp_path / "o")]
    result: list[int] = []
    # A command that opened the FIFO would block for ever: run it aside and bound the wait.
    t = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    t.start()
    t.join(60)
    if t.is_alive():
        with open(fifo, "w"):  # a writer releases the blocked open, then the test fails
            pass
        pytest.fail(f"{argv} blocked on the FIFO")
    assert result == [2]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a regular file" in err[0], err
    assert not (tmp_path / "o").exists()


def test_a_negative_cost_is_refused(tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    s = scenario(tmp_path, SMALL.replace('epc_size = "1MiB"\n', 'epc_size = "1MiB"\n'
                                         '[platform.costs]\newb = -1000000\n'))
    refused(capsys, ["run", s], "platform.costs.ewb", "greater than or equal to 0")
    s = scenario(tmp_path, SMALL.replace('epc_size = "1MiB"\n', 'epc_size = "1MiB"\n'
                                         '[platform.costs]\nrequest = 0\n'))
    refused(capsys, ["run", s], "platform.costs", "request")


def test_two_pods_of_one_name_are_refused(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    pod = ('[[pods]]\nname = "redis"\nepc_request = "1MiB"\nepc_limit = "{}"\nsize = "2MiB"\n'
           'workload = "uniform"\n')
    s = scenario(tmp_path, '[cluster]\nnode_epc = "4MiB"\n[run]\nrequests = 2000\n'
                 + pod.format("2MiB") + pod.format("1MiB"))
    refused(capsys, ["run", s], "pods[1].name", "'redis' is used twice")


def test_a_reused_out_holds_only_the_latest_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = scenario(tmp_path, SMALL.replace("requests = 3000", "requests = 3000\nmrc = true"),
                 "a.toml")
    b = scenario(tmp_path, SMALL, "b.toml")
    out = tmp_path / "D"
    assert main(["run", a, "--out", str(out)]) == 0
    assert (out / "mrc.parquet").exists()
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "miss_ratio_curve.png").exists()
    assert main(["run", b, "--out", str(out)]) == 0
    assert not (out / "mrc.parquet").exists() and not (out / "report").exists()
    assert main(["report", str(out), "--json"]) == 0
    capsys.readouterr()
    assert not (out / "report" / "miss_ratio_curve.png").exists()
    assert json.loads((out / "summary.json").read_text())["scenario"] == b
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("stop", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_run_stopped_while_writing_leaves_the_previous_result(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        stop: BaseException) -> None:
    import pyarrow.parquet as pq

    a = scenario(tmp_path, SMALL.replace("requests = 3000", "requests = 3000\nmrc = true"),
                 "a.toml")
    out = tmp_path / "D"
    assert main(["run", a, "--out", str(out), "--json"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write = pq.write_table
    calls = []

    def failing(table, where, **kw):  # type: ignore[no-untyped-def]
        calls.append(where)
        if len(calls) == 2:  # summary.json and a first table are written by then
            raise stop
        return write(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", failing)
    b = scenario(tmp_path, SMALL.replace("requests = 3000", "requests = 2000"), "b.toml")
    status = main(["run", b, "--out", str(out)])
    assert status == (130 if isinstance(stop, KeyboardInterrupt) else 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("interrupted" in err[0] or "No space left" in err[0]), err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # A new --out stopped the same way leaves no directory at all.
    calls.clear()
    main(["run", b, "--out", str(tmp_path / "new")])
    capsys.readouterr()
    assert not (tmp_path / "new").exists()


def test_report_refuses_a_partial_result_naming_what_is_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "D"
    assert main(["run", scenario(tmp_path, SMALL), "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    (out / "series.parquet").unlink()
    refused(capsys, ["report", str(out)], "not a complete result", "series.parquet")
    (out / "results.json").unlink()
    refused(capsys, ["report", str(out)], "results.json is missing")
    assert not (out / "report").exists()


def test_report_refuses_a_summary_that_is_a_list(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "D"
    assert main(["run", scenario(tmp_path, SMALL), "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    (out / "summary.json").write_text("[1, 2, 3]")
    refused(capsys, ["report", str(out)], "summary.json holds a list")
    (out / "summary.json").write_text("[" * 100000)
    refused(capsys, ["report", str(out)], "summary.json")


@pytest.mark.parametrize("text, words", [
    ('[platform]\nepc_size = "1MiB"\n[kernel]\nhigh = 300\n', ("kernel.high", "EPC")),
    ('[run]\nseed = -1\n', ("run.seed",)),
    ('[run]\nseries_step_s = nan\n', ("run.series_step_s", "finite")),
    ('[[cgroups]]\npath = "/a/../b"\nepc_limit = "1MiB"\n', ("cgroups[0].path", "'..'")),
    ('[[enclaves]]\nname = "a"\nsize = "1MiB"\nworkload = "zipf"\n', ("enclaves[1].name",)),
    ('[[enclaves]]\nname = "x"\nsize = "1MiB"\nworkload = "zipf"\nalpha = inf\n',
     ("enclaves[1].alpha",)),
    ('[[enclaves]]\nname = "x"\nsize = "1MiB"\nworkload = "zipf"\nweight = 1e300\n',
     ("enclaves[1].weight",)),
    ('[run]\nrequests = 20000000\ncontent = true\n', ("run.requests", "content mode")),
    ('[run]\nrequests = 20000000\n[[vms]]\nname = "v"\nepc_size = "1MiB"\n',
     ("run.requests", "VMs")),
])
def test_more_hostile_values_name_their_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            text: str, words: tuple[str, ...]) -> None:
    # The enclave of SMALL alone, so that the tables of ``text`` are not given twice.
    enclave = SMALL[SMALL.index("[[enclaves]]"):]
    body = enclave + text if text.startswith("[[") else text + enclave
    refused(capsys, ["run", scenario(tmp_path, body)], *words)


def test_files_that_are_not_scenarios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, ["run", str(tmp_path)], "directory")
    refused(capsys, ["run", str(tmp_path / ("x" * 300))], "too long")
    refused(capsys, ["run", "/dev/zero"], "not a regular file")
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe[run]")
    refused(capsys, ["run", str(bad)], "not UTF-8")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 5000 + "]" * 5000)
    refused(capsys, ["run", str(deep)], "nested")
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (2 << 20))
    refused(capsys, ["run", str(big)], "larger than")
    secret = tmp_path / "secret.toml"
    secret.write_text(SMALL)
    secret.chmod(0)
    if not os.access(secret, os.R_OK):  # root reads any file
        refused(capsys, ["run", str(secret)], "permission denied")


def test_nothing_is_created_above_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = scenario(tmp_path, SMALL)
    refused(capsys, ["run", s, "--out", str(tmp_path / "no" / "such" / "D")], "no such directory")
    assert not (tmp_path / "no").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    refused(capsys, ["run", s, "--out", str(mine)], "not an epcsim result")
    assert (mine / "thesis.tex").read_text() == "keep me"
    backing = scenario(tmp_path, SMALL.replace("requests = 3000", 'requests = 3000\ncontent = '
                                               f'true\nbacking_dir = "{tmp_path}/a/b"'))
    refused(capsys, ["run", backing], "run.backing_dir", "no such directory")
    assert not (tmp_path / "a").exists()


def test_a_report_never_replaces_the_results_it_reads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "D"
    assert main(["run", scenario(tmp_path, SMALL), "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    refused(capsys, ["report", str(out), "--out", str(out)], "holds the results")
    refused(capsys, ["report", str(out), "--out", str(tmp_path)], "--out")
    assert (out / "results.json").is_file() and (out / "summary.json").is_file()


def test_a_sweep_again_over_another_grid_keeps_only_its_points(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ('[base]\nkernel = { policy = "lru" }\nrun = { requests = 1000 }\n'
            'platform = { epc_size = "1MiB" }\n[[base.enclaves]]\nname = "a"\nsize = "2MiB"\n'
            'workload = "uniform"\n[grid]\n')
    sweep = tmp_path / "w.toml"
    out = tmp_path / "O"
    sweep.write_text(base + '"run.seed" = [1, 2, 3]\n')
    assert main(["sweep", str(sweep), "--out", str(out), "--json",
                 "--plot", "miss_ratio", "--x", "run.seed"]) == 0
    assert len(list((out / "points").iterdir())) == 3
    assert (out / "miss_ratio-vs-run.seed.png").exists()
    capsys.readouterr()
    sweep.write_text(base + '"run.seed" = [2, 4]\n')
    assert main(["sweep", str(sweep), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["points"] == 2
    assert len(list((out / "points").iterdir())) == 2
    assert not (out / "miss_ratio-vs-run.seed.png").exists()
    assert main(["report", str(out), "--json"]) == 0


def test_the_series_of_a_long_run_stays_bounded(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A microsecond step over a long run would take a sample per microsecond of virtual
    time; past MAX_SERIES the series keeps every other sample and doubles its step."""
    import numpy as np
    import pyarrow.parquet as pq

    from epcsim.sim import replay

    monkeypatch.setattr(replay, "MAX_SERIES", 4096)
    s = scenario(tmp_path, SMALL.replace("requests = 3000", "requests = 40000\n"
                                         "series_step_s = 0.000001"))
    assert main(["run", s, "--json", "--out", str(tmp_path / "D")]) == 0
    doc = json.loads(capsys.readouterr().out)
    series = pq.read_table(tmp_path / "D" / "series.parquet")
    t = series.column("time_s").to_numpy()
    assert doc["virtual_time_s"] / 1e-6 > 8 * 4096      # uncoarsened, it would overflow
    assert len(t) <= 4096 and np.all(np.diff(t) > 0)
    step = t[1] - t[0]
    assert step >= 8e-6 and np.allclose(np.diff(t), step)
    assert doc["virtual_time_s"] - t[-1] <= 2 * step
    assert series.column("faults").to_numpy()[-1] <= doc["faults"]


def test_a_scenario_keeps_the_faults_it_asks_for_and_says_when_it_keeps_fewer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet as pq

    s = scenario(tmp_path, SMALL.replace("requests = 3000", "requests = 3000\nfault_log = 50"))
    assert main(["run", s, "--json", "--out", str(tmp_path / "D")]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["fault_log"] == 50 and doc["faults"] > 50
    assert pq.read_table(tmp_path / "D" / "faults.parquet").num_rows == 50
    assert f"the first 50 of {doc['faults']:,} faults ([run] fault_log" in captured.err
    bad = scenario(tmp_path, SMALL.replace("requests = 3000", "requests = 3000\nfault_log = -1"),
                   "bad.toml")
    refused(capsys, ["run", bad], "run.fault_log")


def test_a_sweep_stopped_midway_is_no_result_until_resumed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from epcsim.sweep import execute

    sweep = tmp_path / "w.toml"
    sweep.write_text('[base]\nkernel = { policy = "lru" }\nrun = { requests = 1000 }\n'
                     'platform = { epc_size = "1MiB" }\n[[base.enclaves]]\nname = "a"\n'
                     'size = "2MiB"\nworkload = "uniform"\n[grid]\n"run.seed" = [1, 2, 3]\n')
    out = tmp_path / "O"
    compute = execute.compute_point
    done = []

    def stopped(*args, **kw):  # type: ignore[no-untyped-def]
        if len(done) == 1:
            raise KeyboardInterrupt
        done.append(args[0])
        return compute(*args, **kw)

    monkeypatch.setattr(execute, "compute_point", stopped)
    assert main(["sweep", str(sweep), "--out", str(out)]) == 130
    assert capsys.readouterr().err.strip() == "epcsim: interrupted"
    assert len(list((out / "points").iterdir())) == 1 and not (out / "sweep.parquet").exists()
    refused(capsys, ["report", str(out)], "results.json is missing")
    monkeypatch.setattr(execute, "compute_point", compute)
    assert main(["sweep", str(sweep), "--out", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["computed"], doc["reused"]) == (2, 1)
    assert main(["report", str(out), "--json"]) == 0


def test_the_json_schema_carries_the_bounds() -> None:
    from epcsim.workload.scenario import MAX_EPC, MAX_REQUESTS, Scenario

    defs = Scenario.model_json_schema()["$defs"]
    run = defs["RunSpec"]["properties"]
    assert (run["requests"]["minimum"], run["requests"]["maximum"]) == (1, MAX_REQUESTS)
    assert run["seed"]["maximum"] == (1 << 32) - 1
    epc = defs["PlatformSpec"]["properties"]["epc_size"]["anyOf"][0]
    assert (epc["minimum"], epc["maximum"]) == (256 << 10, MAX_EPC)
    assert "multiple of 4 KiB" in epc["description"]
    costs = defs["PlatformSpec"]["properties"]["costs"]["additionalProperties"]
    assert costs["minimum"] == 0 and costs["maximum"] == 10_000_000
    alpha = defs["EnclaveSpec"]["properties"]["alpha"]
    assert alpha["exclusiveMinimum"] == 0 and alpha["maximum"] == 10
    name = defs["EnclaveSpec"]["properties"]["name"]
    assert (name["minLength"], name["maxLength"]) == (1, 255)
