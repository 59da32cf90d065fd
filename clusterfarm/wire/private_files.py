"""Files only their owner may read: the cluster's secret and the TLS keys.

Such a file is written under a temporary name beside it (created ``O_EXCL``, mode 600 from
the start) and renamed into place, so it is never readable by others, never half written,
and a symbolic link planted at its name is replaced, never followed: nobody's file is
overwritten or has its mode changed through it. It is written only into a folder of ours
that others cannot write to (without the sticky bit they could swap the file). It is read
only when it is a file of ours (not a link) that others can neither read nor write. Every
refusal is a :class:`~clusterfarm.errors.SettingsError` naming the file and what to do (a
full or failing disk a :class:`~clusterfarm.errors.StorageError`).
"""

from __future__ import annotations

import os
import pwd
import stat
import tempfile
from pathlib import Path

from clusterfarm.errors import SettingsError, os_error

WRITE_HINT = "keep it in a folder of your own that you can write to"


def write_private(path: Path, data: bytes, mode: int = 0o600, what: str = "") -> None:
    """Store ``data`` at ``path`` (see the module): atomically, never through a link."""
    label = f"{path}{f' ({what})' if what else ''}"
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _check_folder(folder, label)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
    except OSError as exc:
        raise os_error(exc, label, WRITE_HINT, SettingsError) from exc
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            os.fchmod(file.fileno(), mode)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)  # a link at ``path`` is replaced, not followed
    except OSError as exc:
        raise os_error(exc, label, WRITE_HINT, SettingsError) from exc
    finally:
        Path(temporary).unlink(missing_ok=True)


def read_private(path: Path, what: str = "") -> bytes:
    """The content of ``path``, a file of ours (not a link) that others may neither read nor
    change; else SettingsError saying why (FileNotFoundError as it is: the caller says how
    to make the file)."""
    label = f"{path}{f' ({what})' if what else ''}"
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if path.is_symlink():
            raise SettingsError(
                f"{label}: is a symbolic link (to {os.readlink(path)}); it must be a file of "
                "your own: remove the link"
            ) from exc
        raise SettingsError(f"{label}: cannot read it ({exc.strerror or exc})") from exc
    with os.fdopen(handle, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SettingsError(f"{label}: is not a regular file")
        if info.st_uid != os.geteuid():
            raise SettingsError(
                f"{label}: belongs to {_owner(info.st_uid)}, not to you; it must be a file "
                "of your own: remove it and make your own"
            )
        if info.st_mode & 0o077:
            raise SettingsError(f"{label}: other users may read it; chmod 600 {path}")
        return file.read()


def _check_folder(folder: Path, label: str) -> None:
    info = folder.lstat()
    if stat.S_ISLNK(info.st_mode):
        info = folder.stat()  # a link to a folder (a home on another disk) is fine if...
    if info.st_uid not in (os.geteuid(), 0):  # ...the folder itself is ours (or the system's)
        raise SettingsError(
            f"{label}: its folder {folder} belongs to {_owner(info.st_uid)}; keep the file in "
            "a folder of your own ([workers] workdir, [security] secret_file)"
        )
    if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
        raise SettingsError(
            f"{label}: anybody may write to its folder {folder}, and so swap the file; keep it "
            "in a folder of your own"
        )


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
