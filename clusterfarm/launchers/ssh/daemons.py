"""Start, inspect and stop this host's detached worker daemons (run on the host, over SSH).

``clusterfarm start-workers`` runs ``python -m clusterfarm.launchers.ssh.daemons start ...`` on
every host, ``stop-workers`` runs ``... stop ...``; each answers one JSON line. A daemon runs in
its own session (``setsid``), ignores SIGHUP (``nohup``), logs to ``{workdir}/logs/<name>.log``
and has its pid in ``{workdir}/pids/<name>.pid``. A pid counts as our worker only while
``/proc/<pid>/cmdline`` says it is the ``clusterfarm worker --name <name>``, so a recycled pid
is never signalled. Names carry the host (``berlin.0``), so one workdir on a shared home
serves every host.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clusterfarm import __version__
from clusterfarm.errors import ClusterFarmError

LOG_TAIL = 3  # log lines sent back about a worker that died


def pid_file(workdir: Path, name: str) -> Path:
    return workdir / "pids" / f"{name}.pid"


def log_file(workdir: Path, name: str) -> Path:
    """The worker's log, rotated per ``[logging]``."""
    return workdir / "logs" / f"{name}.log"


def out_file(workdir: Path, name: str) -> Path:
    """The worker's raw stdout and stderr: what it says before its logging starts."""
    return workdir / "logs" / f"{name}.out"


def is_our_worker(pid: int, name: str) -> bool:
    """True if ``pid`` is alive and is the clusterfarm worker called ``name``."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False  # gone (a zombie has an empty cmdline, so it is gone too)
    if "clusterfarm" not in args or "worker" not in args or "--name" not in args:
        return False
    at = args.index("--name")
    return at + 1 < len(args) and args[at + 1] == name


def recorded(workdir: Path, host: str) -> dict[str, int]:
    """The pid files of ``host``'s workers: name → pid."""
    pattern = re.compile(rf"^({re.escape(host)}\.\d+)\.pid$")
    found: dict[str, int] = {}
    folder = workdir / "pids"
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = pattern.match(path.name)
        text = path.read_text().strip() if match else ""
        if match and text.isdigit():
            found[match.group(1)] = int(text)
    return found


@contextlib.contextmanager
def _locked(workdir: Path, host: str) -> Iterator[None]:
    # two start-workers (or a start and a stop) for one host must not interleave; other
    # hosts sharing the workdir (an NFS home) have their own lock and need not wait
    (workdir / "pids").mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    with open(workdir / "pids" / f".{host}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def start(
    workdir: Path,
    host: str,
    address: str,
    count: int,
    nameserver: str,
    orphan_after: float,
    secret: str | None = None,
) -> dict[str, Any]:
    """Start the workers ``host.0`` … ``host.<count-1>`` that are not running already.

    With ``secret`` (the cluster's, sent on stdin) it is stored as ``{workdir}/secret``, mode
    600, and every worker started here presents and demands it.
    """
    secret_file = workdir / "secret"
    if secret is not None:
        from clusterfarm.wire.secret import write_secret

        write_secret(secret_file, secret)
    started: dict[str, int] = {}
    running: dict[str, int] = {}
    with _locked(workdir, host):
        pids = recorded(workdir, host)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup: inherited by the daemons
        for n in range(count):
            name = f"{host}.{n}"
            if name in pids and is_our_worker(pids[name], name):
                running[name] = pids[name]
                continue
            command = [sys.executable, "-m", "clusterfarm", "worker", "--host", address]
            command += ["--name", name, "--nameserver", nameserver]
            command += ["--orphan-after", f"{orphan_after:g}"]
            command += ["--log-file", str(log_file(workdir, name))]
            if secret is not None:
                command += ["--secret-file", str(secret_file)]
            with open(out_file(workdir, name), "ab") as log:
                log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
                log.flush()
                process = subprocess.Popen(
                    command,
                    cwd=workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # setsid: no terminal, not in the ssh session
                )
            _write_pid(workdir, name, process.pid)
            started[name] = process.pid
    return {"version": __version__, "started": started, "running": running}


def _write_pid(workdir: Path, name: str, pid: int) -> None:
    path = pid_file(workdir, name)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(f"{pid}\n")
    temporary.replace(path)


def status(workdir: Path, host: str) -> dict[str, Any]:
    """Say which of ``host``'s recorded workers are alive; the log tail of those that are not."""
    workers: dict[str, Any] = {}
    for name, pid in recorded(workdir, host).items():
        alive = is_our_worker(pid, name)
        workers[name] = {"pid": pid, "alive": alive, "log": "" if alive else _tail(workdir, name)}
    return {"version": __version__, "workers": workers}


def _tail(workdir: Path, name: str) -> str:
    lines: list[str] = []
    for path in (log_file(workdir, name), out_file(workdir, name)):  # a crash ends up last
        with contextlib.suppress(OSError):
            lines += [line for line in path.read_text(errors="replace").splitlines() if line]
    return "\n".join(lines[-LOG_TAIL:])


def stop(workdir: Path, host: str, grace: float) -> dict[str, Any]:
    """TERM ``host``'s recorded workers, KILL those alive after ``grace`` s; confirm the end."""
    with _locked(workdir, host):
        pids = recorded(workdir, host)
        ours = {name: pid for name, pid in pids.items() if is_our_worker(pid, name)}
        for pid in ours.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        alive = _wait_gone(ours, grace)
        for pid in alive.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        left = _wait_gone(alive, 5.0)
        for name in pids:
            if name not in left:
                pid_file(workdir, name).unlink(missing_ok=True)
    return {
        "version": __version__,
        "stopped": {name: pid for name, pid in ours.items() if name not in alive},
        "killed": {name: pid for name, pid in alive.items() if name not in left},
        "stale": {name: pid for name, pid in pids.items() if name not in ours},
        "left": left,
    }


def _wait_gone(workers: dict[str, int], timeout: float) -> dict[str, int]:
    """Wait until none of ``workers`` is alive, at most ``timeout`` s; return those still alive."""
    deadline = time.monotonic() + timeout
    while True:
        alive = {name: pid for name, pid in workers.items() if is_our_worker(pid, name)}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line of the remote helper and print its JSON answer."""
    parser = argparse.ArgumentParser(prog="python -m clusterfarm.launchers.ssh.daemons")
    parser.add_argument("action", choices=("start", "status", "stop"))
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--host", required=True, help="the host's name in the settings")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--nameserver", default="127.0.0.1:9090")
    parser.add_argument("--orphan-after", type=float, default=600.0)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--secret-stdin", action="store_true", help="the secret on stdin")
    args = parser.parse_args(argv)
    workdir = Path(os.path.expanduser(args.workdir)).absolute()
    try:
        answer = _act(args, workdir)
    except ClusterFarmError as exc:  # one line, which start-workers shows with the host's name
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    print(json.dumps(answer))


def _act(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    answer: dict[str, Any]
    if args.action == "start":
        secret = sys.stdin.readline().strip() if args.secret_stdin else None
        answer = start(
            workdir,
            args.host,
            args.address,
            args.count,
            args.nameserver,
            args.orphan_after,
            secret or None,
        )
    elif args.action == "stop":
        answer = stop(workdir, args.host, args.grace)
    else:
        answer = status(workdir, args.host)
    return answer


if __name__ == "__main__":
    main()
