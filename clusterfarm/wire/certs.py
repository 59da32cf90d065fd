"""Certificates for ``[security] tls``: make a private CA and one certificate per machine, and
check the configured files before any connection is made.

Every clusterfarm process is both a TLS server (nameserver, worker daemon) and a TLS client
(it calls the nameserver and the workers), with one certificate per machine signed by the
cluster's own CA. Pyro5's client checks that the certificate names the address it dials, so a
certificate carries the machine's name and address as subject alternative names (addresses as
IP SANs). A bad file is found here, at start, and reported as one line naming it, instead of
as a failed TLS handshake somewhere later.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clusterfarm.config.settings import SecuritySettings, Settings
from clusterfarm.errors import SettingsError, UsageError
from clusterfarm.wire.private_files import read_private, write_private

# the longest lifetime browsers accept for a server certificate; renew with `certs --force`
VALID_DAYS = 825
CA_STEM = "ca"
MANAGER = "manager"
LOCALHOST = "localhost"
LOCALHOST_NAMES = ("localhost", "127.0.0.1", "::1")
# each process serves (nameserver, worker) and calls (manager, worker -> nameserver)
_BOTH_ROLES = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
_REMAKE = "make new ones with `clusterfarm certs --out DIR --force`"
_Extension = TypeVar("_Extension", bound=x509.ExtensionType)


@dataclass(frozen=True)
class Credential:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes


# -- making certificates ----------------------------------------------------------------------


def new_ca(
    name: str = "",
    not_before: datetime.datetime | None = None,
    days: int = VALID_DAYS,
) -> Credential:
    """Make a self-signed CA that signs only end certificates (path length 0)."""
    # a name of its own: two clusters' CAs never look alike in errors, nor to OpenSSL
    name = name or f"clusterfarm CA {secrets.token_hex(4)}"
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    usage = _key_usage(key_cert_sign=True, crl_sign=True)
    builder = (
        _builder(subject, subject, key, not_before, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
    )
    return Credential(builder.sign(key, hashes.SHA256()), key)


def issue(
    ca: Credential,
    name: str,
    alt_names: Sequence[str],
    not_before: datetime.datetime | None = None,
    days: int = VALID_DAYS,
) -> Credential:
    """Make a certificate for ``name``, valid for every host name and address in ``alt_names``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        _builder(subject, ca.cert.subject, key, not_before, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage(_BOTH_ROLES), critical=False)
        .add_extension(x509.SubjectAlternativeName(_alt_names(alt_names)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    return Credential(builder.sign(ca.key, hashes.SHA256()), key)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    not_before: datetime.datetime | None,
    days: int,
) -> x509.CertificateBuilder:
    start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)  # a few minutes back: clocks of the hosts differ a little
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _key_usage(key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _alt_names(names: Sequence[str]) -> list[x509.GeneralName]:
    alt: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):  # once each, in order
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    return alt


def alt_names_of(settings: Settings, names: str | None) -> dict[str, list[str]]:
    """The certificates ``certs`` makes, by file stem, each with its subject alternative names.

    ``names`` is a comma list; a host of the settings stands for its name and address, any
    other entry for itself (a DNS name or an address). Default: every host and ``localhost``.
    The manager's certificate also names the settings' nameserver host, so the nameserver can
    run on the manager's machine with it.
    """
    hosts = {host.name: host for host in settings.hosts}
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else [*hosts, LOCALHOST]
    plan: dict[str, list[str]] = {}
    for name in wanted:
        if name in (CA_STEM, MANAGER) or not _is_file_stem(name):
            raise UsageError(
                f"host {name!r} cannot name a certificate file ({CA_STEM} and {MANAGER} are "
                "taken; letters, digits and . - _ : only); leave it out with --hosts"
            )
        if name == LOCALHOST:
            plan[name] = list(LOCALHOST_NAMES)
        elif name in hosts:
            plan[name] = list(dict.fromkeys([name, hosts[name].address]))
        else:
            plan[name] = [name]
    plan[MANAGER] = list(dict.fromkeys([*LOCALHOST_NAMES, settings.nameserver.host]))
    return plan


def _is_file_stem(name: str) -> bool:
    return name.isascii() and all(c.isalnum() or c in "._-:" for c in name) and name[0] != "."


def make_certs(out: Path, plan: dict[str, list[str]], force: bool = False) -> list[str]:
    """Write a new CA and one certificate per entry of ``plan`` into ``out``.

    Returns one line per file written. An existing CA is kept unless ``force``: replacing it
    invalidates every certificate it signed, on every machine.
    """
    ca_files = [out / f"{CA_STEM}.pem", out / f"{CA_STEM}.key"]
    existing = [str(path) for path in ca_files if path.exists()]
    if existing and not force:
        raise UsageError(
            f"{existing[0]}: a CA exists already, and replacing it invalidates every "
            "certificate it signed; give --force to make a new CA (then copy the new files to "
            "every machine), or choose another --out"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        ca = new_ca()
        lines = _announce(
            write_credential(ca, out, CA_STEM),
            ca,
            "CA certificate, for every machine",
            "the CA's private key: keep it here, copy it nowhere",
        )
        for stem, alt_names in plan.items():
            credential = issue(ca, stem, alt_names)
            lines += _announce(
                write_credential(credential, out, stem),
                credential,
                f"certificate for {', '.join(alt_names)}",
                f"its private key: for {stem} only",
            )
    except OSError as exc:
        raise UsageError(f"{exc.filename or out}: cannot write ({exc.strerror})") from exc
    return lines


def _announce(paths: tuple[Path, Path], credential: Credential, cert: str, key: str) -> list[str]:
    until = credential.cert.not_valid_after_utc.strftime("%Y-%m-%d")
    return [f"{paths[0]}  {cert} (valid until {until})", f"{paths[1]}  {key} (mode 600)"]


def write_credential(credential: Credential, out: Path, stem: str) -> tuple[Path, Path]:
    """Write ``stem.pem`` and ``stem.key`` (mode 600) into ``out``; return their paths."""
    cert_path, key_path = out / f"{stem}.pem", out / f"{stem}.key"
    # written as keys are (see write_private): never half a file, never through a link
    write_private(cert_path, credential.cert.public_bytes(serialization.Encoding.PEM), 0o644)
    key = credential.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),  # daemons start unattended: nobody to type a passphrase
    )
    write_private(key_path, key, 0o600)
    return cert_path, key_path


