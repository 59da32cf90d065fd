"""Tasks: the registry, the tasks that ship with clusterfarm, and a cell's files.

Both sides use it: the manager to check settings, versions and a run's inputs, the task
process to run the tasks. ``registry`` (``@task``, :class:`TaskContext`) and ``files`` (input
identity, output checksums) need only the standard library; ``builtin``, ``vort_track`` and
``year_summary`` load their science (:mod:`clusterfarm.analysis`: numpy, netCDF4) only inside
the task's own code, when a cell runs.
"""

from clusterfarm.tasks.registry import TaskContext, TaskSpec, get_task, task

__all__ = ["TaskContext", "TaskSpec", "get_task", "task"]
