"""Tasks: the registry and the tasks that ship with clusterfarm."""

from clusterfarm.tasks.registry import TaskContext, TaskSpec, get_task, task

__all__ = ["TaskContext", "TaskSpec", "get_task", "task"]