# -- checking the configured files ------------------------------------------------------------


def check_files(security: SecuritySettings) -> None:
    """Check ``[security]`` ca, cert and key; raise SettingsError naming the bad file.

    Catches what would otherwise fail every TLS handshake: a missing or unreadable file, not
    PEM, a key that is not the certificate's, a certificate out of its validity period or not
    signed by the CA.
    """
    now = datetime.datetime.now(datetime.UTC)
    ca = _read_cert(security.ca, "ca")
    cert = _read_cert(security.cert, "cert")
    key = _read_key(security.key, "key")
    constraints = _extension(ca, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        _fail(security.ca, "ca", "is not a CA certificate; give the ca.pem made by `certs`")
    _check_period(ca, security.ca, "ca", now)
    _check_period(cert, security.cert, "cert", now)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        _fail(
            security.cert,
            "cert",
            f"is not signed by the CA {security.ca} (security.ca, "
            f"{ca.subject.rfc4514_string()}) but by {cert.issuer.rfc4514_string()}; "
            "use a certificate made with that CA",
        )
    usage = _extension(cert, x509.ExtendedKeyUsage)
    if usage is not None and not all(role in usage for role in _BOTH_ROLES):
        _fail(
            security.cert,
            "cert",
            "is not valid for both TLS server and client use (extended key usage), which "
            "every clusterfarm process needs; make it with `clusterfarm certs`",
        )
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        _fail(
            security.key,
            "key",
            f"is not the private key of {security.cert} (security.cert); give the .key file "
            "written together with that certificate",
        )


def check_names(cert_path: str, address: str) -> None:
    """Raise SettingsError unless the certificate names ``address``, where a daemon listens.

    Clients dial the address in the daemon's URI, which is the one it listens on, and refuse a
    certificate that does not name it: better to say so when the daemon starts.
    """
    cert = _read_cert(cert_path, "cert")
    alt = _extension(cert, x509.SubjectAlternativeName)
    ips = alt.get_values_for_type(x509.IPAddress) if alt else []
    dns = alt.get_values_for_type(x509.DNSName) if alt else []
    try:
        found = ipaddress.ip_address(address) in ips
    except ValueError:
        found = any(_dns_match(pattern, address) for pattern in dns)
    if not found:
        names = ", ".join([*dns, *map(str, ips)]) or "no address"
        _fail(
            cert_path,
            "cert",
            f"names {names} but not {address}, where this daemon listens and clients dial: "
            f"listen at one of those (--host), or make a certificate for {address} with "
            "`clusterfarm certs`",
        )


def _dns_match(pattern: str, name: str) -> bool:
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):  # a wildcard stands for exactly one left-most label
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def _read(path: str, field: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except FileNotFoundError:
        _fail(path, field, "file not found; make certificates with `clusterfarm certs --out DIR`")
    except OSError as exc:
        _fail(path, field, f"cannot read it ({exc.strerror})")


def _read_cert(path: str, field: str) -> x509.Certificate:
    data = _read(path, field)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        _fail(path, field, "is not a PEM certificate (-----BEGIN CERTIFICATE-----)")


def _read_key(path: str, field: str) -> PrivateKeyTypes:
    try:  # a key must be a file of ours that nobody else may read
        data = read_private(Path(path).expanduser(), f"security.{field}")
    except FileNotFoundError:
        _fail(path, field, "file not found; make certificates with `clusterfarm certs --out DIR`")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        _fail(
            path,
            field,
            "is encrypted with a passphrase, which nobody is there to type when a daemon "
            "starts; give an unencrypted key and keep it mode 600",
        )
    except (ValueError, UnsupportedAlgorithm):
        _fail(path, field, "is not a PEM private key (-----BEGIN PRIVATE KEY-----)")
    return key


def _check_period(cert: x509.Certificate, path: str, field: str, now: datetime.datetime) -> None:
    if now > cert.not_valid_after_utc:
        _fail(path, field, f"expired on {_when(cert.not_valid_after_utc)}; {_REMAKE}")
    if now < cert.not_valid_before_utc:
        _fail(
            path,
            field,
            f"is not valid before {_when(cert.not_valid_before_utc)}; check this machine's clock",
        )


def _when(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _extension(cert: x509.Certificate, kind: type[_Extension]) -> _Extension | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _public_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _fail(path: str, field: str, reason: str) -> NoReturn:
    raise SettingsError(f"{path} (security.{field}): {reason}")
