"""Shared timing helper of the benchmark scripts (imported as a sibling module)."""

from __future__ import annotations

import time
from collections.abc import Callable


def time_interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Wall seconds of every run of each function, run round-robin (the starting function
    rotates each round) so that machine load hits every candidate alike. Each function runs
    `warmup` times first (caches, FFT plans, allocator)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def min_median(times: dict[str, list[float]]) -> dict[str, tuple[float, float]]:
    """(min, median) seconds per function of :func:`time_interleaved`'s result."""
    import statistics

    return {name: (min(ts), statistics.median(ts)) for name, ts in times.items()}
