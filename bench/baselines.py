"""Time the dispatch workloads on multiprocessing.Pool, a bare Pyro5 farm or Dask (2 workers).

Run by bench/dispatch.py (Dask in its own virtual environment, so it never becomes a project
dependency); prints one JSON object: tasks/s, makespans and start-up time.

The bare Pyro5 farm is what one writes in an afternoon (stormtracks' pyro_cluster): worker
processes exposing ``run(workload, i)`` over Pyro5 with serpent, and one thread per worker
in the manager making one call per task. No state, no child process, no batching.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import workloads

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


class BareWorker:
    """The bare farm's worker: runs the workload in its own process."""

    def run(self, name: str, i: int) -> Any:
        return getattr(workloads, name)(i)


def serve_bare_worker() -> None:
    from Pyro5.api import Daemon, expose

    daemon = Daemon(host="127.0.0.1")
    uri = daemon.register(expose(BareWorker), objectId="bare")
    print(uri, flush=True)
    daemon.requestLoop()


def with_pyro5(counts: dict[str, int]) -> dict[str, float]:
    import queue
    import subprocess
    import threading

    from Pyro5.api import Proxy

    def start() -> Any:
        processes = [
            subprocess.Popen([sys.executable, __file__, "serve"], stdout=subprocess.PIPE, text=True)
            for _ in range(WORKERS)
        ]
        uris = [p.stdout.readline().strip() for p in processes]  # type: ignore[union-attr]
        for uri in uris:
            with Proxy(uri) as proxy:
                proxy.run("noop", 0)  # ready means it has run something
        return processes, uris

    def run(farm: Any, fn: Callable[..., Any], items: Iterable[int]) -> None:
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in items:
            todo.put(i)

        def dispatch(uri: str) -> None:
            with Proxy(uri) as proxy:
                while True:
                    try:
                        i = todo.get_nowait()
                    except queue.Empty:
                        return
                    proxy.run(fn.__name__, i)

        threads = [threading.Thread(target=dispatch, args=(uri,)) for uri in farm[1]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def stop(farm: Any) -> None:
        for process in farm[0]:
            process.terminate()
            process.wait()

    return measure(start, run, stop, counts)


BASELINES = {"pool": with_multiprocessing, "pyro5": with_pyro5, "dask": with_dask}

if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve_bare_worker()
    else:
        which, counts_json = sys.argv[1], sys.argv[2]
        print(json.dumps(BASELINES[which](json.loads(counts_json))))
