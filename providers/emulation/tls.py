"""Throwaway TLS for emulators: a self-signed certificate for loopback, made in memory.

Some official SDKs only speak ``wss://`` (ElevenLabs' `convert_realtime` rewrites any base URL
to ``wss``), so an emulator that such a client can reach needs TLS. `self_signed()` makes one
EC P-256 certificate per process for ``localhost``, ``127.0.0.1`` and ``::1`` (valid for a day,
cached), and hands out contexts built from it:

* `SelfSignedTLS.server_context` — for `EmulatorServer(ssl=...)`;
* `SelfSignedTLS.client_context` — a client context that trusts exactly this certificate;
* `SelfSignedTLS.ca_file` — the certificate as a PEM file, for clients that can only be told
  through ``SSL_CERT_FILE`` (they build their own default context).

Nothing here is secret or durable: the key never leaves the process except in the temporary file
`server_context` loads from, which is deleted at once.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["LOOPBACK_NAMES", "SelfSignedTLS", "self_signed"]

LOOPBACK_NAMES: Final = ("localhost", "127.0.0.1", "::1")
VALIDITY: Final = datetime.timedelta(days=1)


@dataclass(frozen=True)
class SelfSignedTLS:
    cert_pem: bytes
    key_pem: bytes

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # No TLS 1.3 session tickets: they arrive just after the handshake, while a client such as
        # websockets' sync one is writing its upgrade request from another thread; its reader thread
        # taking them then can lose that request (seen: ~1 in 150 handshakes hung until the timeout).
        # Emulator clients never resume sessions anyway.
        context.num_tickets = 0
        with tempfile.TemporaryDirectory(prefix="emulator-tls-") as tmp:
            cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert.write_bytes(self.cert_pem)
            key.write_bytes(self.key_pem)
            context.load_cert_chain(cert, key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.cert_pem.decode())

    @cached_property
    def ca_file(self) -> Path:
        """The certificate (no key) in a PEM file that lives as long as the process."""
        handle = tempfile.NamedTemporaryFile(prefix="emulator-ca-", suffix=".pem", delete=False)  # noqa: SIM115
        with handle:
            handle.write(self.cert_pem)
        return Path(handle.name)


def _names(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


@lru_cache(maxsize=4)
def self_signed(hosts: tuple[str, ...] = LOOPBACK_NAMES) -> SelfSignedTLS:
    """A certificate valid for ``hosts`` (made once per process and host set)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "realtime-relay emulator")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return SelfSignedTLS(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
