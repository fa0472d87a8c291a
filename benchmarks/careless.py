"""A session as a careless (or hostile) user: about a hundred invocations of ``epcsim``.

Run: python benchmarks/careless.py [--json] [-k WORD]

Each invocation runs as its own process, as a user's would, with a time limit (120 s) and a
memory limit (8 GiB of address space), in a scratch directory. Each is expected either to
succeed or to be refused: exit status 2 and one line ``epcsim: error: ...``. Outcomes:

* ``ok``: expected to succeed, and did (exit 0, no traceback);
* ``refused``: expected to be refused, and was, in one line;
* ``unclear``: refused, but not in one ``epcsim: error:`` line;
* ``wrong``: exit 0 where a refusal was due, or a refusal where the input was fine, or a
  result that a check of the files found wrong;
* ``crashed``: a traceback, or any other exit status;
* ``hung``: still running at the time limit.

The table printed at the end is the one docs/bounds.md records.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120
MEMORY = 8 << 30

OK = ('[platform]\nepc_size = "1MiB"\n[kernel]\npolicy = "lru"\n[run]\nrequests = 2000\n'
      '[[enclaves]]\nname = "a"\nsize = "2MiB"\nworkload = "uniform"\n')
SGX = OK.replace('policy = "lru"', 'policy = "sgx"')
ENCLAVE = OK[OK.index("[[enclaves]]"):]
HEAD = OK[:OK.index("[[enclaves]]")]


def with_enclave(**keys: str) -> str:
    """OK with keys added to (or replacing those of) its enclave."""
    lines = [ln for ln in ENCLAVE.splitlines() if ln.split(" = ")[0] not in keys]
    return HEAD + "\n".join(lines + [f"{k} = {v}" for k, v in keys.items()]) + "\n"


def with_table(table: str, **keys: str) -> str:
    """OK with ``[table]`` keys set (the table replaced when OK has it)."""
    body = "".join(f"{k} = {v}\n" for k, v in keys.items())
    text = OK
    header = f"[{table}]\n"
    if header in text:
        start = text.index(header) + len(header)
        end = text.find("\n[", start)
        end = len(text) if end < 0 else end + 1
        old = {ln.split(" = ")[0]: ln for ln in text[start:end].splitlines() if ln}
        for k in keys:
            old.pop(k, None)
        merged = "".join(ln + "\n" for ln in old.values()) + body
        return text[:start] + merged + text[end:]
    return header + body + text


@dataclass
class Case:
    name: str
    argv: list[str]
    expect: str = "refuse"                     # "refuse" or "ok"
    files: dict[str, str | bytes] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path], str | None] | None = None   # a wrong result's description


def cases() -> list[Case]:
    c: list[Case] = []

    def run(name: str, text: str, expect: str = "refuse", extra: list[str] | None = None,
            **kw: object) -> None:
        c.append(Case(name, ["run", "s.toml", *(extra or [])], expect, {"s.toml": text},
                      **kw))  # type: ignore[arg-type]

    # --- scenario values
    run("size 1e309", with_enclave(size='"1e309"'))
    run("size nan", with_enclave(size='"nan"'))
    run("size inf float", with_enclave(size="inf"))
    run("size -1", with_enclave(size="-1"))
    run("size 0", with_enclave(size="0"))
    run("size 0.5 bytes", with_enclave(size='"0.5"'))
    run("size true", with_enclave(size="true"))
    run("size 100TiB", with_enclave(size='"100TiB"'))
    run("size huge int", with_enclave(size="9223372036854775807"))
    run("size with bad unit", with_enclave(size='"4XB"'))
    run("size a long string", with_enclave(size='"' + "9" * 5000 + '"'))
    run("epc_size 1e309", with_table("platform", epc_size='"1e309"'))
    run("epc_size 2TiB", with_table("platform", epc_size='"2TiB"'))
    run("epc_size not page multiple", with_table("platform", epc_size='"1000000"'))
    run("epc_size tiny", with_table("platform", epc_size='"4KiB"'))
    run("requests 1e12", with_table("run", requests="1000000000000"))
    run("requests 0", with_table("run", requests="0"))
    run("requests -5", with_table("run", requests="-5"))
    run("requests float", with_table("run", requests="1.5"))
    run("requests string", with_table("run", requests='"many"'))
    run("seed -1", with_table("run", seed="-1"))
    run("seed 2**63-1", with_table("run", seed="9223372036854775807"))
    run("seed ok", with_table("run", seed="4294967295"), "ok")
    run("series_step_s 0", with_table("run", series_step_s="0.0"))
    run("series_step_s nan", with_table("run", series_step_s="nan"))
    run("series_step_s 1e-300", with_table("run", series_step_s="1e-300"))
    run("ewb -1000000", with_table("platform.costs", ewb="-1000000"))
    run("ewb 1e18", with_table("platform.costs", ewb="1000000000000000000"))
    run("unknown cost", with_table("platform.costs", ewbb="10"))
    run("request cost 0", with_table("platform.costs", request="0"))
    run("cost as string", with_table("platform.costs", ewb='"fast"'))
    run("alpha inf", with_enclave(workload='"zipf"', alpha="inf"))
    run("alpha nan", with_enclave(workload='"zipf"', alpha="nan"))
    run("alpha 0", with_enclave(workload='"zipf"', alpha="0.0"))
    run("alpha 1e10", with_enclave(workload='"zipf"', alpha="1e10"))
    run("weight -inf", with_enclave(weight="-inf"))
    run("weight 1e308", with_enclave(weight="1e308"))
    run("phases 1e9", with_enclave(workload='"phases"', phases="1000000000"))
    run("working_set 1e309", with_enclave(workload='"phases"', working_set='"1e309"'))
    run("low above high", with_table("kernel", low="100", high="50"))
    run("high beyond EPC", with_table("kernel", high="100000"))
    run("batch 0", with_table("kernel", batch="0"))
    run("batch beyond EPC", with_table("kernel", batch="1000"))
    run("policy unknown", with_table("kernel", policy='"lfu"'))
    run("preset unknown", with_table("platform", preset='"epyc"'))
    run("nodes 0", with_table("platform", nodes="0"))
    run("nodes 100", with_table("platform", nodes="100"))
    run("empty name", with_enclave(name='""'))
    run("name with slash", with_enclave(name='"a/b"'))
    run("name dotdot", with_enclave(name='".."'))
    run("name control char", with_enclave(name='"a\\u0007b"'))
    run("name 10k chars", with_enclave(name='"' + "n" * 10000 + '"'))
    run("two enclaves one name", OK + ENCLAVE)
    run("unknown key", with_enclave(colour='"red"'))
    run("unknown table", OK + "[extra]\nx = 1\n")
    run("no enclaves", HEAD)
    run("cgroup relative", with_enclave(cgroup='"tenants/a"', epc_limit='"1MiB"'))
    run("cgroup dotdot", with_enclave(cgroup='"/a/../b"', epc_limit='"1MiB"'))
    run("cgroup 100 deep", with_enclave(cgroup='"' + "/x" * 100 + '"'))
    run("limit without cgroup", with_enclave(epc_limit='"1MiB"'))
    run("limit 1e309", with_enclave(cgroup='"/a"', epc_limit='"1e309"'))
    run("cgroup listed twice", SGX + '[[cgroups]]\npath = "/t"\n[[cgroups]]\npath = "//t/"\n')
    run("root cgroup limit", SGX + '[[cgroups]]\npath = "/"\nepc_limit = "1MiB"\n')
    pod = ('[[pods]]\nname = "redis"\nepc_request = "1MiB"\nepc_limit = "{}"\nsize = "2MiB"\n'
           'workload = "uniform"\n')
    cluster = '[cluster]\nnode_epc = "4MiB"\n[run]\nrequests = 2000\n'
    run("pods one name", cluster + pod.format("2MiB") + pod.format("1MiB"))
    run("pod request > node", cluster.replace('"4MiB"', '"1MiB"') + pod.format("2MiB")
        .replace('epc_request = "1MiB"', 'epc_request = "2MiB"'))
    run("nodes x node_epc huge", cluster.replace("[cluster]\n", "[cluster]\nnodes = 1024\n")
        .replace('"4MiB"', '"512GiB"') + pod.format("2MiB"))
    run("pod name with slash", cluster + pod.format("2MiB").replace('"redis"', '"../x"'))
    run("pods ok", cluster + pod.format("2MiB"), "ok")
    vm = '[[vms]]\nname = "v"\nepc_size = "{}"\n'
    run("vm epc 1e309", HEAD + vm.format("1e309"))
    run("vm epc 1TiB", HEAD + vm.format("1TiB"))
    run("vms one name", HEAD + vm.format("1MiB") + vm.format("1MiB"))
    run("vm vcpus 0", HEAD + vm.format("1MiB") + "vcpus = 0\n")
    run("vm enclaves one name", HEAD + vm.format("1MiB") +
        '[[vms.enclaves]]\nname = "e"\nsize = "1MiB"\n[[vms.enclaves]]\nname = "e"\n'
        'size = "1MiB"\n')
    run("vm start 1", HEAD + vm.format("1MiB") +
        '[[vms.enclaves]]\nname = "e"\nsize = "1MiB"\nstart = 1.0\n')
    run("guest_high beyond vEPC", with_table("virt", guest_high="100000") + vm.format("1MiB"))
    run("virt requests 1e12", with_table("virt", requests="1000000000000") + vm.format("1MiB"))
    run("trace missing", OK.replace('size = "2MiB"\nworkload = "uniform"\n',
                                    'trace = "nope.npy"\nformat = "npy"\n'))
    run("trace is a directory", OK.replace('size = "2MiB"\nworkload = "uniform"\n',
                                           'trace = "."\nformat = "npy"\n'))
    run("trace is /dev/zero", OK.replace('size = "2MiB"\nworkload = "uniform"\n',
                                         'trace = "/dev/zero"\nformat = "npy"\n'))
    c.append(Case("trace is a FIFO", ["run", "s.toml"], files={"s.toml": OK.replace(
        'size = "2MiB"\nworkload = "uniform"\n', 'trace = "fifo"\nformat = "npy"\n')},
        setup=lambda d: os.mkfifo(d / "fifo")))
    run("backing_dir parent missing", with_table("run", content="true",
                                                 backing_dir='"/nonexistent/x/y"'))
    run("backing_dir is a file", with_table("run", content="true", backing_dir='"s.toml"'))
    run("plain ok", OK, "ok")
    many = "".join(f'[[enclaves]]\nname = "e{i}"\nsize = "64GiB"\nworkload = "uniform"\n'
                   for i in range(20))
    run("footprints 1.25 TiB", HEAD + many)
    run("content mode, 2 GiB EPC", with_table("run", content="true").replace(
        'epc_size = "1MiB"', 'epc_size = "2GiB"'))
    run("1025 enclaves", HEAD + "".join(f'[[enclaves]]\nname = "e{i}"\nsize = "4KiB"\n'
                                        'workload = "scan"\n' for i in range(1025)))
    run("series_step_s 1e-6 long run", with_table("run", series_step_s="1e-6",
                                                  requests="200000"), "ok")

    # --- scenario files
    c.append(Case("scenario missing", ["run", "nope.toml"]))
    c.append(Case("scenario is a directory", ["run", "."]))
    c.append(Case("scenario is /dev/zero", ["run", "/dev/zero"]))
    c.append(Case("scenario is a FIFO", ["run", "fifo"], setup=lambda d: os.mkfifo(d / "fifo")))
    c.append(Case("scenario name too long", ["run", "x" * 300 + ".toml"]))
    c.append(Case("scenario not UTF-8", ["run", "s.toml"], files={"s.toml": b"\xff\xfe\x00["}))
    c.append(Case("scenario nested deep (TOML)", ["run", "s.toml"],
                  files={"s.toml": "a = " + "[" * 100000 + "]" * 100000 + "\n"}))
    c.append(Case("scenario nested deep (JSON)", ["run", "s.json"],
                  files={"s.json": "[" * 100000 + "]" * 100000}))
    c.append(Case("scenario JSON list", ["run", "s.json"], files={"s.json": "[1, 2]"}))
    c.append(Case("scenario JSON huge int", ["run", "s.json"], files={
        "s.json": '{"run": {"requests": 1' + "0" * 4000 + '}, "enclaves": [{"name": "a", '
                  '"size": "1MiB", "workload": "zipf"}]}'}))
    c.append(Case("scenario 3 MB", ["run", "s.toml"], files={"s.toml": "#" * (3 << 20)}))
    if os.geteuid() != 0:  # root reads a file of mode 000
        c.append(Case("scenario unreadable", ["run", "s.toml"], files={"s.toml": OK},
                      setup=lambda d: (d / "s.toml").chmod(0)))
    c.append(Case("scenario empty", ["run", "s.toml"], files={"s.toml": ""}))
    c.append(Case("scenario is binary npy", ["run", "s.toml"], files={"s.toml": bytes(range(256))}))

    # --- --out
    c.append(Case("--out parent missing", ["run", "s.toml", "--out", "no/such/dir"],
                  files={"s.toml": OK},
                  check=lambda d: "created no/" if (d / "no").exists() else None))
    c.append(Case("--out is a file", ["run", "s.toml", "--out", "s.toml"], files={"s.toml": OK}))
    c.append(Case("--out is the user's dir", ["run", "s.toml", "--out", "mine"],
                  files={"s.toml": OK, "mine/notes.txt": "keep"},
                  check=lambda d: None if (d / "mine/notes.txt").exists() else "deleted notes"))
    c.append(Case("--out empty string", ["run", "s.toml", "--out", ""], files={"s.toml": OK}))
    c.append(Case("--out is /", ["run", "s.toml", "--out", "/"], files={"s.toml": OK}))
    c.append(Case("--out fine", ["run", "s.toml", "--out", "D"], "ok", files={"s.toml": OK},
                  check=lambda d: None if (d / "D/results.json").exists() else "no index"))

    def reused(d: Path) -> None:
        (d / "a.toml").write_text(OK.replace("requests = 2000", "requests = 2000\nmrc = true"))
        subprocess.run([sys.executable, "-m", "epcsim", "run", "a.toml", "--out", "D"],
                       cwd=d, env=_env(), capture_output=True, check=True)

    c.append(Case("reused --out, no stale mrc", ["run", "s.toml", "--out", "D"], "ok",
                  files={"s.toml": OK}, setup=reused,
                  check=lambda d: "stale mrc.parquet" if (d / "D/mrc.parquet").exists()
                  else None))

    # --- report
    def partial(d: Path) -> None:
        (d / "R").mkdir()
        (d / "R/summary.json").write_text('{"scenario": "x", "faults": 1}')

    c.append(Case("report partial result", ["report", "R"], setup=partial))
    c.append(Case("report summary is a list", ["report", "R"], setup=lambda d: (
        (d / "R").mkdir(), (d / "R/summary.json").write_text("[1]"),
        (d / "R/results.json").write_text('{"format": 1, "kind": "run", "files": '
                                          '["summary.json"]}'))))
    c.append(Case("report missing dir", ["report", "nope"]))
    c.append(Case("report on a file", ["report", "s.toml"], files={"s.toml": OK}))
    c.append(Case("report empty dir", ["report", "E"], setup=lambda d: (d / "E").mkdir()))
    c.append(Case("report garbage parquet", ["report", "R"], setup=lambda d: (
        (d / "R").mkdir(), (d / "R/series.parquet").write_bytes(b"PAR1garbage"),
        (d / "R/results.json").write_text('{"format": 1, "kind": "run", "files": '
                                          '["series.parquet"]}'))))
    c.append(Case("report index garbage", ["report", "R"], setup=lambda d: (
        (d / "R").mkdir(), (d / "R/results.json").write_text("{{{"))))

    def result(d: Path) -> None:
        (d / "a.toml").write_text(OK)
        subprocess.run([sys.executable, "-m", "epcsim", "run", "a.toml", "--out", "R"],
                       cwd=d, env=_env(), capture_output=True, check=True)

    c.append(Case("report --out parent missing", ["report", "R", "--out", "x/y/z"], setup=result,
                  check=lambda d: "created x/" if (d / "x").exists() else None))
    c.append(Case("report fine", ["report", "R"], "ok", setup=result))
    c.append(Case("report --out onto its results", ["report", "R", "--out", "R"], setup=result,
                  check=lambda d: None if (d / "R/summary.json").exists() else "results lost"))
    c.append(Case("report --out above its results", ["report", "R", "--out", "."],
                  setup=result))

    # --- sweep
    sweep_ok = ('[base]\nkernel = { policy = "lru" }\nrun = { requests = 2000 }\n'
                'platform = { epc_size = "1MiB" }\n[[base.enclaves]]\nname = "a"\n'
                'size = "2MiB"\nworkload = "uniform"\n[grid]\n"run.seed" = [1, 2]\n')

    def sweep(name: str, text: str, expect: str = "refuse", extra: list[str] | None = None,
              **kw: object) -> None:
        c.append(Case(name, ["sweep", "w.toml", "--out", "O", *(extra or [])], expect,
                      {"w.toml": text}, **kw))  # type: ignore[arg-type]

    sweep("sweep ok", sweep_ok, "ok")
    sweep("sweep grid 1e309", sweep_ok.replace("[1, 2]", '["1e309"]').replace(
        '"run.seed"', '"platform.epc_size"'))
    sweep("sweep grid nan", sweep_ok.replace("[1, 2]", "[nan]").replace(
        '"run.seed"', '"enclaves.0.weight"'))
    sweep("sweep grid huge int", sweep_ok.replace("[1, 2]", "[9223372036854775807]"))
    sweep("sweep grid not a list", sweep_ok.replace("[1, 2]", "3"))
    sweep("sweep grid empty list", sweep_ok.replace("[1, 2]", "[]"))
    sweep("sweep grid unknown key", sweep_ok.replace('"run.seed"', '"run.speed"'))
    sweep("sweep grid index 99", sweep_ok.replace('"run.seed"', '"enclaves.99.size"'))
    sweep("sweep grid million points", sweep_ok.replace(
        '"run.seed" = [1, 2]', '"run.seed" = [' + ",".join(map(str, range(1000))) + ']\n'
        '"kernel.batch" = [' + ",".join(map(str, range(1, 1001))) + "]"))
    # Each value fits the base's 4 MiB EPC alone; 300 pages of watermark do not fit 512 KiB.
    sweep("sweep points clash", sweep_ok.replace('"1MiB"', '"4MiB"').replace(
        '"run.seed" = [1, 2]', '"kernel.high" = [64, 300]\n"platform.epc_size" = '
        '["512KiB", "4MiB"]'))
    sweep("sweep base is a FIFO", '[sweep]\nbase = "fifo"\n[grid]\n"run.seed" = [1]\n',
          setup=lambda d: os.mkfifo(d / "fifo"))
    sweep("sweep base missing", '[sweep]\nbase = "nope.toml"\n[grid]\n"run.seed" = [1]\n')
    sweep("sweep base a directory", '[sweep]\nbase = "."\n[grid]\n"run.seed" = [1]\n')
    sweep("sweep base not UTF-8", '[sweep]\nbase = "b.toml"\n[grid]\n"run.seed" = [1]\n',
          setup=lambda d: (d / "b.toml").write_bytes(b"\xff\xff"))
    sweep("sweep negative cost", sweep_ok.replace('"run.seed"', '"platform.costs.ewb"')
          .replace("[1, 2]", "[-1000000]"))
    sweep("sweep --plot bad x", sweep_ok, extra=["--plot", "faults", "--x", "nope"])
    sweep("sweep --workers 0", sweep_ok, extra=["--workers", "0"])
    sweep("sweep --workers 1e9", sweep_ok, extra=["--workers", "1000000000"])
    sweep("sweep --scheduler nonsense", sweep_ok, extra=["--scheduler", "nonsense"])
    sweep("sweep --scheduler closed port", sweep_ok, extra=["--scheduler", "tcp://127.0.0.1:1"])
    sweep("sweep --plot without --x", sweep_ok, extra=["--plot", "faults"])
    sweep("sweep a 64 GiB enclave", sweep_ok.replace('"run.seed" = [1, 2]',
                                                      '"enclaves.0.size" = ["64GiB"]'), "ok")
    c.append(Case("sweep is a FIFO", ["sweep", "fifo", "--out", "O"],
                  setup=lambda d: os.mkfifo(d / "fifo")))
    c.append(Case("sweep into user's dir", ["sweep", "w.toml", "--out", "mine"],
                  files={"w.toml": sweep_ok, "mine/notes.txt": "keep"},
                  check=lambda d: None if (d / "mine/notes.txt").exists() else "deleted notes"))

    # --- replay, selftest, demo, compile flags
    c.append(Case("replay epc-pages 1e12", ["replay", "t.npy", "--format", "npy",
                                            "--epc-pages", "1000000000000"], setup=_npy))
    c.append(Case("replay epc-pages -1", ["replay", "t.npy", "--format", "npy",
                                          "--epc-pages", "-1"], setup=_npy))
    c.append(Case("replay fine", ["replay", "t.npy", "--format", "npy", "--epc-pages", "64",
                                  "--policy", "lru", "--out", "R"], "ok", setup=_npy))
    c.append(Case("replay columns huge", ["replay", "t.csv", "--format", "csv", "--epc-pages",
                                          "64", "--columns", "obj=99999999999999999999"],
                  files={"t.csv": "1\n2\n"}))
    c.append(Case("replay columns obj=0", ["replay", "t.csv", "--format", "csv", "--epc-pages",
                                           "64", "--columns", "obj=0"],
                  files={"t.csv": "1\n2\n"}))
    c.append(Case("replay csv of junk", ["replay", "t.csv", "--format", "csv", "--epc-pages",
                                         "64"], files={"t.csv": "x,y\n\u00e9,\n"}))
    c.append(Case("replay trace FIFO", ["replay", "fifo", "--format", "npy", "--epc-pages",
                                        "64"], setup=lambda d: os.mkfifo(d / "fifo")))
    c.append(Case("replay platform unknown", ["replay", "t.npy", "--format", "npy",
                                              "--epc-pages", "64", "--platform", "x"],
                  setup=_npy))
    c.append(Case("replay --out parent missing", ["replay", "t.csv", "--format", "csv",
                                                  "--epc-pages", "64", "--out", "a/b/c"],
                  files={"t.csv": "1\n2\n"}))
    c.append(Case("selftest epc 1e309", ["selftest", "--epc-size", "1e309"]))
    c.append(Case("selftest epc 1TiB", ["selftest", "--epc-size", "1TiB"]))
    c.append(Case("selftest epc nan", ["selftest", "--epc-size", "nan"]))
    c.append(Case("selftest unknown test", ["selftest", "-k", "nope"]))
    c.append(Case("demo seed -1", ["demo", "--walk", "--seed", "-1"]))
    c.append(Case("demo seed 2**70", ["demo", "--walk", "--seed", str(1 << 70)]))
    c.append(Case("demo --out parent missing", ["demo", "--out", "a/b/c"]))
    c.append(Case("compile --workers 0", ["compile", "--workers", "0"]))
    c.append(Case("compile --workers 1e6", ["compile", "--workers", "1000000"]))
    c.append(Case("unknown command", ["frobnicate"]))
    return c


def _npy(d: Path) -> None:
    import numpy as np

    np.save(d / "t.npy", np.arange(5000, dtype=np.int64) % 300)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["COLUMNS"] = "100"
    return env


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def attempt(case: Case, scratch: Path) -> tuple[str, str]:
    d = scratch / f"case{abs(hash(case.name)) % 10**8}"
    d.mkdir()
    for rel, body in case.files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, bytes):
            p.write_bytes(body)
        else:
            p.write_text(body)
    if case.setup:
        case.setup(d)
    try:
        r = subprocess.run([sys.executable, "-m", "epcsim", *case.argv], cwd=d, env=_env(),
                           capture_output=True, text=True, timeout=TIMEOUT,
                           preexec_fn=_limit, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "hung", f"no answer in {TIMEOUT} s"
    err = r.stderr.strip()
    lines = err.splitlines()
    if "Traceback" in err or r.returncode not in (0, 2):
        return "crashed", (lines[-1] if lines else f"exit {r.returncode}")
    if r.returncode == 2:
        clean = len(lines) == 1 and lines[0].startswith("epcsim: error: ")
        if not clean:
            return "unclear", err[:200]
        if case.expect == "ok":
            return "wrong", f"refused a good input: {lines[0]}"
        problem = case.check(d) if case.check else None
        return ("wrong", problem) if problem else ("refused", lines[0])
    if case.expect == "refuse":
        return "wrong", "exit 0 where a refusal was due"
    problem = case.check(d) if case.check else None
    return ("wrong", problem) if problem else ("ok", "")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("-k", default="")
    args = ap.parse_args()
    chosen = [c for c in cases() if args.k in c.name]
    outcomes: Counter[str] = Counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="epcsim-careless-") as tmp:
        for case in chosen:
            t0 = time.perf_counter()
            kind, detail = attempt(case, Path(tmp))
            outcomes[kind] += 1
            rows.append({"case": case.name, "outcome": kind, "detail": detail,
                         "seconds": round(time.perf_counter() - t0, 1)})
            if not args.json:
                print(f"{kind:8} {case.name:32} {detail[:110]}", flush=True)
        # Unreadable files were made so by a case; let the directory go.
        for p in Path(tmp).rglob("*"):
            if not p.is_symlink():
                p.chmod(0o700)
    summary = {"inputs": len(chosen), **{k: outcomes[k] for k in
               ("ok", "refused", "unclear", "wrong", "crashed", "hung")}}
    if args.json:
        print(json.dumps({"summary": summary, "cases": rows}, indent=1))
    else:
        print(json.dumps(summary))
    return 0 if summary["ok"] + summary["refused"] == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
