"""The worker side: the worker daemon process and the task process it keeps.

``daemon`` is the process (set-up, signals, watchers, shut-down) around ``service``, the
Pyro5 object the manager calls (join, ``do_batch``, ``do_work``, checks, cancel);
``executor`` is the daemon's handle on its task process, and ``task_process`` is that
child's whole program (its loop, each cell run and measured with ``usage``). ``oom`` tells
an out-of-memory kill, ``walltime`` a batch job's end, ``task_output`` rotates what tasks
print. Imports nothing of the manager side: only :mod:`.wire`, :mod:`.tasks` and
:mod:`.config`.
"""
