"""Synthetic trace generators: determinism, shape of the distributions, validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.workload import (
    GENERATORS,
    mix,
    phase_lengths,
    sequential_scan,
    uniform,
    working_set_phases,
    zipf,
)

RANDOM = {
    "uniform": lambda seed: uniform(500, 5000, seed=seed),
    "zipf": lambda seed: zipf(500, 5000, alpha=0.7, seed=seed),
    "phases": lambda seed: working_set_phases(500, 5000, phases=4, working_set=50, seed=seed),
    "mix": lambda seed: mix([(np.arange(100), 1.0), (uniform(50, 70, seed=1) + 1000, 2.0)],
                            5000, seed=seed),
}


def test_registry():
    assert GENERATORS == {"scan": sequential_scan, "uniform": uniform, "zipf": zipf,
                          "phases": working_set_phases, "mix": mix}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_same_seed_same_trace_other_seed_other_trace(name):
    make = RANDOM[name]
    a, b, c = make(7), make(7), make(8)
    assert a.dtype == np.uint64 and a.shape == (5000,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("make", [
    lambda r: sequential_scan(10, r),
    lambda r: uniform(10, r, seed=0),
    lambda r: zipf(10, r, seed=0),
    lambda r: working_set_phases(10, r, phases=3, working_set=4, seed=0),
    lambda r: mix([(np.arange(3), 1.0)], r, seed=0),
])
def test_zero_requests(make):
    out = make(0)
    assert out.dtype == np.uint64 and out.shape == (0,)


def test_scan_order():
    out = sequential_scan(4, 10)
    assert out.dtype == np.uint64
    assert out.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    np.testing.assert_array_equal(sequential_scan(4, 10, seed=99), out)
    assert sequential_scan(1, 3).tolist() == [0, 0, 0]


def test_uniform_covers_range_evenly():
    out = uniform(20, 100_000, seed=3)
    assert out.min() == 0 and out.max() == 19
    counts = np.bincount(out.astype(np.int64), minlength=20)
    # Each count is Binomial(1e5, 0.05): sd ~ 69; 6 sd is far outside chance.
    assert np.all(np.abs(counts - 5000) < 6 * 69)


@pytest.mark.parametrize("alpha", [0.3, 0.8, 1.0, 1.5])
def test_zipf_shares_follow_the_law(alpha):
    pages, n = 1000, 400_000
    out = zipf(pages, n, alpha=alpha, seed=5)
    assert out.min() >= 0 and out.max() < pages
    counts = np.sort(np.bincount(out.astype(np.int64), minlength=pages))[::-1]
    p = np.arange(1, pages + 1, dtype=float) ** -alpha
    p /= p.sum()
    for k in range(3):  # the three hottest ranks
        sd = np.sqrt(p[k] * (1 - p[k]) / n)
        assert abs(counts[k] / n - p[k]) < 6 * sd + 1e-4, (k, counts[k] / n, p[k])


def test_zipf_hot_pages_are_spread():
    out = zipf(10_000, 200_000, alpha=1.2, seed=2)
    counts = np.bincount(out.astype(np.int64), minlength=10_000)
    hottest = np.argsort(counts)[::-1][:10]
    assert set(hottest.tolist()) != set(range(10))
    assert hottest.max() - hottest.min() > 1000


def test_zipf_extreme_alpha():
    assert set(zipf(50, 1000, alpha=500.0, seed=1).tolist()) == {
        int(zipf(50, 1, alpha=500.0, seed=1)[0])}  # all mass on rank 1
    tiny = zipf(50, 50_000, alpha=1e-9, seed=1)  # effectively uniform, still valid
    assert len(np.unique(tiny)) == 50


def test_phases_stay_in_their_windows():
    pages, n, phases, ws = 1000, 20_003, 5, 40
    out = working_set_phases(pages, n, phases=phases, working_set=ws, seed=4)
    lengths = phase_lengths(n, phases)
    assert lengths == [4001, 4001, 4001, 4000, 4000] and sum(lengths) == n
    bounds = np.cumsum([0] + lengths)
    windows = []
    for i in range(phases):
        run = out[bounds[i]:bounds[i + 1]].astype(np.int64)
        lo, hi = int(run.min()), int(run.max())
        assert hi - lo < ws and hi < pages
        assert len(np.unique(run)) == ws  # 4000 draws over 40 pages: every page shows up
        windows.append(lo)
    assert len(set(windows)) == phases  # different windows


def test_phases_more_than_windows_change_each_phase():
    out = working_set_phases(6, 600, phases=30, working_set=5, seed=1)
    starts = [int(out[i * 20:(i + 1) * 20].min()) for i in range(30)]
    # Only starts 0 and 1 exist; consecutive phases must differ, so they alternate.
    assert all(a != b for a, b in itertools.pairwise(starts))


def test_phases_single_phase_may_use_all_pages():
    out = working_set_phases(8, 1000, phases=1, working_set=8, seed=0)
    assert set(out.tolist()) == set(range(8))


@given(pages=st.integers(1, 300), requests=st.integers(0, 400), phases=st.integers(1, 12),
       ws=st.integers(1, 300), seed=st.integers(0, 2**32))
@settings(max_examples=60, deadline=None)
def test_phases_property(pages, requests, phases, ws, seed):
    if ws > pages or (phases > 1 and ws == pages):
        with pytest.raises(ValueError):
            working_set_phases(pages, requests, phases=phases, working_set=ws, seed=seed)
        return
    out = working_set_phases(pages, requests, phases=phases, working_set=ws, seed=seed)
    assert out.shape == (requests,) and (requests == 0 or out.max() < pages)
    bounds = np.cumsum([0] + phase_lengths(requests, phases))
    for i in range(phases):
        run = out[bounds[i]:bounds[i + 1]]
        if len(run):
            assert int(run.max()) - int(run.min()) < ws


def test_mix_keeps_part_order_and_weights():
    scan = np.arange(1000, dtype=np.uint64)
    other = np.arange(10_000, 10_500, dtype=np.uint64)
    out = mix([(scan, 1.0), (other, 3.0)], 40_000, seed=6)
    from_scan = out[out < 1000]
    from_other = out[out >= 10_000]
    assert len(from_scan) + len(from_other) == len(out)
    # Each part is consumed in order, restarting when it runs out.
    np.testing.assert_array_equal(from_scan, np.resize(scan, len(from_scan)))
    np.testing.assert_array_equal(from_other, np.resize(other, len(from_other)))
    share = len(from_scan) / len(out)
    assert abs(share - 0.25) < 6 * np.sqrt(0.25 * 0.75 / len(out))


def test_mix_zero_weight_part_never_appears():
    out = mix([(np.array([1]), 1.0), (np.array([2]), 0.0)], 1000, seed=0)
    assert set(out.tolist()) == {1}


@pytest.mark.parametrize("call, what", [
    (lambda: uniform(0, 10, seed=0), "pages must be > 0"),
    (lambda: uniform(-3, 10, seed=0), "pages must be > 0"),
    (lambda: uniform(10, -1, seed=0), "requests must be >= 0"),
    (lambda: sequential_scan(0, 1), "pages must be > 0"),
    (lambda: sequential_scan(2.5, 1), "pages must be an integer"),
    (lambda: uniform(True, 1, seed=0), "pages must be an integer"),
    (lambda: uniform(10, 10, seed=-1), "seed must be >= 0"),
    (lambda: uniform(10, 10, seed=None), "seed must be an integer"),
    (lambda: zipf(10, 10, alpha=0, seed=0), "alpha must be a finite number > 0"),
    (lambda: zipf(10, 10, alpha=-1.0, seed=0), "alpha must be a finite number > 0"),
    (lambda: zipf(10, 10, alpha=float("nan"), seed=0), "alpha"),
    (lambda: zipf(10, 10, alpha=float("inf"), seed=0), "alpha"),
    (lambda: zipf(10, 10, alpha="x", seed=0), "alpha must be a number"),
    (lambda: working_set_phases(10, 5, phases=2, working_set=11, seed=0),
     r"working_set \(11\) must be <= pages \(10\)"),
    (lambda: working_set_phases(10, 5, phases=2, working_set=10, seed=0),
     "need different windows"),
    (lambda: working_set_phases(10, 5, phases=0, working_set=2, seed=0), "phases must be >= 1"),
    (lambda: working_set_phases(10, 5, phases=2, working_set=0, seed=0),
     "working_set must be >= 1"),
    (lambda: mix([], 5, seed=0), "non-empty"),
    (lambda: mix([(np.arange(3), -1.0)], 5, seed=0), "weight must be finite and >= 0"),
    (lambda: mix([(np.arange(3), 0.0)], 5, seed=0), "at least one weight"),
    (lambda: mix([(np.arange(0), 1.0)], 5, seed=0), "empty"),
    (lambda: mix([(np.array([1.5]), 1.0)], 5, seed=0), "1-D integer array"),
    (lambda: mix([(np.array([-1]), 1.0)], 5, seed=0), "negative"),
    (lambda: mix([np.arange(3)], 5, seed=0), r"\(trace, weight\) pair"),
    (lambda: mix([(np.arange(3), 1.0)], -2, seed=0), "requests must be >= 0"),
])
def test_validation(call, what):
    with pytest.raises(ValueError, match=what):
        call()


def test_numpy_integer_arguments_are_accepted():
    out = uniform(np.int64(10), np.uint32(5), seed=np.int64(1))
    np.testing.assert_array_equal(out, uniform(10, 5, seed=1))
