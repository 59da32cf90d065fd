"""clusterfarm: run one analysis over every year x ensemble member across the lab's machines."""

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING

from clusterfarm.config.settings import Settings
from clusterfarm.errors import ClusterFarmError, InputError
from clusterfarm.record.schedule import PyroTask, PyroTaskSchedule, Status, Task, TaskSchedule
from clusterfarm.tasks.registry import TaskContext, task

if TYPE_CHECKING:
    from clusterfarm.api import Farm, open_tracks


def __getattr__(name: str) -> object:
    # the API (and what it imports) loads on first use: workers and task processes never do,
    # and no module that imports ``clusterfarm`` for its version depends on the API
    if name in ("Farm", "open_tracks"):
        return getattr(importlib.import_module("clusterfarm.api"), name)
    raise AttributeError(f"module 'clusterfarm' has no attribute {name!r}")


__all__ = [
    "ClusterFarmError",
    "Farm",
    "InputError",
    "PyroTask",
    "PyroTaskSchedule",
    "Settings",
    "Status",
    "Task",
    "TaskContext",
    "TaskSchedule",
    "__version__",
    "open_tracks",
    "task",
]
