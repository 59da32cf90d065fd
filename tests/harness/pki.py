"""Reading back what ``clusterfarm certs`` wrote, to sign more certificates in a test."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from clusterfarm.wire.certs import CA_STEM, Credential


def read_ca(directory: Path) -> Credential:
    """The CA in ``directory`` (``ca.pem`` and ``ca.key``), to issue more certificates with."""
    cert = x509.load_pem_x509_certificate((directory / f"{CA_STEM}.pem").read_bytes())
    key = serialization.load_pem_private_key((directory / f"{CA_STEM}.key").read_bytes(), None)
    return Credential(cert, cast(CertificateIssuerPrivateKeyTypes, key))
