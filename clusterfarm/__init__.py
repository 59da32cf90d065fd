"""clusterfarm: run one analysis over every year x ensemble member across the lab's machines.

Importing the package loads nothing but its version: each name below is imported from its
module on first use, so a worker or a task process that only asks for ``__version__`` (or
``clusterfarm.task`` for a plugin) does not load the manager's or the API's code.
"""

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clusterfarm.api import Farm, open_tracks
    from clusterfarm.config.settings import Settings
    from clusterfarm.errors import ClusterFarmError, InputError
    from clusterfarm.record.schedule import Cell, Status, TaskSchedule
    from clusterfarm.tasks.registry import TaskContext, task

# public name -> the module that defines it
_WHERE = {
    "ClusterFarmError": "clusterfarm.errors",
    "InputError": "clusterfarm.errors",
    "Farm": "clusterfarm.api",
    "open_tracks": "clusterfarm.api",
    "Settings": "clusterfarm.config.settings",
    "Status": "clusterfarm.record.schedule",
    "Cell": "clusterfarm.record.schedule",
    "TaskSchedule": "clusterfarm.record.schedule",
    "TaskContext": "clusterfarm.tasks.registry",
    "task": "clusterfarm.tasks.registry",
}


def __getattr__(name: str) -> object:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'clusterfarm' has no attribute {name!r}")


__all__ = [
    "ClusterFarmError",
    "Farm",
    "InputError",
    "Settings",
    "Status",
    "Cell",
    "TaskContext",
    "TaskSchedule",
    "__version__",
    "open_tracks",
    "task",
]
