"""Seeded synthetic page-access traces.

Every generator returns a 1-D ``uint64`` array of 0-based page ids and draws its
randomness from ``np.random.default_rng(seed)`` alone, so the same arguments give the same
trace on every run and platform numpy supports. Bad arguments raise ``ValueError``.

``sequential_scan``
    0, 1, ..., pages-1, 0, 1, ... The scan has no randomness; ``seed`` is accepted so every
    generator can be called the same way, and does not change the output.
``uniform``
    Each request an independent uniform draw from ``[0, pages)``.
``zipf``
    Bounded Zipf over ``pages`` ranks: rank k (1-based) has probability
    ``k**-alpha / sum(j**-alpha)``, for any ``alpha > 0`` (``np.random.zipf`` is unbounded
    and needs ``alpha > 1``). Ranks are drawn by inverse CDF with ``searchsorted`` and then
    mapped to pages through a seeded permutation, so the hot pages are spread over the
    address range instead of sitting at pages 0, 1, 2, ...
``working_set_phases``
    The requests are cut into ``phases`` contiguous runs of near-equal length (the
    ``np.array_split`` lengths: the first ``requests % phases`` runs are one longer). Run i
    draws uniformly from its own window ``[start_i, start_i + working_set)``. Window starts
    are drawn from ``[0, pages - working_set]`` without repetition when there are enough
    starts, else with only consecutive phases guaranteed to differ. More than one phase
    needs ``working_set < pages``, since otherwise there is only one window.
``mix``
    Interleaves given traces: each output request picks part i with probability
    ``weight_i / sum(weights)`` and takes that part's next request, so each part keeps its
    own order (a scan stays a scan). A part that runs out starts again from its beginning.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "GENERATORS",
    "mix",
    "phase_lengths",
    "sequential_scan",
    "uniform",
    "working_set_phases",
    "zipf",
]

_SAMPLE_BLOCK = 1 << 22  # requests drawn per block in zipf, bounding its float scratch space


def _int(value: object, name: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        # Every bad argument is a ValueError, as the module promises.
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _check(pages: object, requests: object, seed: object) -> tuple[int, int, int]:
    p = _int(pages, "pages")
    if p <= 0:
        raise ValueError(f"pages must be > 0, got {p}")
    r = _int(requests, "requests")
    if r < 0:
        raise ValueError(f"requests must be >= 0, got {r}")
    s = _int(seed, "seed")
    if s < 0:
        raise ValueError(f"seed must be >= 0, got {s}")
    return p, r, s


def sequential_scan(pages: int, requests: int, *, seed: int = 0) -> np.ndarray:
    """0, 1, ..., pages-1 repeated, ``requests`` long."""
    p, r, _ = _check(pages, requests, seed)
    return np.arange(r, dtype=np.uint64) % np.uint64(p)


def uniform(pages: int, requests: int, *, seed: int) -> np.ndarray:
    """Independent uniform draws from ``[0, pages)``."""
    p, r, s = _check(pages, requests, seed)
    return np.random.default_rng(s).integers(0, p, size=r, dtype=np.uint64)


def zipf(pages: int, requests: int, *, alpha: float = 1.0, seed: int) -> np.ndarray:
    """Bounded Zipf(alpha) over ``pages`` ranks, hot ranks scattered over the pages."""
    p, r, s = _check(pages, requests, seed)
    if isinstance(alpha, (bool, np.bool_)):
        raise ValueError(f"alpha must be a number, got {alpha!r}")
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number, got {alpha!r}") from None
    if not math.isfinite(a) or a <= 0:
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    rng = np.random.default_rng(s)
    page_of_rank = rng.permutation(p).astype(np.uint64)
    # Weights relative to rank 1 (exp of a non-positive number) cannot overflow.
    cdf = np.cumsum(np.exp(-a * np.log(np.arange(1, p + 1, dtype=np.float64))))
    cdf /= cdf[-1]
    cdf[-1] = 1.0  # rng.random() < 1, so every draw lands on a rank
    out = np.empty(r, dtype=np.uint64)
    for start in range(0, r, _SAMPLE_BLOCK):
        stop = min(r, start + _SAMPLE_BLOCK)
        rank = np.searchsorted(cdf, rng.random(stop - start), side="right")
        out[start:stop] = page_of_rank[rank]
    return out


def working_set_phases(pages: int, requests: int, *, phases: int, working_set: int,
                       seed: int) -> np.ndarray:
    """``phases`` runs, each uniform over its own window of ``working_set`` pages."""
    p, r, s = _check(pages, requests, seed)
    n_phases = _int(phases, "phases")
    if n_phases < 1:
        raise ValueError(f"phases must be >= 1, got {n_phases}")
    ws = _int(working_set, "working_set")
    if ws < 1:
        raise ValueError(f"working_set must be >= 1, got {ws}")
    if ws > p:
        raise ValueError(f"working_set ({ws}) must be <= pages ({p})")
    n_starts = p - ws + 1
    if n_phases > 1 and n_starts == 1:
        raise ValueError(f"{n_phases} phases need different windows, so working_set ({ws}) "
                         f"must be < pages ({p})")
    rng = np.random.default_rng(s)
    if n_phases <= n_starts:
        starts = rng.choice(n_starts, size=n_phases, replace=False)
    else:
        # Too few windows to keep them all apart; at least never repeat the previous one.
        starts = np.empty(n_phases, dtype=np.int64)
        starts[0] = rng.integers(n_starts)
        steps = rng.integers(1, n_starts, size=n_phases - 1)
        for i, step in enumerate(steps, start=1):
            starts[i] = (starts[i - 1] + step) % n_starts
    out = np.empty(r, dtype=np.uint64)
    pos = 0
    for i, length in enumerate(phase_lengths(r, n_phases)):
        lo = int(starts[i])
        out[pos:pos + length] = rng.integers(lo, lo + ws, size=length, dtype=np.uint64)
        pos += length
    return out


def phase_lengths(requests: int, phases: int) -> list[int]:
    """Lengths of the runs :func:`working_set_phases` cuts ``requests`` into."""
    base, extra = divmod(requests, phases)
    return [base + (i < extra) for i in range(phases)]


def mix(parts: Sequence[tuple[np.ndarray, float]], requests: int, *, seed: int) -> np.ndarray:
    """Interleave traces by weight; each part keeps its order and restarts when exhausted."""
    r = _int(requests, "requests")
    if r < 0:
        raise ValueError(f"requests must be >= 0, got {r}")
    s = _int(seed, "seed")
    if s < 0:
        raise ValueError(f"seed must be >= 0, got {s}")
    if not isinstance(parts, Sequence) or len(parts) == 0:
        raise ValueError("parts must be a non-empty list of (trace, weight) pairs")
    arrays: list[np.ndarray] = []
    weights: list[float] = []
    for i, part in enumerate(parts):
        try:
            trace, weight = part
        except (TypeError, ValueError):
            raise ValueError(f"parts[{i}] must be a (trace, weight) pair") from None
        a = np.asarray(trace)
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise ValueError(f"parts[{i}] trace must be a 1-D integer array, got "
                             f"{a.dtype} with shape {a.shape}")
        if len(a) == 0:
            raise ValueError(f"parts[{i}] trace is empty")
        if a.dtype.kind == "i" and (a < 0).any():
            raise ValueError(f"parts[{i}] trace has negative page ids")
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"parts[{i}] weight must be a number, got {weight!r}") from None
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"parts[{i}] weight must be finite and >= 0, got {weight!r}")
        arrays.append(a.astype(np.uint64, copy=False))
        weights.append(w)
    total = sum(weights)
    if total <= 0:
        raise ValueError("at least one weight must be > 0")
    rng = np.random.default_rng(s)
    which = rng.choice(len(arrays), size=r, p=np.array(weights) / total)
    out = np.empty(r, dtype=np.uint64)
    for i, a in enumerate(arrays):
        at = np.flatnonzero(which == i)
        out[at] = a[np.arange(len(at)) % len(a)]
    return out


GENERATORS: dict[str, Callable[..., np.ndarray]] = {
    "scan": sequential_scan,
    "uniform": uniform,
    "zipf": zipf,
    "phases": working_set_phases,
    "mix": mix,
}
