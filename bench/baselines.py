"""Time the dispatch workloads on multiprocessing.Pool or Dask LocalCluster (2 workers).

Run by bench/dispatch.py (Dask in its own virtual environment, so it never becomes a project
dependency); prints one JSON object: tasks/s, makespans and start-up time.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads  # noqa: E402

WORKERS = 2


def measure(
    start: Callable[[], Any],
    run: Callable[[Any, Callable[..., Any], Iterable[int]], Any],
    stop: Callable[[Any], None],
    counts: dict[str, int],
) -> dict[str, float]:
    began = time.perf_counter()
    pool = start()
    results = {"startup_s": time.perf_counter() - began}
    try:
        for name, count in counts.items():
            began = time.perf_counter()
            run(pool, getattr(workloads, name), range(count))
            results[f"{name}_s"] = time.perf_counter() - began
    finally:
        stop(pool)
    return results


def with_multiprocessing(counts: dict[str, int]) -> dict[str, float]:
    import multiprocessing

    def start() -> Any:
        pool = multiprocessing.Pool(WORKERS)
        pool.map(workloads.noop, range(WORKERS))  # ready means it has run something
        return pool

    def run(pool: Any, fn: Callable[..., Any], items: Iterable[int]) -> None:
        list(pool.imap_unordered(fn, items, chunksize=1))  # one task per message, like a farm

    def stop(pool: Any) -> None:
        pool.close()
        pool.join()

    return measure(start, run, stop, counts)


def with_dask(counts: dict[str, int]) -> dict[str, float]:
    from dask.distributed import Client, LocalCluster

    def start() -> Any:
        cluster = LocalCluster(
            n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
        client.wait_for_workers(WORKERS)
        return client

    def run(client: Any, fn: Callable[..., Any], items: Iterable[int]) -> None:
        client.gather(client.map(fn, items, pure=False))

    def stop(client: Any) -> None:
        cluster = client.cluster
        client.close()
        cluster.close()

    return measure(start, run, stop, counts)


if __name__ == "__main__":
    which, counts_json = sys.argv[1], sys.argv[2]
    counts = json.loads(counts_json)
    print(json.dumps((with_dask if which == "dask" else with_multiprocessing)(counts)))
