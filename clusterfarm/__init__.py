"""clusterfarm: run one analysis over every year x ensemble member across the lab's machines."""

__version__ = "0.1.0"  # first: modules imported below read it

from clusterfarm.api import Farm, open_tracks
from clusterfarm.errors import ClusterFarmError, InputError
from clusterfarm.schedule import PyroTask, PyroTaskSchedule, Status, Task, TaskSchedule
from clusterfarm.settings import Settings
from clusterfarm.tasks.registry import TaskContext, task

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
