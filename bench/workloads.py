"""The three workloads of bench/dispatch.py as plain functions, for the baselines.

The same work as clusterfarm's built-in ``noop``, ``sleep`` and ``burn`` tasks.
"""

from __future__ import annotations

import time

from clusterfarm.tasks.builtin import burn_cpu

SLEEP_SECONDS = 0.05
BURN_SECONDS = 0.04


def noop(i: int) -> None:
    return None


def sleep(i: int) -> float:
    time.sleep(SLEEP_SECONDS)
    return SLEEP_SECONDS


def burn(i: int) -> int:
    return burn_cpu(BURN_SECONDS)
