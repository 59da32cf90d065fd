"""clusterfarm: run one analysis over every year x ensemble member across the lab's machines."""

from clusterfarm.errors import ClusterFarmError, InputError
from clusterfarm.schedule import PyroTask, PyroTaskSchedule, Status, Task, TaskSchedule
from clusterfarm.settings import Settings
from clusterfarm.tasks.registry import TaskContext, task

__version__ = "0.1.0"

__all__ = [
    "ClusterFarmError",
    "InputError",
    "PyroTask",
    "PyroTaskSchedule",
    "Settings",
    "Status",
    "Task",
    "TaskContext",
    "TaskSchedule",
    "__version__",
    "task",
]
