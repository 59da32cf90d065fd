"""Tasks that misbehave on purpose, for the tests (listed in [tasks] modules)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from clusterfarm import InputError, task
from clusterfarm.tasks.registry import TaskContext


@task("fail_always", version="1", writes_output=False)
def fail_always(year: int, member: int, ctx: TaskContext) -> None:
    raise RuntimeError(f"boom in {year} m{member}")


@task("bad_input", version="1", writes_output=False)
def bad_input(year: int, member: int, ctx: TaskContext) -> None:
    raise InputError(f"{ctx.data_dir}/missing_{year}.nc: file not found")


@task("crash", version="1", writes_output=False)
def crash(year: int, member: int, ctx: TaskContext) -> None:
    os._exit(3)


@task("hang", version="1", writes_output=False)
def hang(year: int, member: int, ctx: TaskContext) -> None:
    time.sleep(3600)


@task("flaky", version="1", params={"marker_dir": ""}, writes_output=False)
def flaky(year: int, member: int, ctx: TaskContext) -> dict[str, int]:
    """Fails on the first attempt of each cell, succeeds on the second."""
    marker = os.path.join(ctx.params["marker_dir"], f"{year}-{member}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return {"attempt": 2}


@task("write_file", version="1", writes_output=True)
def write_file(year: int, member: int, ctx: TaskContext) -> dict[str, str]:
    with ctx.atomic_output() as tmp:
        tmp.write_text(f"{year} {member}\n")
    ctx.log.info("wrote %s", ctx.output_path.name)
    return {"workdir_was": str(ctx.workdir)}


@task("hang_on", version="1", params={"member": 0, "seconds": 0.05}, writes_output=False)
def hang_on(year: int, member: int, ctx: TaskContext) -> None:
    """Hangs on one member; sleeps ``seconds`` on the others."""
    time.sleep(3600 if member == ctx.params["member"] else ctx.params["seconds"])


@task("kill_worker", version="1", writes_output=False)
def kill_worker(year: int, member: int, ctx: TaskContext) -> None:
    """Kills the worker daemon that runs it (its parent), like a task that crashes its host."""
    import signal

    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(60)


@task("fails_on_bad_host", version="1", writes_output=False)
def fails_on_bad_host(year: int, member: int, ctx: TaskContext) -> None:
    """Fails on a worker started with CF_TEST_BAD_HOST set (a host with a broken disk, say)."""
    if os.environ.get("CF_TEST_BAD_HOST"):
        raise OSError("disk on fire")
    time.sleep(0.05)


def _marker(year: int, member: int, params: dict, data_dir: Path) -> list[Path]:
    return [data_dir / "marker.txt"]


@task("write_paths", version="1", params={"seconds": 0.2}, inputs=_marker)
def write_paths(year: int, member: int, ctx: TaskContext) -> None:
    """Writes the folders it was given and the marker of its data (which run's is it?)."""
    marker = (ctx.data_dir / "marker.txt").read_text().strip()
    time.sleep(ctx.params["seconds"])
    with ctx.atomic_output() as tmp:
        record = {"data_dir": str(ctx.data_dir), "results_dir": str(ctx.results_dir)}
        tmp.write_text(json.dumps({**record, "marker": marker}))


@task("leave_children", version="1", params={"pid_file": "", "hang": False}, writes_output=False)
def leave_children(year: int, member: int, ctx: TaskContext) -> None:
    """Starts a child and a double-forked, setsid'ed grandchild, and returns without them
    (or, with ``hang``, hangs until killed at its time limit)."""
    import subprocess

    child = subprocess.Popen(["sleep", "300"])
    daemonised = subprocess.run(
        ["setsid", "sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    Path(ctx.params["pid_file"]).write_text(f"{child.pid} {daemonised.stdout.strip()}")
    if ctx.params["hang"]:
        time.sleep(3600)


@task("close_streams", version="1", writes_output=False)
def close_streams(year: int, member: int, ctx: TaskContext) -> None:
    """Member 0 closes stdin, stdout and stderr (and Python's objects for them); every cell
    prints a line to each of stdout and stderr."""
    if member == 0:
        sys.stdout.close()
        sys.stderr.close()
        for fd in (0, 1, 2):
            os.close(fd)
        return
    print(f"cell {year} m{member}")
    print(f"cell {year} m{member}", file=sys.stderr)


@task("shout", version="1", params={"megabytes": 1}, writes_output=False)
def shout(year: int, member: int, ctx: TaskContext) -> None:
    """Prints ``megabytes`` MB to stdout."""
    import sys

    line = "x" * 1023 + "\n"
    for _ in range(ctx.params["megabytes"] * 1024):
        sys.stdout.write(line)
    sys.stdout.flush()


@task("hang_in_output", version="1", writes_output=True)
def hang_in_output(year: int, member: int, ctx: TaskContext) -> None:
    """Writes half its output, then hangs (and is killed at its time limit)."""
    with ctx.atomic_output() as tmp:
        tmp.write_text("half")
        time.sleep(3600)


@task("list_summary", version="1", writes_output=False)
def list_summary(year: int, member: int, ctx: TaskContext) -> list[int]:
    return [year, member]


@task("huge_summary", version="1", writes_output=False)
def huge_summary(year: int, member: int, ctx: TaskContext) -> dict[str, str]:
    return {"everything": "x" * 1_000_000}


@task("nan_summary", version="1", writes_output=False)
def nan_summary(year: int, member: int, ctx: TaskContext) -> dict[str, object]:
    """A summary with NaN deep inside (numpy gives them for the mean of nothing)."""
    return {"n": 3, "speeds": [4.0, float("nan")]}


@task("hog", version="1", params={"mb": 400}, writes_output=False)
def hog(year: int, member: int, ctx: TaskContext) -> None:
    """Allocates ``mb`` MB, 20 MB at a time (past a worker job's --mem, for the OOM test)."""
    held = []
    for _ in range(int(ctx.params["mb"]) // 20):
        held.append(bytearray(20_000_000))  # bytearray(n) writes its n zero bytes: resident
        time.sleep(0.01)


@task("fail_saying", version="1", params={"member": 0, "message": ""}, writes_output=False)
def fail_saying(year: int, member: int, ctx: TaskContext) -> None:
    """Member ``member`` fails with ``message`` (whatever it holds)."""
    if member == ctx.params["member"]:
        raise RuntimeError(ctx.params["message"])


@task("fail_member", version="1", params={"member": 0}, writes_output=False)
def fail_member(year: int, member: int, ctx: TaskContext) -> None:
    """Fails on every attempt of one member; succeeds at once on the others."""
    if member == ctx.params["member"]:
        raise RuntimeError(f"member {member} always fails")


@task("allocate", version="1", params={"mb": 100}, writes_output=False)
def allocate(year: int, member: int, ctx: TaskContext) -> dict[str, int]:
    """Touches ``mb`` MiB of memory (so the peak RSS of the attempt shows it)."""
    block = bytearray(ctx.params["mb"] * 2**20)
    block[::4096] = b"x" * len(block[::4096])
    return {"mb": ctx.params["mb"]}
