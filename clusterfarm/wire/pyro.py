"""Pyro5 configuration shared by every clusterfarm process: serializer, sockets and TLS.

Set once per process before any proxy or daemon is made, so the nameserver, the workers and
the manager all speak the same way. With ``[security] tls`` every connection is mutual TLS:
each process presents its machine's certificate and accepts only peers whose certificate the
cluster's CA signed (and, as a client, that names the address it dialled).
"""

from __future__ import annotations

import contextlib
import resource
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from Pyro5 import config, protocol, socketutil
from Pyro5.errors import ConnectionClosedError, ProtocolError

from clusterfarm.config.settings import SecuritySettings
from clusterfarm.errors import SettingsError

WORKER_PREFIX = "clusterfarm.worker."
CALL_TIMEOUT = 10.0  # seconds for short calls (ping, info, cancel, nameserver)
_PYRO_SSL_CONTEXT = socketutil.get_ssl_context
# OpenSSL's X509_V_ERR codes: issuer unknown here (another cluster's CA); host name or IP
_UNKNOWN_ISSUER = {2, 18, 19, 20, 21}
_NAME_MISMATCH = {62, 64}


def configure_pyro(security: SecuritySettings | None = None) -> None:
    """Apply clusterfarm's Pyro5 settings to this process; with ``security``, its TLS too.

    Called without ``security`` (as the nameserver, worker and manager code does on its way)
    it leaves TLS as the CLI set it at start. Raises SettingsError for a bad certificate file.
    """
    config.SERIALIZER = "serpent"  # plain data only: never pickle on the wire, TLS or not
    config.SOCK_NODELAY = True  # small request/answer messages: no Nagle delay
    config.SERVERTYPE = "thread"  # heartbeats are answered while a task runs
    config.THREADPOOL_SIZE_MIN = 4
    # a thread per live connection: a nameserver keeps one per worker (the gate in
    # gate.py keeps connections that never speak from taking any)
    config.THREADPOOL_SIZE = 2048
    config.MAX_RETRIES = 0
    config.DETAILED_TRACEBACK = False
    config.COMPRESSION = False  # never sent compressed, and never inflated: see refuse_compressed
    # the largest message an authenticated peer may send (a batch of 4,096 answers with
    # summaries of 64 kB is 256 MB); before authentication the gate allows far less
    config.MAX_MESSAGE_SIZE = 512 * 1024 * 1024
    refuse_compressed()
    if security is not None:
        _configure_tls(security)


def refuse_compressed() -> None:
    """Make every Pyro5 message this process receives refuse the compressed flag before
    anything is inflated: one megabyte of zeros compressed is a gigabyte inflated, and
    clusterfarm never compresses."""
    if getattr(protocol.ReceivingMessage.add_payload, "refuses_compressed", False):
        return
    add_payload = protocol.ReceivingMessage.add_payload

    def checked(self: protocol.ReceivingMessage, payload: bytes) -> None:
        if self.flags & protocol.FLAGS_COMPRESSED:
            raise ProtocolError("a compressed message (clusterfarm never compresses)")
        add_payload(self, payload)

    checked.refuses_compressed = True  # type: ignore[attr-defined]
    protocol.ReceivingMessage.add_payload = checked


def _configure_tls(security: SecuritySettings) -> None:
    if not security.tls:
        config.SSL = False
        socketutil.get_ssl_context = _PYRO_SSL_CONTEXT
        return
    from clusterfarm.wire.certs import check_files  # only TLS needs the cryptography package

    check_files(security)
    ca, cert, key = (str(Path(p).expanduser()) for p in (security.ca, security.cert, security.key))
    server = _context(_ServerContext(ssl.PROTOCOL_TLS_SERVER), ca, cert, key)
    client = _context(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), ca, cert, key)
    config.SSL = True
    config.SSL_REQUIRECLIENTCERT = True  # mutual: a peer without our CA's certificate is refused
    config.SSL_SERVERCERT = config.SSL_CLIENTCERT = cert
    config.SSL_SERVERKEY = config.SSL_CLIENTKEY = key
    config.SSL_CACERTS = ca
    # Pyro5 would build its contexts from the names above, but its client trusts the system's
    # CAs as well, and its server would do the handshake in the loop that accepts every
    # connection (one client that connects and stays silent would lock everybody out); so it
    # gets ours
    socketutil.get_ssl_context = _contexts(server, client)


