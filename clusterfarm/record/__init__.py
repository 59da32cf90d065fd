"""The run's record: the state database and what is read back from it.

Runs in the manager and in the commands that read a run (``status``, ``trace``, ``report``).
``schedule`` holds every cell and its status (pure, no I/O); ``state`` keeps the cells,
attempts and invocations in ``{run_dir}/state.sqlite`` (WAL, one writer thread);
``ledger`` decides which earlier results a rerun keeps; ``trace`` is the per-attempt
record; ``status`` reads a run back; ``manager_heartbeat`` tells a live run from a dead one;
``transaction`` wraps a block in one SQLite transaction. Uses :mod:`.wire` (error kinds,
usage figures) and :mod:`.config`; never the worker side.
"""
