"""Who may talk to whom: what a process presents to its peers and demands of them.

An :class:`Access` holds a cluster's (or one run's) secret: every proxy made with it presents
the secret in its Pyro5 handshake, and every daemon served with it refuses a connection that
does not. It is handed to whatever connects or serves, never kept process-wide, so two runs
in one process (the Python API, a notebook) never take each other's. ``Access()``, without a
secret, admits anybody: ``[security] auth = false``.

Local mode makes a fresh access per run (:func:`run_access`) and hands its secret to the
workers on their stdin (:func:`access_from_stdin`); a cluster shares the one in ``[security]
secret_file`` (:func:`cluster_access`, see :mod:`.secret`).
"""

from __future__ import annotations

import hmac
import sys
from dataclasses import dataclass, field
from typing import Any, TypeVar

from clusterfarm.config.settings import SecuritySettings
from clusterfarm.errors import SettingsError
from clusterfarm.wire.secret import new_secret, read_secret

P = TypeVar("P")


@dataclass(frozen=True)
class Access:
    """A secret to present and demand (see the module); None admits anybody."""

    secret: str | None = field(default=None, repr=False)

    def present(self, proxy: P) -> P:
        """Make ``proxy`` present the secret in its connection handshake; return it."""
        if self.secret is not None:
            proxy._pyroHandshake = {"secret": self.secret}  # type: ignore[attr-defined]
        return proxy

    def admits(self, handshake: Any) -> bool:
        """True when a connection's handshake data carries the secret (or none is needed)."""
        if self.secret is None:
            return True
        given = handshake.get("secret") if isinstance(handshake, dict) else None
        return isinstance(given, str) and hmac.compare_digest(given.encode(), self.secret.encode())


def cluster_access(security: SecuritySettings, create: bool = False) -> Access:
    """The cluster's access: its secret file's (made when missing, with ``create``)."""
    return Access(read_secret(security, create))


def run_access(security: SecuritySettings) -> Access:
    """A fresh access of one local run's own (nobody else may list or call its workers)."""
    return Access(new_secret() if security.auth else None)


def access_from_stdin() -> Access:
    """The access whose secret is the first line of stdin (how local mode hands it on)."""
    line = sys.stdin.readline().strip()
    if not line:
        raise SettingsError("--secret-stdin: no secret on the first line of stdin")
    return Access(line)
