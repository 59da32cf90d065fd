"""Where a command writes what the user asked for: ``--out`` files and standard output.

An ``--out`` path is checked before anything is written: never a folder, never one of the
run's own files (its state database and journals, its lock, ``provenance.json``, its logs):
overwriting those would lose the run. A file is written whole or not at all (a temporary
name beside it, renamed at the end), so a failure leaves whatever was there; a device or a
pipe (``/dev/stdout``) is written as it is. Every failure is one ``Error:`` line: a full or
failing disk exits 3, any other place that cannot take the output exits 2.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from clusterfarm.errors import ClusterFarmError, UsageError, os_error
from clusterfarm.record.state import record_paths

HINT = "give a file in a folder you can write to"


def check_out(out: str, run_dir: Path | None) -> Path:
    """The path ``--out`` names, refused (UsageError) if it is a folder or the run's own."""
    path = Path(out).expanduser()
    if path.is_dir():
        raise UsageError(f"--out {out}: that is a folder; give a file name in it")
    for above in path.parents:
        if above.exists():
            if not above.is_dir():
                raise UsageError(f"--out {out}: {above} is a file, not a folder")
            break
    if run_dir is not None:
        target = path.resolve()
        for own in record_paths(run_dir):
            own = own.resolve()
            if target == own or own in target.parents:
                raise UsageError(
                    f"--out {out}: that is the run's own {own.name} in {run_dir}; "
                    "writing there would lose the run: give a path outside it"
                )
    return path


@contextlib.contextmanager
def output_file(out: str, run_dir: Path | None = None) -> Iterator[Path]:
    """Yield where to write ``--out``; it becomes ``out`` when the block ends without error.

    The folder is made if missing. A regular file (or a new one) is written under a
    temporary name beside it (with its suffix, for writers that go by it) and renamed; a
    device or a pipe is written directly. An OSError about the output is one line naming it.
    """
    path = check_out(out, run_dir)
    ours = {str(path), str(path.parent)}
    try:
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):
            yield path  # /dev/stdout, a named pipe...: there is nothing to replace
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent
        )
        os.close(handle)
        temporary = Path(name)
        ours.add(name)
        try:
            yield temporary
            os.chmod(temporary, 0o666 & ~_umask())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as exc:
        named = exc.filename
        if named is not None and str(named) not in ours and Path(named).parent != path.parent:
            raise  # about something else (an input): not the output's fault
        raise os_error(exc, f"--out {out}", HINT) from exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


STDOUT_HINT = "send the output to a file, or to a program that reads all of it"


def stdout_error(exc: OSError) -> ClusterFarmError:
    """The error for standard output that cannot be written (a full disk, a closed pipe).

    Standard output is pointed at /dev/null first, so that what is still buffered for it is
    not written again (and failed again) as the interpreter exits."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    if exc.errno == errno.EPIPE:
        return UsageError(
            "standard output: its reader went away before everything was written (broken "
            f"pipe); {STDOUT_HINT}"
        )
    return os_error(exc, "standard output", STDOUT_HINT)