def raise_open_files_limit() -> None:
    """Raise this process's open-files limit to its hard limit (a connection is a file)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def check_listen_address(address: str) -> None:
    """With TLS, raise SettingsError unless this machine's certificate names ``address``."""
    if config.SSL:
        from clusterfarm.wire.certs import check_names

        check_names(config.SSL_SERVERCERT, address)


def _context(context: ssl.SSLContext, ca: str, cert: str, key: str) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    for path, field, load in (
        (ca, "ca", lambda: context.load_verify_locations(cafile=ca)),  # our CA, not the system's
        (cert, "cert", lambda: context.load_cert_chain(cert, key)),
    ):
        try:
            load()
        except ssl.SSLError as exc:  # what the checks let pass and OpenSSL still refuses
            raise SettingsError(
                f"{path} (security.{field}): OpenSSL refuses it ({exc.reason or exc}); "
                "make new certificates with `clusterfarm certs`"
            ) from exc
    return context


class _ServerContext(ssl.SSLContext):
    """Leaves the TLS handshake of an accepted connection to the gate (:mod:`.gate`).

    Pyro5's thread-pool server accepts in one loop and, by default, would do the handshake
    right there; deferred, the gate does it in a small pool of its own, under the
    connection's handshake deadline.
    """

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        return super().wrap_socket(
            sock, server_side, False, suppress_ragged_eofs, server_hostname, session
        )


def _contexts(server: ssl.SSLContext, client: ssl.SSLContext) -> Callable[..., ssl.SSLContext]:
    def get_ssl_context(servercert: str = "", **_: str) -> ssl.SSLContext:
        return server if servercert else client  # Pyro5 asks with servercert for daemons

    return get_ssl_context


def tls_problem(exc: BaseException) -> str | None:
    """Say in one line how TLS made a connection fail, with what to check; None if it did not."""
    cause: BaseException | None = exc
    while cause is not None:  # Pyro5 wraps the ssl error, or raises while handling it
        if isinstance(cause, ssl.SSLCertVerificationError):
            code, message = cause.verify_code, cause.verify_message
            if code in _NAME_MISMATCH:
                return (
                    f"TLS: its certificate does not name the address dialled ({message}); "
                    "make its certificate with `clusterfarm certs` for that address"
                )
            if code in _UNKNOWN_ISSUER:
                return (
                    f"TLS: its certificate is signed by another CA than [security] ca ({message})"
                )
            return f"TLS: its certificate is not accepted ({message})"
        if isinstance(cause, ssl.SSLError):
            reason = str(cause.reason or cause).lower().replace("_", " ")
            if "alert" in reason:
                return f"TLS: it refused this machine's certificate ({reason}); check [security]"
            return f"TLS failed ({reason}); check [security] on both machines: tls on, one CA"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, ConnectionClosedError) and not config.SSL:
        # a TLS server drops a plain client without a word
        return f"{exc}; if it uses TLS, set [security] tls = true here too"
    return None


def is_loopback(address: str) -> bool:
    """True if ``address`` resolves to a loopback address (127.x, ::1)."""
    try:
        infos = socket.getaddrinfo(address, None)
    except OSError:
        return False
    addresses = {str(info[4][0]) for info in infos}
    return any(address.startswith("127.") or address == "::1" for address in addresses)


def address_towards(host: str, port: int) -> str:
    """Return this machine's address on the route to ``host`` (what other hosts can reach).

    Never trusts gethostname(), which on Debian resolves to 127.0.1.1.
    """
    if is_loopback(host):
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, port))  # UDP connect sends nothing; it only picks a route
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"
