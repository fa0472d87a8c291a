"""The program workloads: deterministic traces, footprints, and access counts that follow
from each algorithm on small inputs."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from epcsim.workload import programs as P
from epcsim.workload.programs import PAGE, PROGRAMS, ProgramError, accesses, generate

SMALL = 256 << 10


def test_the_eight_programs_are_registered() -> None:
    assert set(PROGRAMS) == {"btree", "hashjoin", "bfs", "pagerank", "kvstore", "sort",
                             "matmul", "cipher"}
    for prog in PROGRAMS.values():
        names = [q.name for q in prog.params + P.COMMON]
        assert len(names) == len(set(names))
        for q in prog.params + P.COMMON:
            assert q.lo <= q.default <= q.hi, (prog.name, q.name)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_same_seed_same_trace_other_seed_other_trace(name: str) -> None:
    a = generate(name, SMALL, seed=5, accesses=20_000)
    b = generate(name, SMALL, seed=5, accesses=20_000)
    c = generate(name, SMALL, seed=6, accesses=20_000)
    assert a.page.dtype == np.int64 and a.write.dtype == np.bool_ and len(a.page) > 0
    assert np.array_equal(a.page, b.page) and np.array_equal(a.write, b.write)
    assert np.array_equal(a.thread, b.thread) and a.counts == b.counts
    if name in ("sort", "cipher", "matmul"):
        # their page order does not depend on the data; the data do
        assert a.info != c.info
    else:
        assert not np.array_equal(a.page, c.page) or not np.array_equal(a.write, c.write)


# Fraction of the laid-out pages a whole run touches: kvstore leaves the rest of each
# size class's last slab untouched, BFS the end of the queue it never reaches, the B-tree
# the tenth of its nodes kept for the splits of inserts.
TOUCHED = {"kvstore": 0.8, "bfs": 0.9, "btree": 0.9}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("size", [SMALL, 1 << 20])
def test_footprint_is_the_size_given(name: str, size: int) -> None:
    tr = generate(name, size, seed=1, accesses=300_000)
    assert tr.footprint_pages <= size // PAGE
    assert tr.footprint_pages >= 0.95 * size // PAGE
    assert 0 <= tr.page.min() and tr.page.max() < tr.footprint_pages
    # regions tile the space in order
    first = 0
    for _, start, pages in tr.regions:
        assert start == first and pages > 0
        first += pages
    assert len(np.unique(tr.page)) >= TOUCHED.get(name, 0.97) * tr.footprint_pages


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_accesses_bound_the_trace(name: str) -> None:
    tr = generate(name, 1 << 20, seed=1, accesses=777)
    assert len(tr.page) == min(777, len(tr.page)) and len(tr.page) <= 777
    pages, writes = accesses(name, SMALL, 5000, seed=3)
    assert pages.shape == writes.shape == (5000,)


def test_a_program_that_ends_is_run_again_to_fill_the_accesses() -> None:
    whole = generate("cipher", SMALL, seed=1, passes=1)
    assert whole.complete
    pages, writes = accesses("cipher", SMALL, 3 * len(whole.page) + 5, seed=1, passes=1)
    n = len(whole.page)
    assert np.array_equal(pages[:n], whole.page) and np.array_equal(pages[n:2 * n], whole.page)
    assert np.array_equal(writes[2 * n:3 * n], whole.write)


def test_window_of_recent_pages() -> None:
    E = P._emitter(100, 2, 1, 2)
    for t, addr, w in [(0, 0, False), (0, 10, True), (0, PAGE, False), (0, 5, False),
                       (1, 0, False), (0, 2 * PAGE, False), (0, 7, True), (1, 3, True)]:
        P._acc(E, t, 0, addr, w, 1)
    n = int(E[3][0])
    # page 0 stays in thread 0's window of two (it is used again before page 2 comes), so
    # its later store marks its first record; thread 1 has a window of its own
    assert E[0][:n].tolist() == [0, 1, 0, 2]
    assert E[1][:n].tolist() == [True, False, True, False]
    assert E[2][:n].tolist() == [0, 0, 1, 0]
    assert E[5][0].tolist() == [5, 3]


def test_a_full_trace_stops_recording() -> None:
    E = P._emitter(2, 1, 1, 1)
    for p in range(5):
        P._acc(E, 0, 0, p * PAGE, False, 1)
    assert int(E[3][0]) == 2 and E[3][2] == 1 and E[0].tolist() == [0, 1]


def test_cipher_is_chacha20_and_its_counts_follow_the_buffer() -> None:
    out = np.zeros(16, np.int64)
    P._chacha_block(np.zeros(8, np.int64), 0, out)
    # RFC 8439 appendix A.1, test vector 1 (all-zero key, nonce and counter)
    assert out[:4].tolist() == [0xADE0B876, 0x903DF1A0, 0xE56A5D40, 0x28BD8653]
    pages = 15
    tr = generate("cipher", PAGE * (1 + pages), seed=1, chunk=PAGE, passes=2)
    assert [r[:3] for r in tr.regions] == [("context", 0, 1), ("buffer", 1, pages)]
    # the context page stays in the window; each buffer page is one record a pass, and
    # every record is written (the context's counter is stored after each update)
    assert len(tr.page) == 1 + pages * 2 and tr.write.all()
    chunks = pages * 2
    assert tr.counts["context"] == (5 * chunks, chunks)
    # counts are of 8-byte words: 512 a page
    assert tr.counts["buffer"] == (512 * pages * 2, 512 * pages * 2)


def test_sort_counts_one_load_and_one_store_per_key_per_pass() -> None:
    tr = generate("sort", 64 << 10, seed=1)
    n = tr.info["n"]
    assert n == 4096 and tr.info["sorted"]
    passes = 12   # log2(4096), even, so the keys end in data: no copy back
    reads = tr.counts["data"][0] + tr.counts["aux"][0]
    writes = tr.counts["data"][1] + tr.counts["aux"][1]
    assert reads == passes * n and writes == n + passes * n


@pytest.mark.parametrize("block", [64, 10])
def test_matmul_counts_are_the_triple_loop(block: int) -> None:
    tr = generate("matmul", 64 << 10, seed=1, block=block)
    n = tr.info["n"]
    assert n == 50 and tr.info["verified"]
    nb = -(-n // min(block, n))
    assert tr.counts["A"] == (n * n * nb, n * n)
    assert tr.counts["B"] == (n ** 3, n * n)
    assert tr.counts["C"] == (n ** 3, n ** 3 + n * n)


def test_btree_bulk_load_by_hand() -> None:
    # 256-byte nodes: 2d - 1 = 9 keys, d = 5; fill 0.5 -> 4 keys a node. 20 keys make
    # leaves of 4, 4, 4 and 5 keys (the last single key joins the last leaf) and a root
    # holding the 3 keys promoted between them: 5 nodes, all on page 0.
    assert P._bt_nodes(20, 4) == 5
    tr = generate("btree", 64 << 10, seed=1, node=256, fill=0.5, keys=20, insert_ratio=0.0,
                  accesses=2000)
    assert tr.info["degree"] == 5 and tr.info["per_node"] == 4
    assert tr.info["nodes_used"] == 5 and tr.info["root"] == 4
    assert set(tr.page.tolist()) == {0} and tr.write.sum() == 1
    assert tr.info["lookups"] > 100 and tr.info["found"] == tr.info["lookups"]


def test_btree_inserts_split_nodes_and_every_key_stays_found() -> None:
    tr = generate("btree", SMALL, seed=2, node=512, keys=50, insert_ratio=0.7,
                  accesses=200_000)
    assert tr.info["keys"] > 1000 and tr.info["nodes_used"] > P._bt_nodes(50, 14)
    assert tr.info["found"] == tr.info["lookups"] > 0


@pytest.mark.parametrize("match", [1.0, 0.0])
def test_hashjoin_counts(match: float) -> None:
    tr = generate("hashjoin", SMALL, seed=3, match=match, ratio=4)
    r, s = tr.info["r"], tr.info["s"]
    assert s == 4 * r and tr.complete
    assert tr.counts["R"] == (2 * r, 2 * r)        # loaded, then read by the build
    assert tr.counts["S"] == (2 * s, 2 * s)        # loaded, then read by the probe
    assert tr.counts["table"][1] == 2 * r          # one slot written per R tuple
    # every probe reads at least one slot, every build at least one
    assert tr.counts["table"][0] >= r + s
    assert tr.info["matches"] == (s if match == 1.0 else 0)
    assert tr.counts["output"] == (0, 2 * tr.info["matches"])


def _graph(size: int, seed: int, per_vertex: int, margin: int) -> tuple[int, np.ndarray,
                                                                       np.ndarray]:
    nv, src, dst, _ = P._graph(size - margin * PAGE, seed, {"degree": 16}, per_vertex, 4)
    return nv, src, dst


def test_bfs_counts_match_a_plain_bfs() -> None:
    tr = generate("bfs", SMALL, seed=4, sources=2)
    nv, src, dst = _graph(SMALL, 4, 16, 5)
    adj: list[list[int]] = [[] for _ in range(nv)]
    for u, v in zip(src.tolist(), dst.tolist(), strict=True):
        adj[u].append(v)
    scanned, reached = 0, []
    for root in tr.info["roots"]:
        seen = {root}
        q = deque([root])
        while q:
            u = q.popleft()
            scanned += len(adj[u])
            for v in adj[u]:
                if v not in seen:
                    seen.add(v)
                    q.append(v)
        reached.append(len(seen))
    assert tr.info["reached"] == reached and max(reached) > nv // 2
    assert tr.counts["queue"] == (sum(reached), sum(reached))
    edges = tr.info["edges"]
    assert tr.counts["targets"][0] == scanned
    assert tr.counts["targets"][1] == -(-4 * edges // 8)   # the load: one pass of stores


def test_pagerank_ranks_and_counts() -> None:
    tr = generate("pagerank", SMALL, seed=5, iterations=3)
    nv, src, dst = _graph(SMALL, 5, 28, 6)
    assert tr.info["vertices"] == nv and tr.info["iterations"] == 3
    outdeg = np.maximum(np.bincount(src, minlength=nv), 1)
    r = np.full(nv, 1.0 / nv)
    for _ in range(3):
        new = np.zeros(nv)
        np.add.at(new, dst, r[src] / outdeg[src])
        r = 0.15 / nv + 0.85 * new
    assert np.allclose(tr.info["ranks"], r, rtol=1e-9, atol=0)
    e = len(src)
    assert tr.counts["sources"][0] == 3 * e
    assert tr.counts["rank"][0] + tr.counts["next"][0] == 3 * e
    # three iterations write next, rank, next (after the load's stores of rank)
    assert tr.counts["next"][1] == 2 * nv


def test_kvstore_counts() -> None:
    tr = generate("kvstore", SMALL, seed=6, accesses=50_000, get_ratio=0.75)
    keys, gets, sets = tr.info["keys"], tr.info["gets"], tr.info["sets"]
    assert keys > 100 and tr.info["missing"] == 0
    # load: each key reads and writes its bucket; each request reads its bucket
    assert tr.counts["buckets"] == (keys + gets + sets, keys)
    assert 0.7 < gets / (gets + sets) < 0.8


def test_kvstore_keys_are_zipf() -> None:
    tr = generate("kvstore", 1 << 20, seed=6, accesses=100_000, alpha=1.2, tlb=1)
    served = tr.page[tr.page >= tr.regions[1][1]]
    _, counts = np.unique(served, return_counts=True)
    top = np.sort(counts)[::-1]
    # a few hot items take a large share of the requests
    assert top[:10].sum() > 0.3 * top.sum()


def test_threads_interleave() -> None:
    tr = generate("matmul", SMALL, seed=1, threads=2, block=16, accesses=50_000)
    assert set(tr.thread.tolist()) == {0, 1}
    one = generate("matmul", SMALL, seed=1, threads=1, block=16, accesses=50_000)
    assert set(one.thread.tolist()) == {0}


@pytest.mark.parametrize("name, params, where", [
    ("btree", {"nodes": 1}, "nodes: btree has no parameter"),
    ("btree", {"insert_ratio": 2}, "insert_ratio: must be in [0, 1]"),
    ("cipher", {"chunk": 100}, "chunk: a multiple of 64"),
    ("kvstore", {"alpha": "x"}, "alpha: not a number"),
    ("sort", {"accesses": 0}, "accesses: must be in"),
    ("matmul", {"threads": True}, "threads: an integer"),
    ("nope", {}, "workload: no workload 'nope'"),
])
def test_bad_parameters_name_themselves(name: str, params: dict, where: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ProgramError) as e:
        generate(name, SMALL, **params)
    assert str(e.value).startswith(where.split(":")[0] + ":") and where in str(e.value)


def test_bad_sizes() -> None:
    with pytest.raises(ProgramError, match=r"^size: must be from"):
        generate("sort", 4096)
    with pytest.raises(ProgramError, match=r"^size:"):
        generate("sort", "12XB")
    assert generate("sort", "64KiB").info["n"] == 4096
