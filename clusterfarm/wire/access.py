"""Who may talk to whom: what a process proves to its peers and demands of them.

An :class:`Access` holds a cluster's (or one run's) secret, and the secret never crosses the
wire: a connection begins with a challenge and response both ways, in the Pyro5 handshake.
The client sends a fresh nonce; the server (its gate, :mod:`.gate`) answers with a nonce of
its own and a proof, an HMAC of both nonces under the secret, which the client checks before
it sends anything else; then the client proves itself the same way, over the server's nonce,
in one short call the gate answers, and only then is the connection served. An impostor
listening on a daemon's port learns a random nonce and nothing it could reuse: every proof
is bound to the other side's fresh nonce. Proxies made with :meth:`Access.proxy` do this.

An Access is handed to whatever connects or serves, never kept process-wide, so two runs in
one process (the Python API, a notebook) never take each other's. ``Access()``, without a
secret, admits anybody: ``[security] auth = false``.

Local mode makes a fresh access per run (:func:`run_access`) and hands its secret to the
workers on their stdin (:func:`access_from_stdin`); a cluster shares the one in ``[security]
secret_file`` (:func:`cluster_access`, see :mod:`.secret`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from dataclasses import dataclass, field
from typing import Any

from Pyro5 import config, protocol, serializers
from Pyro5.api import Proxy
from Pyro5.errors import SecurityError

from clusterfarm.config.settings import SecuritySettings
from clusterfarm.errors import SettingsError
from clusterfarm.wire.secret import new_secret, read_secret

PROVE = "cf_prove"  # the call by which a client proves itself, answered by the gate
NONCE_BYTES = 32


@dataclass(frozen=True)
class Access:
    """A secret to prove and demand (see the module); None admits anybody."""

    secret: str | None = field(default=None, repr=False)

    def proof(self, side: str, first: str, second: str) -> str:
        """What ``side`` ("server" or "client") sends to show it knows the secret, over the
        two nonces (the other side's, fresh, comes first)."""
        assert self.secret is not None
        text = f"clusterfarm {side} {first} {second}".encode()
        return hmac.new(self.secret.encode(), text, hashlib.sha256).hexdigest()

    def proves(self, side: str, first: str, second: str, given: Any) -> bool:
        """True when ``given`` is ``side``'s proof over the nonces."""
        return isinstance(given, str) and hmac.compare_digest(
            given.encode(), self.proof(side, first, second).encode()
        )

    def proxy(self, uri: Any) -> Proxy:
        """A Pyro5 proxy of ``uri`` that proves this access (and checks the server's proof)
        whenever it connects."""
        return ProvingProxy(uri, self)


def nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


class ProvingProxy(Proxy):
    """A Pyro5 proxy that authenticates its server and itself by the challenge and response
    of the module, on each connection it makes, before any call of its user."""

    def __init__(self, uri: Any, access: Access) -> None:
        super().__init__(uri)
        object.__setattr__(self, "_cf_access", access)  # Proxy allows only its own names
        self._pyroHandshake = {"nonce": nonce()} if access.secret is not None else None

    def _pyroValidateHandshake(self, response: Any) -> None:  # noqa: N802 - Pyro5's name
        access: Access = self._cf_access
        if access.secret is None or not isinstance(self._pyroHandshake, dict):
            return
        ours = self._pyroHandshake["nonce"]
        theirs = response.get("nonce") if isinstance(response, dict) else None
        if not isinstance(theirs, str) or not access.proves(
            "server", ours, theirs, response.get("proof")
        ):
            raise SecurityError(
                f"{self._pyroUri.location}: it does not prove it knows the cluster's secret "
                "(another cluster's, or not a clusterfarm daemon); nothing was sent to it"
            )
        self._pyroHandshake = {"nonce": nonce()}  # the next connection's
        self._prove(access.proof("client", theirs, ours))

    def _prove(self, proof: str) -> None:
        """Send our proof as the connection's first call; the server's gate answers it."""
        connection = self._pyroConnection
        serializer = serializers.serializers[self._pyroSerializer or config.SERIALIZER]
        data = serializer.dumpsCall(self._pyroUri.object, PROVE, (proof,), {})
        message = protocol.SendingMessage(protocol.MSG_INVOKE, 0, 0, serializer.serializer_id, data)
        connection.send(message.data)
        answer = protocol.recv_stub(connection, [protocol.MSG_RESULT])
        if serializers.serializers_by_id[answer.serializer_id].loads(answer.data) is not True:
            raise SecurityError(f"{self._pyroUri.location}: it did not take our proof")


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
