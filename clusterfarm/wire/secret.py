"""The secret every connection presents: made, stored, read, handed on.

Local mode makes a fresh secret per run and hands it to its workers on their stdin, so it
never touches a disk or a command line. A cluster shares one secret in ``[security]
secret_file`` (default ``~/.clusterfarm/secret``, mode 600): made on the manager's machine by
the first ``clusterfarm nameserver`` or ``start-workers``, copied to each host by
``start-workers`` over the SSH connection it already has, read from a shared home by SLURM
jobs. With ``[security] auth = false`` there is no secret and anybody may connect.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from clusterfarm.config.settings import SecuritySettings
from clusterfarm.errors import SettingsError
from clusterfarm.wire.private_files import read_private, write_private


def new_secret() -> str:
    """A fresh secret: 256 random bits as hex."""
    return secrets.token_hex(32)


def secret_path(security: SecuritySettings) -> Path:
    return Path(security.secret_file).expanduser()


def read_secret(security: SecuritySettings, create: bool = False) -> str | None:
    """The cluster's secret (None with auth off); with ``create``, made when missing."""
    if not security.auth:
        return None
    path = secret_path(security)
    if create and not path.exists() and not path.is_symlink():
        return write_secret(path, new_secret())
    try:
        secret = read_private(path, "security.secret_file").decode().strip()
    except FileNotFoundError:
        raise SettingsError(
            f"{path} (security.secret_file): no cluster secret here; run "
            "`clusterfarm nameserver` or `clusterfarm start-workers` on the manager's machine "
            "once to make it (start-workers copies it to the hosts)"
        ) from None
    except UnicodeDecodeError:
        secret = ""
    if len(secret) < 16:
        raise SettingsError(
            f"{path} (security.secret_file): too short to be a secret; delete it and run "
            "`clusterfarm start-workers` to make a new one"
        )
    return secret


def write_secret(path: Path, secret: str) -> str:
    """Store ``secret`` at ``path``, readable by its owner only (never through a link);
    return it."""
    write_private(path, (secret + "\n").encode(), 0o600, "security.secret_file")
    return secret
